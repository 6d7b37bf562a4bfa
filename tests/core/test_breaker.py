"""The circuit breaker's open / half-open / closed cycle under a manual clock, and its move
table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logosq_os_scheduler import InternalError, ManualClock
from logosq_os_scheduler.core._breaker import BREAKER_MOVES, BreakerState, CircuitBreaker


def test_breaker_opens_after_consecutive_failures_and_closes_after_a_good_probe(
    clock: ManualClock,
) -> None:
    b = CircuitBreaker(threshold=3, cooldown=5.0)
    assert b.record_failure(clock.now()) is False
    b.record_success()  # a success resets the count: failures must be consecutive
    assert [b.record_failure(clock.now()) for _ in range(3)] == [False, False, True]
    assert b.state(clock.now()) is BreakerState.OPEN and not b.allows(clock.now())
    assert b.probe_due_at() == 5.0
    clock.advance(4.999)
    assert b.state(clock.now()) is BreakerState.OPEN
    clock.advance(0.001)
    assert b.state(clock.now()) is BreakerState.HALF_OPEN and not b.allows(clock.now())
    assert b.probe_result(False, clock.now()) is BreakerState.OPEN
    assert b.probe_due_at() == 10.0 and b.trips == 1
    clock.advance(5)
    assert b.probe_result(True, clock.now()) is BreakerState.CLOSED
    assert b.allows(clock.now()) and b.failures == 0 and b.trips == 1


def test_unavailable_backend_is_forced_open(clock: ManualClock) -> None:
    b = CircuitBreaker(threshold=5, cooldown=2.0)
    b.force_open(clock.now())
    assert b.state(clock.now()) is BreakerState.OPEN and b.trips == 1
    clock.advance(2)
    assert b.state(clock.now()) is BreakerState.HALF_OPEN


# -- the move table, held by a property test ------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("failure"), st.none()),
        st.tuples(st.just("success"), st.none()),
        st.tuples(st.just("force_open"), st.none()),
        st.tuples(st.just("probe"), st.booleans()),
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=4.0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, threshold=st.integers(1, 4))
def test_the_breaker_only_makes_moves_in_its_table(
    ops: list[tuple[str, object]], threshold: int
) -> None:
    clock = ManualClock()
    b = CircuitBreaker(threshold=threshold, cooldown=2.0)
    for op, arg in ops:
        before, trips = b.state(clock.now()), b.trips
        if op == "failure":
            opened = b.record_failure(clock.now())
            assert opened == (before is BreakerState.CLOSED and b.failures >= threshold)
        elif op == "success":
            b.record_success()
            assert b.failures == 0
        elif op == "force_open":
            assert b.force_open(clock.now()) == (before is BreakerState.CLOSED)
        elif op == "probe":
            b.probe_result(bool(arg), clock.now())
        else:
            assert isinstance(arg, float)
            clock.advance(arg)
        after = b.state(clock.now())
        # HALF_OPEN is reached by time alone, so a step may pass through OPEN to it.
        assert (
            after is before
            or after in BREAKER_MOVES[before]
            or (before is BreakerState.CLOSED and after is BreakerState.HALF_OPEN)
        )
        # A trip is counted exactly when a closed breaker opens.
        assert b.trips - trips == (before is BreakerState.CLOSED and after is not before)
        # New work goes only to a closed breaker's backend.
        assert b.allows(clock.now()) == (after is BreakerState.CLOSED)
        due = b.probe_due_at()
        assert (due is None) == (after is BreakerState.CLOSED)


def test_an_illegal_move_is_an_internal_error() -> None:
    b = CircuitBreaker(threshold=1, cooldown=1.0)
    with pytest.raises(InternalError, match="from CLOSED to HALF_OPEN"):
        b._move(BreakerState.HALF_OPEN)
    assert b.state(0.0) is BreakerState.CLOSED
