"""The arithmetic of the scheduler's statistics, on the core's counters and samples.

The runtime adds what only it knows (threads, backends' objects) and publishes the result
as :class:`~logosq_os_scheduler.SchedulerMetrics`; the simulator reads the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

from .._task import TaskPriority, TaskStatus
from ._core import SchedulerCore

__all__ = ["CoreStatistics", "percentile", "statistics"]

_COMPLETED = TaskStatus.COMPLETED


def percentile(samples: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``samples``; None if empty."""
    data = sorted(samples)
    if not data:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(data)))
    return data[rank - 1]


@dataclasses.dataclass(frozen=True, slots=True)
class CoreStatistics:
    """Rates, percentiles and shares derived from the core at one moment.

    Attributes:
        uptime: Seconds since the core started (never zero).
        throughput: Completed tasks per second of uptime.
        recent_throughput: Completions per second from the oldest of the recent completions
            kept to now (it falls towards zero while nothing completes).
        depth_by_priority: Tasks waiting at each priority.
        queue_wait_p50, queue_wait_p99: Seconds from submit to first start (recent tasks).
        latency_p50, latency_p99, latency_p999: Seconds from submit to completion (recent).
        classical_utilisation: Share of the classical slots' time in use (0..1).
    """

    uptime: float
    throughput: float
    recent_throughput: float
    depth_by_priority: Mapping[TaskPriority, int]
    queue_wait_p50: float | None
    queue_wait_p99: float | None
    latency_p50: float | None
    latency_p99: float | None
    latency_p999: float | None
    classical_utilisation: float


def statistics(core: SchedulerCore, now: float, running_since: Iterable[float]) -> CoreStatistics:
    """Derive :class:`CoreStatistics` from ``core`` at ``now``.

    Args:
        core: The core.
        now: The time.
        running_since: When each classical execution still under way started (its slot time
            so far counts as used).
    """
    uptime = max(now - core.started_at, 1e-9)
    finish_times = core.finish_times
    recent = 0.0
    if len(finish_times) > 1 and now > finish_times[0]:
        # Up to now, not to the last completion: an idle scheduler's rate falls towards zero.
        recent = (len(finish_times) - 1) / (max(now, finish_times[-1]) - finish_times[0])
    depth = [0] * 5
    for pool in core.pools.values():
        for i, n in enumerate(pool.queue.depth_by_level()):
            depth[i] += n
    classical = core.classical
    busy = classical.busy_time + sum(now - started for started in running_since)
    waits = list(core.queue_waits)
    lats = list(core.latencies)
    return CoreStatistics(
        uptime=uptime,
        throughput=core.counts[_COMPLETED] / uptime,
        recent_throughput=recent,
        depth_by_priority={TaskPriority(4 - i): n for i, n in enumerate(depth)},
        queue_wait_p50=percentile(waits, 50),
        queue_wait_p99=percentile(waits, 99),
        latency_p50=percentile(lats, 50),
        latency_p99=percentile(lats, 99),
        latency_p999=percentile(lats, 99.9),
        classical_utilisation=min(1.0, busy / (classical.capacity * uptime)),
    )
