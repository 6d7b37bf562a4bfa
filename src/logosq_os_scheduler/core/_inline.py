"""Which synchronous functions run inline on the event loop, and which on worker threads.

A thread hand-off costs far more than a function of a few microseconds, so the runtime runs
a function inline once it has been measured to take less than ``inline_threshold``. This
module holds the measurements and the rule; the runtime only times the runs and asks.

The rule: a function's first run is on a thread (it is measured there). Its estimate is an
average that forgets (each run weighs a quarter). A run longer than ``DEMOTE_FACTOR`` times
the threshold is a strike; two strikes in a row, or one run ten times longer still, set the
estimate to that run, sending the function back to the threads. One pause of the machine or
a garbage collection inside a tiny function does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["DEMOTE_FACTOR", "FunctionTimings", "Timing"]

DEMOTE_FACTOR = 20.0
# Entries kept at most; the table starts afresh when full (functions made on the fly).
_TABLE_LIMIT = 4096


class Timing:
    """What is known of one function's run time.

    Attributes:
        key: The function's code object (kept alive, so its id is never reused while here).
        seconds: The estimate of one run, in seconds.
        strikes: Consecutive runs slower than the demotion bound.
    """

    __slots__ = ("key", "seconds", "strikes")

    def __init__(self, key: object, seconds: float) -> None:
        self.key = key
        self.seconds = seconds
        self.strikes = 0


class FunctionTimings:
    """Run-time estimates of synchronous functions, by their code object.

    Args:
        threshold: ``inline_threshold``: functions estimated below it run inline.
    """

    __slots__ = ("entries", "threshold", "_demote_after")

    def __init__(self, threshold: float) -> None:
        # id(code object) -> Timing. The runtime reads it directly on every task.
        self.entries: dict[int, Timing] = {}
        self.threshold = threshold
        self._demote_after = threshold * DEMOTE_FACTOR

    def set_threshold(self, threshold: float) -> None:
        """Change ``inline_threshold`` (the settings changed)."""
        self.threshold = threshold
        self._demote_after = threshold * DEMOTE_FACTOR

    def lookup(self, fn: Callable[..., Any]) -> Timing | None:
        """The timing of ``fn``, if it has run."""
        return self.entries.get(id(getattr(fn, "__code__", fn)))

    def runs_inline(self, timing: Timing | None) -> bool:
        """Whether a function with this timing runs inline."""
        return timing is not None and timing.seconds < self.threshold

    def record(self, fn: Callable[..., Any], seconds: float) -> None:
        """A run of ``fn`` took ``seconds`` (the first run starts its estimate)."""
        key = getattr(fn, "__code__", fn)
        entries = self.entries
        timing = entries.get(id(key))
        if timing is None:
            if len(entries) >= _TABLE_LIMIT:
                entries.clear()
            entries[id(key)] = Timing(key, seconds)
        else:
            self.update(timing, seconds)

    def update(self, timing: Timing, seconds: float) -> None:
        """Fold one run's duration into an estimate (see the module docstring)."""
        bound = self._demote_after
        if seconds > bound:
            timing.strikes += 1
            if timing.strikes >= 2 or seconds > bound * 10:
                timing.seconds = seconds
                timing.strikes = 0
        else:
            timing.strikes = 0
            timing.seconds = 0.75 * timing.seconds + 0.25 * seconds
