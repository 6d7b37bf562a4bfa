"""The inline/thread rule (core/_inline.py), on numbers alone: no loop, no threads."""

from __future__ import annotations

import pytest

from logosq_os_scheduler.core._inline import DEMOTE_FACTOR, FunctionTimings

THRESHOLD = 0.0005  # inline_threshold's default
BOUND = THRESHOLD * DEMOTE_FACTOR


def fast() -> None:
    pass


def other() -> None:
    pass


def test_a_function_runs_inline_once_measured_below_the_threshold() -> None:
    timings = FunctionTimings(THRESHOLD)
    assert not timings.runs_inline(timings.lookup(fast))  # unmeasured: a thread measures it
    timings.record(fast, 0.00001)
    timing = timings.lookup(fast)
    assert timings.runs_inline(timing) and timing is not None
    assert timing.seconds == pytest.approx(0.00001)
    timings.record(fast, 0.00005)
    assert timing.seconds == pytest.approx(0.75 * 0.00001 + 0.25 * 0.00005)
    assert timings.lookup(other) is None


def test_one_slow_run_is_forgiven_two_in_a_row_demote() -> None:
    timings = FunctionTimings(THRESHOLD)
    timings.record(fast, 0.00001)
    timing = timings.lookup(fast)
    assert timing is not None
    timings.update(timing, BOUND * 2)  # a pause of the machine, say
    assert timings.runs_inline(timing) and timing.strikes == 1
    timings.update(timing, 0.00001)  # a normal run clears the strike
    assert timing.strikes == 0
    timings.update(timing, BOUND * 2)
    timings.update(timing, BOUND * 2)
    assert not timings.runs_inline(timing)
    assert timing.seconds == BOUND * 2


def test_one_run_far_past_the_bound_demotes_at_once() -> None:
    timings = FunctionTimings(THRESHOLD)
    timings.record(fast, 0.00001)
    timing = timings.lookup(fast)
    assert timing is not None
    timings.update(timing, BOUND * 10 + 1e-9)
    assert not timings.runs_inline(timing)


def test_a_new_threshold_applies_to_what_was_measured() -> None:
    timings = FunctionTimings(THRESHOLD)
    timings.record(fast, 0.001)
    assert not timings.runs_inline(timings.lookup(fast))
    timings.set_threshold(0.01)
    assert timings.runs_inline(timings.lookup(fast))
    timings.set_threshold(0.0)  # 0 turns inline running off
    assert not timings.runs_inline(timings.lookup(fast))
