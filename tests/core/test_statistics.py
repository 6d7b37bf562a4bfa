"""The statistics arithmetic (core/_statistics.py) on the manual clock."""

from __future__ import annotations

import pytest

from logosq_os_scheduler import ManualClock, SchedulerConfig, Task, TaskPriority, TaskStatus
from logosq_os_scheduler.core import SchedulerCore
from logosq_os_scheduler.core._statistics import percentile, statistics


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(range(1, 101), 99) == 99
    assert percentile([5.0], 99.9) == 5.0


def test_rates_percentiles_depth_and_utilisation() -> None:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(workers=2), clock)
    tasks = [
        Task.classical(f"t{i}").with_function(print).with_priority(p).build()
        for i, p in enumerate([TaskPriority.HIGH, TaskPriority.LOW, TaskPriority.LOW])
    ]
    for t in tasks:
        core.admit(t, core.classical, 0.0)  # two start at once, one waits
    for finish, t in ((2.0, tasks[0]), (4.0, tasks[1])):
        core.release_task(t, finish)
        core.transition(t, TaskStatus.COMPLETED, finish)
    stats = statistics(core, 10.0, running_since=[])
    assert stats.uptime == 10.0
    assert stats.throughput == pytest.approx(2 / 10)
    # Two completions 2 s apart: one a 2 s while they happen, falling while none follow.
    assert statistics(core, 4.0, running_since=[]).recent_throughput == pytest.approx(1 / 2)
    assert stats.recent_throughput == pytest.approx(1 / 8)
    assert stats.latency_p50 == 2.0 and stats.latency_p99 == 4.0
    assert stats.queue_wait_p50 == 0.0
    assert stats.depth_by_priority[TaskPriority.LOW] == 1
    assert stats.classical_utilisation == pytest.approx((2 + 4) / (2 * 10))
    # A run still under way counts its time so far.
    assert statistics(core, 10.0, running_since=[6.0]).classical_utilisation == pytest.approx(
        (2 + 4 + 4) / (2 * 10)
    )
