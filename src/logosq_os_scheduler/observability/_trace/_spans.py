"""A task's life as spans, one per state it was in, laid out on lanes.

Status changes become spans (queued, running, preempted), each with the status it ended in;
running spans then go on lanes, lowest free lane first, so spans on one lane never overlap.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ..._task import TaskStatus
from ...core._state import TERMINAL
from ._schema import Event, to_us

__all__ = ["Segment", "allocate_lanes", "segments_of"]

_PENDING = TaskStatus.PENDING
_RUNNING = TaskStatus.RUNNING


class Segment:
    """A span of one task's life in one state: queued, running or preempted."""

    __slots__ = (
        "task_id",
        "kind",
        "start",
        "end",
        "pool",
        "attempt",
        "outcome",
        "partial",
        "lane",
        "ts",
        "end_us",
    )

    def __init__(
        self,
        task_id: int,
        kind: TaskStatus,
        start: float,
        pool: str,
        attempt: int,
        partial: bool,
    ) -> None:
        self.task_id = task_id
        self.kind = kind
        self.start = start
        self.end = start
        self.pool = pool
        self.attempt = attempt
        # The status the task moved to at the end of the span; None while it is unfinished.
        self.outcome: TaskStatus | None = None
        # True when the span began before recording did (its start is the trace's start).
        self.partial = partial
        self.lane = 0
        self.ts = 0.0
        self.end_us = 0.0


def _pool_name(pool: object) -> str:
    name = getattr(pool, "name", None)
    return name if isinstance(name, str) else "classical"


def segments_of(
    events: Iterable[Event], origin: float, end: float
) -> tuple[list[Segment], dict[int, TaskStatus]]:
    """Turn status changes into per-state spans; also return each finished task's end state."""
    open_: dict[int, Segment] = {}
    finals: dict[int, TaskStatus] = {}
    out: list[Segment] = []
    for now, task_id, old, new, pool, attempts in events:
        name = _pool_name(pool)
        seg = open_.pop(task_id, None)
        if seg is None and old is not _PENDING and old not in TERMINAL:
            # The task was mid-life when recording began: show that state from the start.
            seg = Segment(task_id, old, origin, name, attempts, True)
        if seg is not None:
            seg.end = now
            seg.outcome = new
            if seg.kind is _RUNNING:
                # The core counts an attempt as it starts the run (a resume at a checkpoint
                # continues one); by the run's end the count includes this run.
                seg.attempt = attempts
            else:
                # The pool a task waited in (queued, or preempted waiting to resume) is known
                # for sure when it leaves: a requeue to another pool, or a move of a waiting
                # task, changes its pool after the status change or with none.
                seg.pool = name
            out.append(seg)
        if new in TERMINAL:
            finals[task_id] = new
            continue
        # Settled when the span ends (the core counts an attempt before the move to RUNNING).
        open_[task_id] = Segment(task_id, new, now, name, attempts, False)
    for seg in open_.values():
        seg.end = end
        out.append(seg)
    for seg in out:
        seg.ts = to_us(seg.start, origin)
        seg.end_us = to_us(seg.end, origin)
    return out, finals


def allocate_lanes(spans: list[Segment]) -> int:
    """Give each span the lowest-numbered lane free at its start; return the lane count.

    Greedy by start time is optimal for intervals: it uses as many lanes as the most spans
    open at one moment, and spans on one lane never overlap.
    """
    spans.sort(key=lambda s: (s.ts, s.end_us, s.task_id))
    busy: list[tuple[float, int]] = []  # (end, lane)
    free: list[int] = []
    lanes = 0
    for span in spans:
        while busy and busy[0][0] <= span.ts:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane = lanes
            lanes += 1
        span.lane = lane
        heapq.heappush(busy, (span.end_us, lane))
    return lanes
