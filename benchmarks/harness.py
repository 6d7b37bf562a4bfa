"""Measurement machinery shared by every scenario and every system under test.

Nothing here knows about a particular engine: the systems (``systems.py``) say how one unit of
work is started and how a burst is waited for; this module releases arrivals at their intended
times, records when each result became available, and turns raw samples into figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import gc
import itertools
import math
import os
import statistics
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "Figure",
    "Marks",
    "OpenLoopRun",
    "drive_on_loop",
    "drive_on_thread",
    "percentile",
    "quiesce",
    "summarise_open_loop",
]

perf = time.perf_counter

# How long the generators wait for the last results of an open-loop run before giving up and
# reporting the missing ones as incomplete (a system that loses tasks must not hang the suite).
COMPLETION_TIMEOUT = 120.0
# The loop generator sleeps on a timer only when the next arrival is further away than this:
# asyncio and uvloop timers have millisecond resolution, so a shorter sleep would overshoot.
_LOOP_TIMER_MIN_GAP = 0.002
_LOOP_TIMER_MARGIN = 0.0015


def percentile(data: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of already *sorted* ``data`` (NaN if empty)."""
    if not data:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(data)))
    return data[min(rank, len(data)) - 1]


@dataclasses.dataclass(frozen=True)
class Figure:
    """One reported figure: the median of repeated runs, with their min and max."""

    median: float
    lo: float
    hi: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Figure:
        """Summarise the per-run values (NaN runs are kept in ``runs`` but not summarised)."""
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return cls(math.nan, math.nan, math.nan, tuple(values))
        return cls(statistics.median(finite), min(finite), max(finite), tuple(values))

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON hand-off between processes."""
        return {"median": self.median, "lo": self.lo, "hi": self.hi, "runs": list(self.runs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figure:
        """Inverse of :meth:`as_dict`."""
        return cls(d["median"], d["lo"], d["hi"], tuple(d["runs"]))


class Marks:
    """Records the moment each of ``n`` results became available, from any thread.

    ``mark(i, *_)`` is handed (through ``functools.partial``) to whatever completion callback a
    system offers; it stores ``perf_counter()`` first, before any bookkeeping, so the bookkeeping
    is not counted as latency. The count of completions uses ``itertools.count``, whose
    ``__next__`` is atomic under the GIL, so callbacks may run on several threads at once.

    Args:
        n: Number of arrivals in the run.
        on_all: Called (on whichever thread marks the last one) once all ``n`` are marked.
    """

    __slots__ = ("done_at", "_n", "_count", "_on_all")

    def __init__(self, n: int, on_all: Callable[[], None]) -> None:
        self.done_at = array("d", bytes(8 * n))
        self._n = n
        self._count = itertools.count(1)
        self._on_all = on_all

    def mark(self, i: int, *_: object) -> None:
        """Record that result ``i`` is available now."""
        self.done_at[i] = perf()
        if next(self._count) == self._n:
            self._on_all()


@dataclasses.dataclass(frozen=True)
class OpenLoopRun:
    """What one open-loop run measured (latencies in seconds, from the intended arrival)."""

    rate: float
    n: int
    p50: float
    p99: float
    p999: float
    max: float
    achieved: float
    release_lag_p99: float
    incomplete: int


def summarise_open_loop(
    rate: float, t0: float, done_at: array[float], lag: array[float]
) -> OpenLoopRun:
    """Turn the raw arrays of one run into its figures.

    Latency of arrival ``k`` is ``done_at[k] - (t0 + k / rate)``: from when it *should* have
    arrived, so time an arrival spent waiting for the generator counts too. The achieved rate
    is completions over the span from the first intended arrival to the last completion.
    """
    n = len(done_at)
    lats = sorted(done_at[k] - (t0 + k / rate) for k in range(n) if done_at[k] > 0.0)
    lags = sorted(lag)
    complete = len(lats)
    last = max(done_at) if complete else t0
    achieved = complete / (last - t0) if last > t0 else math.nan
    return OpenLoopRun(
        rate=rate,
        n=n,
        p50=percentile(lats, 50),
        p99=percentile(lats, 99),
        p999=percentile(lats, 99.9),
        max=lats[-1] if lats else math.nan,
        achieved=achieved,
        release_lag_p99=percentile(lags, 99),
        incomplete=n - complete,
    )


async def drive_on_loop(start: Callable[[int, Marks], None], rate: float, n: int) -> OpenLoopRun:
    """Release ``n`` arrivals at ``rate``/s from a coroutine on the running loop.

    Arrival ``k`` is due at ``t0 + k / rate``. The generator never sleeps on a timer for less
    than ``_LOOP_TIMER_MIN_GAP``, because the loop's timers have millisecond resolution (epoll
    takes its timeout in milliseconds): it yields with ``asyncio.sleep(0)`` instead, which lets
    every ready callback run, then starts each arrival whose intended time has passed. So an
    arrival is released within one loop iteration of its time, and anything later (a slow
    submit, a long callback, a GC pause) shows up in its latency, which is counted from the
    intended time.

    Args:
        start: ``start(k, marks)`` submits arrival ``k`` and arranges ``marks.mark(k)`` at its
            completion. Runs on the loop thread.
        rate: Arrivals per second.
        n: Number of arrivals.
    """
    loop = asyncio.get_running_loop()
    all_done: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not all_done.done():
            all_done.set_result(None)

    def on_all() -> None:
        # The last mark may come from another thread (a worker); hop to the loop if so.
        if threading.get_ident() == loop_thread:
            finish()
        else:
            loop.call_soon_threadsafe(finish)

    loop_thread = threading.get_ident()
    marks = Marks(n, on_all)
    lag = array("d", bytes(8 * n))
    sleep = asyncio.sleep
    t0 = perf() + 0.002
    i = 0
    while i < n:
        now = perf()
        if now >= t0:
            due = int((now - t0) * rate) + 1
            if due > n:
                due = n
            while i < due:
                lag[i] = perf() - (t0 + i / rate)
                start(i, marks)
                i += 1
            if i >= n:
                break
        gap = t0 + i / rate - perf()
        await sleep(gap - _LOOP_TIMER_MARGIN if gap > _LOOP_TIMER_MIN_GAP else 0)
    with contextlib.suppress(TimeoutError):  # missing results are reported as incomplete
        await asyncio.wait_for(asyncio.shield(all_done), COMPLETION_TIMEOUT)
    return summarise_open_loop(rate, t0, marks.done_at, lag)


_PR_SET_TIMERSLACK = 29


def _tighten_timer_slack() -> None:
    """Ask Linux to wake this thread's sleeps on time (default slack is 50 us), if possible."""
    path = ctypes.util.find_library("c")
    if path is None:
        return
    try:
        libc = ctypes.CDLL(path, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def drive_on_thread(start: Callable[[int, Marks], None], rate: float, n: int) -> OpenLoopRun:
    """Release ``n`` arrivals at ``rate``/s from the calling thread, for thread-based systems.

    Between arrivals the generator blocks in ``time.sleep`` (which releases the GIL, as a thread
    waiting for requests on a socket would), with the thread's timer slack cut to 1 ns so it
    wakes within microseconds of the next intended time. A spinning generator would hold the GIL
    and starve the very worker threads it measures. When it wakes late it releases every arrival
    that is due at once; the lateness counts in their latency.

    Args:
        start: ``start(k, marks)`` submits arrival ``k`` and arranges ``marks.mark(k)`` at its
            completion (the mark may run on any thread).
        rate: Arrivals per second.
        n: Number of arrivals.
    """
    _tighten_timer_slack()
    finished = threading.Event()
    marks = Marks(n, finished.set)
    lag = array("d", bytes(8 * n))
    sleep = time.sleep
    t0 = perf() + 0.002
    i = 0
    while i < n:
        now = perf()
        if now >= t0:
            due = int((now - t0) * rate) + 1
            if due > n:
                due = n
            while i < due:
                lag[i] = perf() - (t0 + i / rate)
                start(i, marks)
                i += 1
            if i >= n:
                break
        gap = t0 + i / rate - perf()
        if gap > 0:
            sleep(gap)
    finished.wait(COMPLETION_TIMEOUT)
    return summarise_open_loop(rate, t0, marks.done_at, lag)


def quiesce() -> None:
    """Collect garbage left by the previous run so that it is not charged to the next."""
    gc.collect()


def loadavg() -> float:
    """The 1-minute load average (the machine is shared; a high one flags disturbed runs)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def _spin_pauses(duration: float, threshold: float = 50e-6) -> dict[str, float]:
    """Spin reading the clock; report the pauses no Python code asked for (the machine's own)."""
    pauses: list[float] = []
    t = perf()
    end = t + duration
    while t < end:
        now = perf()
        if now - t > threshold:
            pauses.append(now - t)
        t = now
    pauses.sort()
    return {
        "pauses_per_s": len(pauses) / duration,
        "paused_share": sum(pauses) / duration,
        "pause_p50": percentile(pauses, 50),
        "pause_max": pauses[-1] if pauses else 0.0,
    }


# A run starts only once a short probe finds the machine quiet, or once this long has passed.
QUIET_PROBE_S = 0.02
QUIET_SHARE = 0.05
QUIET_WAIT_MAX_S = 15.0


def wait_for_quiet(max_wait: float = QUIET_WAIT_MAX_S) -> float:
    """Wait (up to ``max_wait`` seconds) until the machine is quiet; return seconds waited.

    The machine is shared. A probe spins for ``QUIET_PROBE_S`` reading the clock; if other
    work paused it for more than ``QUIET_SHARE`` of that time, it sleeps a little and probes
    again. Every system gets the same treatment, so figures describe the engine rather than
    its neighbours; what could not be avoided stays in the figures.
    """
    start = perf()
    if max_wait <= 0:
        return 0.0
    while _spin_pauses(QUIET_PROBE_S)["paused_share"] > QUIET_SHARE:
        if perf() - start > max_wait:
            break
        time.sleep(0.25)
    return perf() - start


def calibrate(duration: float, use_uvloop: bool, rate: float = 50_000.0) -> dict[str, Any]:
    """Measure the machine's own noise: what any engine's tail latency sits on top of.

    Two figures: how often a bare loop reading ``perf_counter`` is paused for more than 50 us
    (interrupts, the hypervisor, other jobs), and the loop generator's open-loop latency at
    ``rate`` with no engine at all (each arrival is marked complete as it is released).
    """
    from logosq_os_scheduler import new_event_loop

    spin = _spin_pauses(duration)

    def null_start(i: int, marks: Marks) -> None:
        marks.mark(i)

    n = int(rate * duration)
    with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop=use_uvloop)) as r:
        r.run(drive_on_loop(null_start, rate, n // 4))
        null = r.run(drive_on_loop(null_start, rate, n))
    return {
        **spin,
        "null_rate": rate,
        "null_p50": null.p50,
        "null_p99": null.p99,
        "null_p999": null.p999,
        "null_max": null.max,
    }
