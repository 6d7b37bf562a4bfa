"""Spans, batches and runtime marks written as Chrome trace events.

One process per pool (the classical workers first, then each backend), a complete ("X")
slice per run on its lane, an async slice per wait, instant events where a task's path turns
(retries, preemptions, reroutes, ends), a "queue depth" counter per pool, and batch slices on
lanes of their own.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Protocol

from ..._task import TaskPriority, TaskStatus, TaskType
from ...core._state import TERMINAL
from ._schema import CNAMES, SEGMENT_CATS, UNFINISHED, Event, Mark, to_us
from ._spans import Segment, allocate_lanes, segments_of

__all__ = ["build_trace"]

_S = TaskStatus
_QUEUED = _S.QUEUED
_RUNNING = _S.RUNNING
_PREEMPTED = _S.PREEMPTED


class _Counts(Protocol):
    """What the export reads from its recorder as it finishes: the changes it dropped."""

    @property
    def dropped(self) -> int: ...


_BATCH_TID_BASE = 1000


def build_trace(
    events: list[Event],
    info: dict[int, tuple[str, TaskPriority, TaskType]],
    marks: list[Mark],
    origin: float,
    end: float,
    recorder: _Counts,
) -> dict[str, object]:
    segments, finals = segments_of(events, origin, end)
    if all(seg.outcome is not None for seg in segments):
        # Nothing is left open: the trace ends with its last change, not at export time.
        end = events[-1][0] if events else origin

    pool_names = {s.pool for s in segments} | {m[1] for m in marks}
    ordered = sorted(pool_names, key=lambda n: (n != "classical", n))
    pids = {name: i + 1 for i, name in enumerate(ordered)}

    out: list[dict[str, object]] = []
    meta: list[dict[str, object]] = []
    for name, pid in pids.items():
        meta.append(_meta("process_name", pid, 0, {"name": name}))
        meta.append(_meta("process_sort_index", pid, 0, {"sort_index": pid}))

    def task_args(seg: Segment) -> dict[str, object]:
        # Every recorded task has its info: it is stored with the task's first event.
        name, priority, task_type = info[seg.task_id]
        args: dict[str, object] = {
            "task_id": seg.task_id,
            "task": name,
            "priority": priority.name,
            "type": task_type.value,
            "pool": seg.pool,
            "attempt": seg.attempt,
            "outcome": seg.outcome.value if seg.outcome is not None else UNFINISHED,
        }
        if seg.partial:
            args["began_before_trace"] = True
        return args

    def priority_of(task_id: int) -> TaskPriority:
        return info[task_id][1]

    # Running slices, on lanes.
    running: dict[str, list[Segment]] = {}
    for seg in segments:
        if seg.kind is _RUNNING:
            running.setdefault(seg.pool, []).append(seg)
    for pool, spans in running.items():
        pid = pids[pool]
        lanes = allocate_lanes(spans)
        # Classical lanes are worker slots; a backend runs a job of several circuits in one
        # slot, so its lanes are simply as many as circuits ran at once.
        label = "worker" if pool == "classical" else "lane"
        for lane in range(lanes):
            meta.append(_meta("thread_name", pid, lane + 1, {"name": f"{label} {lane + 1}"}))
            meta.append(_meta("thread_sort_index", pid, lane + 1, {"sort_index": lane + 1}))
        for seg in spans:
            priority = priority_of(seg.task_id)
            out.append(
                {
                    "name": f"{priority.name} {seg.task_id}",
                    "cat": "task",
                    "ph": "X",
                    "ts": seg.ts,
                    "dur": round(seg.end_us - seg.ts, 3),
                    "pid": pid,
                    "tid": seg.lane + 1,
                    "cname": CNAMES[priority],
                    "args": task_args(seg),
                }
            )

    # Queue waits and preempted spells as async slices; one track per priority and kind.
    seq = 0
    for seg in segments:
        if seg.kind is _RUNNING:
            continue
        seq += 1
        priority = priority_of(seg.task_id)
        cat = SEGMENT_CATS[seg.kind]
        name = f"{seg.kind.value} {priority.name}"
        pid = pids[seg.pool]
        args = task_args(seg)
        ident = f"{cat}-{seg.task_id}-{seq}"
        common = {"name": name, "cat": cat, "id": ident, "pid": pid, "tid": 0}
        out.append({**common, "ph": "b", "ts": seg.ts, "cname": CNAMES[priority], "args": args})
        out.append({**common, "ph": "e", "ts": seg.end_us, "args": args})

    out.extend(_instants(segments, pids))
    out.extend(_queue_counters(segments, pids, priority_of))

    # Batches (and other marks the runtime reported).
    batch_spans: dict[str, list[tuple[float, float, Mark]]] = {}
    for mark in marks:
        kind, pool, start, stop, task_ids, extra = mark
        pid = pids[pool]
        if kind == "batch":
            batch_spans.setdefault(pool, []).append(
                (to_us(start, origin), to_us(stop, origin), mark)
            )
        else:
            out.append(
                {
                    "name": kind.removeprefix("instant:"),
                    "cat": "event",
                    "ph": "i",
                    "s": "p",
                    "ts": to_us(start, origin),
                    "pid": pid,
                    "tid": 0,
                    "args": dict(extra),
                }
            )
    for pool, items in batch_spans.items():
        pid = pids[pool]
        items.sort(key=lambda item: (item[0], item[1]))
        busy: list[tuple[float, int]] = []
        free: list[int] = []
        lanes = 0
        for ts, stop_us, (_k, _p, _s, _e, task_ids, extra) in items:
            while busy and busy[0][0] <= ts:
                heapq.heappush(free, heapq.heappop(busy)[1])
            if free:
                lane = heapq.heappop(free)
            else:
                lane = lanes
                lanes += 1
            heapq.heappush(busy, (stop_us, lane))
            out.append(
                {
                    "name": f"batch of {len(task_ids)}",
                    "cat": "batch",
                    "ph": "X",
                    "ts": ts,
                    "dur": round(stop_us - ts, 3),
                    "pid": pid,
                    "tid": _BATCH_TID_BASE + lane + 1,
                    "args": {"task_ids": list(task_ids), "size": len(task_ids), **extra},
                }
            )
        for lane in range(lanes):
            tid = _BATCH_TID_BASE + lane + 1
            meta.append(_meta("thread_name", pid, tid, {"name": f"batches {lane + 1}"}))
            meta.append(_meta("thread_sort_index", pid, tid, {"sort_index": tid}))

    out.sort(key=_event_order)
    finished = {tid: status.value for tid, status in finals.items()}
    return {
        "traceEvents": meta + out,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "logosq_os_scheduler",
            "clock_origin": origin,
            "end": to_us(end, origin),
            "tasks": len(info),
            "finished": len(finished),
            "recorded_events": len(events),
            "dropped_events": recorder.dropped,
        },
    }


def _event_order(event: dict[str, object]) -> float:
    ts = event["ts"]
    assert isinstance(ts, float | int)
    # Sorting is stable, so an async span's begin stays before its end even at one instant.
    return float(ts)


def _meta(name: str, pid: int, tid: int, args: dict[str, object]) -> dict[str, object]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}


def _instants(segments: list[Segment], pids: Mapping[str, int]) -> list[dict[str, object]]:
    """Point events where a task's path is worth seeing: retries, preemptions, reroutes, ends."""
    out: list[dict[str, object]] = []
    last_run_pool: dict[int, str] = {}
    by_task = sorted(segments, key=lambda s: (s.task_id, s.ts, s.end_us))
    for seg in by_task:
        outcome = seg.outcome
        args: dict[str, object] = {"task_id": seg.task_id, "attempt": seg.attempt}
        if seg.kind is _QUEUED and seg.task_id in last_run_pool:
            previous = last_run_pool[seg.task_id]
            if previous != seg.pool:
                out.append(_instant("rerouted", seg.ts, pids[seg.pool], 0, "p", args, frm=previous))
        if seg.kind is _RUNNING:
            last_run_pool[seg.task_id] = seg.pool
        if outcome is None or outcome is _S.COMPLETED:
            continue
        if seg.kind is _RUNNING:
            names = {_QUEUED: "retry", _PREEMPTED: "preempted"}
            name = names.get(outcome, outcome.value)
            out.append(_instant(name, seg.end_us, pids[seg.pool], seg.lane + 1, "t", args))
        elif seg.kind is _PREEMPTED and outcome is _RUNNING:
            out.append(_instant("resumed", seg.end_us, pids[seg.pool], 0, "p", args))
        elif outcome in TERMINAL:
            out.append(_instant(outcome.value, seg.end_us, pids[seg.pool], 0, "p", args))
        elif seg.kind is _PREEMPTED and outcome is _QUEUED:
            out.append(_instant("requeued", seg.end_us, pids[seg.pool], 0, "p", args))
    return out


def _instant(
    name: str,
    ts: float,
    pid: int,
    tid: int,
    scope: str,
    args: dict[str, object],
    frm: str | None = None,
) -> dict[str, object]:
    extra = dict(args)
    if frm is not None:
        extra["from"] = frm
    return {
        "name": name,
        "cat": "lifecycle",
        "ph": "i",
        "s": scope,
        "ts": ts,
        "pid": pid,
        "tid": tid,
        "args": extra,
    }


def _queue_counters(
    segments: list[Segment],
    pids: Mapping[str, int],
    priority_of: Callable[[int], TaskPriority],
) -> list[dict[str, object]]:
    """A "queue depth" counter per pool, by priority, sampled at every change.

    It counts what the scheduler's ``queue_depth`` counts: tasks queued, and tasks preempted
    (they wait in the queue to resume).
    """
    deltas: dict[str, list[tuple[float, int, TaskPriority]]] = {}
    for seg in segments:
        if seg.kind is _RUNNING:
            continue
        priority = priority_of(seg.task_id)
        items = deltas.setdefault(seg.pool, [])
        items.append((seg.ts, 1, priority))
        if seg.outcome is not None:
            items.append((seg.end_us, -1, priority))
    out: list[dict[str, object]] = []
    names = [p.name for p in sorted(TaskPriority, reverse=True)]
    for pool, items in deltas.items():
        items.sort(key=lambda d: d[0])
        depth = dict.fromkeys(names, 0)
        previous: dict[str, int] | None = None
        i = 0
        while i < len(items):
            ts = items[i][0]
            # Apply every change at this instant, then sample once, and only if it changed
            # (a task that starts the moment it is queued changes nothing).
            while i < len(items) and items[i][0] == ts:
                depth[items[i][2].name] += items[i][1]
                i += 1
            if depth == previous:
                continue
            previous = dict(depth)
            out.append(
                {
                    "name": "queue depth",
                    "ph": "C",
                    "ts": ts,
                    "pid": pids[pool],
                    "tid": 0,
                    "args": dict(depth),
                }
            )
    return out
