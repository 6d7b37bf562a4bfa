"""What a trace's writer and its readers agree on.

The tuples a :class:`~logosq_os_scheduler.observability.TraceRecorder` keeps, the categories
that mark a task's spans (and the outcome of a span still open), the colours of priorities,
and the trace's time unit: microseconds since the recorder's origin.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..._task import TaskPriority, TaskStatus

__all__ = [
    "CNAMES",
    "KIND_OF_CAT",
    "PRIORITY_COLORS",
    "SEGMENT_CATS",
    "UNFINISHED",
    "Event",
    "Mark",
    "to_us",
]

# (now, task id, old status, new status, the task's pool object, its attempt count then)
Event = tuple[float, int, TaskStatus, TaskStatus, object, int]
# (kind, pool, start, end, task ids, extra args): batches and other runtime marks
Mark = tuple[str, str, float, float, tuple[int, ...], dict[str, object]]

PRIORITY_COLORS: Mapping[TaskPriority, str] = {
    TaskPriority.CRITICAL: "#d62728",
    TaskPriority.HIGH: "#ff7f0e",
    TaskPriority.NORMAL: "#1f77b4",
    TaskPriority.LOW: "#2ca02c",
    TaskPriority.IDLE: "#8c8c8c",
}
"""The colour of each priority in pictures (matplotlib hex), shared by the timeline."""

# The reserved colour names of the legacy trace viewer, closest to PRIORITY_COLORS.
CNAMES: Mapping[TaskPriority, str] = {
    TaskPriority.CRITICAL: "terrible",
    TaskPriority.HIGH: "bad",
    TaskPriority.NORMAL: "rail_response",
    TaskPriority.LOW: "good",
    TaskPriority.IDLE: "grey",
}

SEGMENT_CATS: Mapping[TaskStatus, str] = {
    TaskStatus.QUEUED: "queue",
    TaskStatus.RUNNING: "task",
    TaskStatus.PREEMPTED: "preempted",
}
KIND_OF_CAT: Mapping[str, TaskStatus] = {cat: kind for kind, cat in SEGMENT_CATS.items()}
UNFINISHED = "unfinished"


def to_us(seconds: float, origin: float) -> float:
    """Seconds on the scheduler clock -> microseconds since ``origin``, to the nanosecond."""
    return round((seconds - origin) * 1e6, 3)
