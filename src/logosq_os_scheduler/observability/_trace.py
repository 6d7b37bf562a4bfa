"""Every status change of every task, recorded and exported as a Chrome trace / Perfetto file.

A :class:`TraceRecorder` attaches to a scheduler's transition hook and appends one tuple per
status change. Nothing else happens on the hot path: slices, lanes and counters are worked out
only when the trace is exported. The file is the Chrome trace-event JSON format, which
https://ui.perfetto.dev and ``chrome://tracing`` open::

    process "classical"               one process per pool: the classical workers, then
      thread "worker 1"  [NORMAL 7][HIGH 9]        each quantum backend; a task's run is a
      thread "worker 2"  [LOW 3] [CRITICAL 12]     complete ("X") slice on a lane
      async  "queued HIGH"   <-- wait -->          waits are async slices, one track per
      async  "preempted LOW" <-- wait -->          priority; queue depth is a counter
      counter "queue depth"  _/"\\__
    process "aer"
      thread "lane 1" ...    thread "batches 1"    backend jobs (batches) on lanes of their own

Running slices are laid out on lanes by a per-pool allocator, so slices on one lane never
overlap: a classical lane is a worker slot; a backend's lanes are as many as circuits ran on
it at once (a job runs several in one slot). Retries, preemptions, reroutes, failures,
time-outs and cancellations are instant events. Slices are coloured by priority: ``cname`` for
``chrome://tracing``, and for Perfetto (which colours a slice by its name with the digits
stripped) each run is named ``"<PRIORITY> <task id>"``; the task's own name is in its args.

:func:`validate_trace` checks a trace's structure, that every task's slices follow one another
without gap or overlap, and, given independently recorded state histories, that they match.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._task import Task, TaskPriority, TaskStatus, TaskType
from ..core._state import TERMINAL
from ._listeners import add_listener, core_of, remove_listener

if TYPE_CHECKING:
    from .._scheduler import QuantumScheduler
    from ..core import SchedulerCore

__all__ = [
    "PRIORITY_COLORS",
    "TraceRecorder",
    "TraceValidationError",
    "load_trace",
    "validate_trace",
]

_S = TaskStatus
_PENDING = _S.PENDING
_QUEUED = _S.QUEUED
_RUNNING = _S.RUNNING
_PREEMPTED = _S.PREEMPTED

# (now, task id, old status, new status, the task's pool object, its attempt count then)
_Event = tuple[float, int, TaskStatus, TaskStatus, object, int]
# (kind, pool, start, end, task ids, extra args): batches and other runtime marks
_Mark = tuple[str, str, float, float, tuple[int, ...], dict[str, object]]

PRIORITY_COLORS: Mapping[TaskPriority, str] = {
    TaskPriority.CRITICAL: "#d62728",
    TaskPriority.HIGH: "#ff7f0e",
    TaskPriority.NORMAL: "#1f77b4",
    TaskPriority.LOW: "#2ca02c",
    TaskPriority.IDLE: "#8c8c8c",
}
"""The colour of each priority in pictures (matplotlib hex), shared by the timeline."""

# The reserved colour names of the legacy trace viewer, closest to PRIORITY_COLORS.
_CNAMES: Mapping[TaskPriority, str] = {
    TaskPriority.CRITICAL: "terrible",
    TaskPriority.HIGH: "bad",
    TaskPriority.NORMAL: "rail_response",
    TaskPriority.LOW: "good",
    TaskPriority.IDLE: "grey",
}

_SEGMENT_CATS: Mapping[TaskStatus, str] = {
    _QUEUED: "queue",
    _RUNNING: "task",
    _PREEMPTED: "preempted",
}
_KIND_OF_CAT: Mapping[str, TaskStatus] = {cat: kind for kind, cat in _SEGMENT_CATS.items()}
_STATUS_BY_VALUE: Mapping[str, TaskStatus] = {s.value: s for s in TaskStatus}
_UNFINISHED = "unfinished"
_TRACK_TOLERANCE_US = 1e-3
_HISTORY_TOLERANCE_US = 1e-2


def _us(seconds: float, origin: float) -> float:
    """Seconds on the scheduler clock -> microseconds since ``origin``, to the nanosecond."""
    return round((seconds - origin) * 1e6, 3)


class TraceRecorder:
    """Records every status change of every task, for export as a Chrome trace / Perfetto file.

    Attach it before submitting work (it sees only changes made while attached)::

        recorder = TraceRecorder.attach(scheduler)
        ...  # submit and run tasks
        recorder.export_chrome_trace("run.trace.json")

    Recording is opt-in and cheap: one tuple appended per status change. It keeps events for
    every task until ``max_events`` is reached; after that it drops new events (counting them in
    :attr:`dropped`) rather than cutting the start off histories it already holds.

    Args:
        max_events: Most status changes to keep; None for no limit.
        origin: The time, on the scheduler clock, that is zero in the trace.
    """

    __slots__ = ("_core", "_events", "_info", "_limit", "_marks", "dropped", "origin")

    def __init__(self, *, max_events: int | None = 1_000_000, origin: float = 0.0) -> None:
        if max_events is not None and max_events <= 0:
            raise ValueError(f"max_events must be positive or None, got {max_events!r}")
        self._events: list[_Event] = []
        # task id -> (name, priority, type), filled on a task's first recorded change.
        self._info: dict[int, tuple[str, TaskPriority, TaskType]] = {}
        self._marks: list[_Mark] = []
        self._limit = sys.maxsize if max_events is None else max_events
        self._core: SchedulerCore | None = None
        self.dropped = 0
        """Status changes not recorded because ``max_events`` was reached."""
        self.origin = origin

    # -- attaching ---------------------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        target: QuantumScheduler | SchedulerCore,
        *,
        max_events: int | None = 1_000_000,
    ) -> TraceRecorder:
        """Create a recorder listening to ``target``'s status changes (other listeners stay).

        The trace's zero is the scheduler's start, so trace times match its metrics' uptime.

        Args:
            target: A :class:`~logosq_os_scheduler.QuantumScheduler` (for a
                ``BlockingScheduler``, its ``.scheduler``) or a sans-I/O core.
            max_events: Most status changes to keep; None for no limit.

        Raises:
            TypeError: If ``target`` is not a scheduler or core.
        """
        core = core_of(target)
        recorder = cls(max_events=max_events, origin=core.started_at)
        recorder._core = core
        add_listener(core, recorder.record)
        return recorder

    def detach(self) -> None:
        """Stop recording (what was recorded stays available for export)."""
        if self._core is not None:
            remove_listener(self._core, self.record)
            self._core = None

    @property
    def attached(self) -> bool:
        """Whether the recorder is listening to a scheduler."""
        return self._core is not None

    # -- recording: the hot path -------------------------------------------------------------

    def record(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        """Record one status change; this is the transition listener."""
        events = self._events
        if len(events) >= self._limit:
            self.dropped += 1
            return
        task_id = task.task_id
        info = self._info
        if task_id not in info:
            info[task_id] = (task.name, task.priority, task.task_type)
        events.append((now, task_id, old, new, task.resources, task.attempts))

    def record_batch(
        self,
        pool: str,
        task_ids: Sequence[int],
        start: float,
        end: float,
        **args: object,
    ) -> None:
        """Record that tasks ran together as one batch (one backend job) from ``start`` to ``end``.

        Batches get lanes of their own in the pool's process, beside the tasks' own slices.

        Args:
            pool: The backend's name.
            task_ids: The tasks in the batch.
            start, end: Times on the scheduler clock.
            **args: Extra details shown with the slice (a job id, the shot count).

        Raises:
            ValueError: If ``end`` is before ``start``.
        """
        if end < start:
            raise ValueError(f"a batch cannot end ({end!r}) before it starts ({start!r})")
        self._marks.append(("batch", pool, start, end, tuple(task_ids), dict(args)))

    def record_instant(self, pool: str, name: str, when: float, **args: object) -> None:
        """Record a point event in a pool's process, such as a circuit breaker opening.

        Args:
            pool: The pool's name ("classical" or a backend's name).
            name: What happened.
            when: Time on the scheduler clock.
            **args: Extra details shown with the event.
        """
        self._marks.append(("instant:" + name, pool, when, when, (), dict(args)))

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._events)

    def histories(self) -> dict[int, list[tuple[float, TaskStatus]]]:
        """Each recorded task's status changes, in order, as ``(time, new status)`` pairs."""
        out: dict[int, list[tuple[float, TaskStatus]]] = {}
        for now, task_id, _old, new, _pool, _attempts in list(self._events):
            out.setdefault(task_id, []).append((now, new))
        return out

    def chrome_trace(self, *, end: float | None = None) -> dict[str, object]:
        """The trace as a Chrome trace-event JSON object (``{"traceEvents": [...], ...}``).

        Args:
            end: Where slices of tasks that have not finished end, on the scheduler clock.
                Default: the scheduler clock now (while attached and nothing was dropped),
                otherwise the last recorded change.
        """
        events = list(self._events)
        last = events[-1][0] if events else self.origin
        if end is None:
            core = self._core
            end = core.clock.now() if core is not None and not self.dropped else last
        end = max(end, last)
        return _build_trace(events, dict(self._info), list(self._marks), self.origin, end, self)

    def export_chrome_trace(
        self, path: str | os.PathLike[str], *, end: float | None = None
    ) -> Path:
        """Write the trace to ``path`` as Chrome trace-event JSON; open it in ui.perfetto.dev.

        Args:
            path: Where to write (the file is replaced).
            end: See :meth:`chrome_trace`.

        Returns:
            The path written.
        """
        trace = self.chrome_trace(end=end)
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(trace, fh, separators=(",", ":"))
        # Replace at once so a reader never sees half a file.
        tmp.replace(target)
        return target

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<TraceRecorder {state}, {len(self._events)} events, {self.dropped} dropped>"


# -- building the trace ----------------------------------------------------------------------


class _Segment:
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


def _segments(
    events: Iterable[_Event], origin: float, end: float
) -> tuple[list[_Segment], dict[int, TaskStatus]]:
    """Turn status changes into per-state spans; also return each finished task's end state."""
    open_: dict[int, _Segment] = {}
    finals: dict[int, TaskStatus] = {}
    out: list[_Segment] = []
    for now, task_id, old, new, pool, attempts in events:
        name = _pool_name(pool)
        seg = open_.pop(task_id, None)
        if seg is None and old is not _PENDING and old not in TERMINAL:
            # The task was mid-life when recording began: show that state from the start.
            seg = _Segment(task_id, old, origin, name, attempts, True)
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
        # Settled when the span ends; for a run still going, a start from the queue is a new
        # attempt.
        guess = attempts + 1 if new is _RUNNING and old is _QUEUED else attempts
        open_[task_id] = _Segment(task_id, new, now, name, guess, False)
    for seg in open_.values():
        seg.end = end
        out.append(seg)
    for seg in out:
        seg.ts = _us(seg.start, origin)
        seg.end_us = _us(seg.end, origin)
    return out, finals


def _allocate_lanes(spans: list[_Segment]) -> int:
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


_BATCH_TID_BASE = 1000


def _build_trace(
    events: list[_Event],
    info: dict[int, tuple[str, TaskPriority, TaskType]],
    marks: list[_Mark],
    origin: float,
    end: float,
    recorder: TraceRecorder,
) -> dict[str, object]:
    segments, finals = _segments(events, origin, end)
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

    def task_args(seg: _Segment) -> dict[str, object]:
        # Every recorded task has its info: it is stored with the task's first event.
        name, priority, task_type = info[seg.task_id]
        args: dict[str, object] = {
            "task_id": seg.task_id,
            "task": name,
            "priority": priority.name,
            "type": task_type.value,
            "pool": seg.pool,
            "attempt": seg.attempt,
            "outcome": seg.outcome.value if seg.outcome is not None else _UNFINISHED,
        }
        if seg.partial:
            args["began_before_trace"] = True
        return args

    def priority_of(task_id: int) -> TaskPriority:
        return info[task_id][1]

    # Running slices, on lanes.
    running: dict[str, list[_Segment]] = {}
    for seg in segments:
        if seg.kind is _RUNNING:
            running.setdefault(seg.pool, []).append(seg)
    for pool, spans in running.items():
        pid = pids[pool]
        lanes = _allocate_lanes(spans)
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
                    "cname": _CNAMES[priority],
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
        cat = _SEGMENT_CATS[seg.kind]
        name = f"{seg.kind.value} {priority.name}"
        pid = pids[seg.pool]
        args = task_args(seg)
        ident = f"{cat}-{seg.task_id}-{seq}"
        common = {"name": name, "cat": cat, "id": ident, "pid": pid, "tid": 0}
        out.append({**common, "ph": "b", "ts": seg.ts, "cname": _CNAMES[priority], "args": args})
        out.append({**common, "ph": "e", "ts": seg.end_us, "args": args})

    out.extend(_instants(segments, pids))
    out.extend(_queue_counters(segments, pids, priority_of))

    # Batches (and other marks the runtime reported).
    batch_spans: dict[str, list[tuple[float, float, _Mark]]] = {}
    for mark in marks:
        kind, pool, start, stop, task_ids, extra = mark
        pid = pids[pool]
        if kind == "batch":
            batch_spans.setdefault(pool, []).append((_us(start, origin), _us(stop, origin), mark))
        else:
            out.append(
                {
                    "name": kind.removeprefix("instant:"),
                    "cat": "event",
                    "ph": "i",
                    "s": "p",
                    "ts": _us(start, origin),
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
            "end": _us(end, origin),
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


def _instants(segments: list[_Segment], pids: Mapping[str, int]) -> list[dict[str, object]]:
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
    segments: list[_Segment],
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


# -- loading and validating ------------------------------------------------------------------


class TraceValidationError(ValueError):
    """A trace broke the Chrome trace-event rules or disagreed with the tasks' histories.

    Attributes:
        problems: Every problem found, one line each.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"invalid trace ({len(self.problems)} problems):\n  {shown}{more}")


TraceInput = str | os.PathLike[str] | Mapping[str, object] | Sequence[Mapping[str, object]]
"""A trace file's path, its parsed JSON object, or its list of events."""


def load_trace(trace: TraceInput) -> tuple[list[Mapping[str, object]], Mapping[str, object]]:
    """Read a trace into its events and its ``otherData``.

    Args:
        trace: A path to a trace JSON file, the parsed object, or the bare list of events.

    Returns:
        ``(events, other_data)``; ``other_data`` is empty for a bare list.

    Raises:
        OSError: If the file cannot be read.
        TraceValidationError: If it is not JSON, or not a trace.
    """
    data: object
    if isinstance(trace, str | os.PathLike):
        try:
            data = json.loads(Path(trace).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TraceValidationError([f"not JSON: {exc}"]) from exc
    else:
        data = trace
    other: Mapping[str, object] = {}
    if isinstance(data, Mapping):
        events = data.get("traceEvents")
        extra = data.get("otherData")
        if isinstance(extra, Mapping):
            other = extra
    else:
        events = data
    if not isinstance(events, Sequence) or isinstance(events, str | bytes):
        raise TraceValidationError(["no traceEvents list"])
    bad = [i for i, ev in enumerate(events) if not isinstance(ev, Mapping)]
    if bad:
        raise TraceValidationError([f"event {i} is not an object" for i in bad])
    return list(events), other


_PHASES = frozenset({"X", "B", "E", "b", "e", "n", "i", "I", "C", "M", "s", "t", "f"})
_META_NAMES = frozenset({"process_name", "thread_name", "process_sort_index", "thread_sort_index"})


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


class _Span:
    __slots__ = ("task_id", "kind", "start", "end", "outcome", "partial", "where")

    def __init__(
        self,
        task_id: int,
        kind: TaskStatus,
        start: float,
        end: float,
        outcome: str,
        partial: bool,
        where: str,
    ) -> None:
        self.task_id = task_id
        self.kind = kind
        self.start = start
        self.end = end
        self.outcome = outcome
        self.partial = partial
        self.where = where


def validate_trace(
    trace: TraceInput,
    histories: Mapping[int, Sequence[tuple[float, TaskStatus]]] | None = None,
    *,
    origin: float | None = None,
) -> None:
    """Check a trace: Chrome trace-event rules, task slices, and (optionally) task histories.

    Checks that every event is well formed; that processes and the threads holding slices are
    named; that slices on one thread are well nested, and task slices on one lane never
    overlap; that every async begin has its end; that each task's spans (queued, running,
    preempted) follow one another with no gap or overlap, each ending in the state the next
    one is, the last in a terminal state or "unfinished". Given ``histories``, also that each
    task's spans are exactly its recorded life: the same states at the same times.

    Args:
        trace: A path, the parsed trace object, or its list of events.
        histories: For each task id, its status changes in order as ``(time, new status)``,
            times on the scheduler clock (as a transition listener sees them).
        origin: The scheduler-clock time that is zero in the trace; default: the trace's
            ``otherData.clock_origin``.

    Raises:
        TraceValidationError: Listing every problem found.
    """
    events, other = load_trace(trace)
    problems: list[str] = []
    named_pids: set[object] = set()
    named_threads: set[tuple[object, object]] = set()
    tracks: dict[tuple[int, int], list[tuple[float, float, str]]] = {}
    async_open: dict[tuple[object, ...], list[tuple[float, Mapping[str, object]]]] = {}
    spans: dict[int, list[_Span]] = {}
    used_threads: set[tuple[int, int]] = set()
    used_pids: set[int] = set()

    def add_span(args: object, cat: str, start: float, end: float, where: str) -> None:
        kind = _KIND_OF_CAT.get(cat)
        if kind is None or not isinstance(args, Mapping):
            return
        task_id = args.get("task_id")
        outcome = args.get("outcome")
        if not isinstance(task_id, int) or not isinstance(outcome, str):
            problems.append(f"{where}: task span without integer task_id and outcome in args")
            return
        partial = args.get("began_before_trace") is True
        spans.setdefault(task_id, []).append(
            _Span(task_id, kind, start, end, outcome, partial, where)
        )

    for i, ev in enumerate(events):
        where = f"event {i}"
        ph = ev.get("ph")
        name = ev.get("name")
        pid = ev.get("pid")
        tid = ev.get("tid", 0)
        if ph not in _PHASES:
            problems.append(f"{where}: unknown phase {ph!r}")
            continue
        if not isinstance(name, str):
            problems.append(f"{where}: name must be a string, got {name!r}")
            continue
        where = f"event {i} ({ph} {name!r})"
        if not isinstance(pid, int) or isinstance(pid, bool):
            problems.append(f"{where}: pid must be an integer")
            continue
        if not isinstance(tid, int) or isinstance(tid, bool):
            problems.append(f"{where}: tid must be an integer")
            continue
        args = ev.get("args", {})
        if not isinstance(args, Mapping):
            problems.append(f"{where}: args must be an object")
            continue
        if ph == "M":
            if name not in _META_NAMES:
                continue  # other metadata is allowed and ignored
            if name == "process_name" and isinstance(args.get("name"), str):
                named_pids.add(pid)
            elif name == "thread_name" and isinstance(args.get("name"), str):
                named_threads.add((pid, tid))
            elif name.endswith("sort_index") and _number(args.get("sort_index")) is None:
                problems.append(f"{where}: sort_index must be a number")
            elif name in ("process_name", "thread_name"):
                problems.append(f"{where}: metadata needs a string args.name")
            continue
        ts = _number(ev.get("ts"))
        if ts is None or ts < 0:
            problems.append(f"{where}: ts must be a finite number >= 0, got {ev.get('ts')!r}")
            continue
        used_pids.add(pid)
        cat = ev.get("cat", "")
        cat = cat if isinstance(cat, str) else ""
        if ph == "X":
            dur = _number(ev.get("dur"))
            if dur is None or dur < 0:
                problems.append(f"{where}: dur must be a finite number >= 0")
                continue
            tracks.setdefault((pid, tid), []).append((ts, ts + dur, cat))
            used_threads.add((pid, tid))
            add_span(args, cat, ts, ts + dur, where)
        elif ph in ("b", "e"):
            key = (pid, cat, ev.get("id"), name)
            if ev.get("id") is None:
                problems.append(f"{where}: async event without id")
            elif ph == "b":
                async_open.setdefault(key, []).append((ts, args))
            else:
                stack = async_open.get(key)
                if not stack:
                    problems.append(f"{where}: async end without a begin")
                    continue
                start, begin_args = stack.pop()
                if ts < start:
                    problems.append(f"{where}: async end at {ts} before its begin at {start}")
                add_span(begin_args, cat, start, ts, where)
        elif ph in ("i", "I"):
            scope = ev.get("s", "t")
            if scope not in ("t", "p", "g"):
                problems.append(f"{where}: instant scope must be t, p or g, got {scope!r}")
            elif scope == "t":
                used_threads.add((pid, tid))
        elif ph == "C":
            for key_, value in args.items():
                n = _number(value)
                if n is None:
                    problems.append(f"{where}: counter {key_!r} is not a number")
                elif name == "queue depth" and n < 0:
                    problems.append(f"{where}: queue depth {key_} went negative ({n})")

    for akey, stack in async_open.items():
        for start, _args in stack:
            problems.append(f"async begin {akey[3]!r} (id {akey[2]!r}) at {start} never ends")
    for pid in sorted(used_pids - {p for p in named_pids if isinstance(p, int)}):
        problems.append(f"process {pid} has no process_name")
    for pid, tid in sorted(used_threads - {t for t in named_threads if _int_pair(t)}):
        problems.append(f"thread {tid} of process {pid} has no thread_name")
    for (pid, tid), slices in tracks.items():
        problems.extend(_nesting_problems(pid, tid, slices))
    for task_id, task_spans in spans.items():
        problems.extend(_span_problems(task_id, task_spans))
    if histories is not None:
        if origin is None:
            found = _number(other.get("clock_origin"))
            if found is None:
                problems.append("histories given but no origin (and no otherData.clock_origin)")
                raise TraceValidationError(problems)
            origin = found
        dropped = _number(other.get("dropped_events")) or 0
        problems.extend(_history_problems(spans, histories, origin, complete=dropped == 0))
    if problems:
        raise TraceValidationError(problems)


def _int_pair(t: tuple[object, object]) -> bool:
    return isinstance(t[0], int) and isinstance(t[1], int)


def _nesting_problems(pid: int, tid: int, slices: list[tuple[float, float, str]]) -> list[str]:
    """Slices on one thread must be well nested; task slices on a lane must not overlap."""
    out: list[str] = []
    slices.sort(key=lambda s: (s[0], -s[1]))
    stack: list[tuple[float, float, str]] = []
    last_task_end = -math.inf
    for start, end, cat in slices:
        while stack and stack[-1][1] <= start + _TRACK_TOLERANCE_US:
            stack.pop()
        if stack and end > stack[-1][1] + _TRACK_TOLERANCE_US:
            parent = stack[-1]
            out.append(
                f"thread {tid} of process {pid}: slice [{start}, {end}] overlaps "
                f"[{parent[0]}, {parent[1]}] without nesting in it"
            )
        stack.append((start, end, cat))
    # Task slices on a lane follow one another; several may share an instant (a task that
    # ended the moment it started, then the next one), so they go by start, then end.
    for start, end, _cat in sorted(s for s in slices if s[2] == "task"):
        if start < last_task_end - _TRACK_TOLERANCE_US:
            out.append(
                f"thread {tid} of process {pid}: task slice at {start} starts before the "
                f"previous task slice on the lane ends ({last_task_end})"
            )
        last_task_end = max(last_task_end, end)
    return out


def _span_problems(task_id: int, spans: list[_Span]) -> list[str]:
    """A task's spans must follow one another, each ending in the state the next one is."""
    out: list[str] = []
    spans.sort(key=lambda s: (s.start, s.end))
    for i, span in enumerate(spans):
        if span.end < span.start:
            out.append(f"task {task_id}: span {span.kind.value} ends before it starts")
        if i + 1 < len(spans):
            nxt = spans[i + 1]
            if abs(nxt.start - span.end) > _TRACK_TOLERANCE_US:
                gap = "overlaps" if nxt.start < span.end else "leaves a gap before"
                out.append(
                    f"task {task_id}: {span.kind.value} span [{span.start}, {span.end}] "
                    f"{gap} the {nxt.kind.value} span at {nxt.start}"
                )
            if span.outcome != nxt.kind.value:
                out.append(
                    f"task {task_id}: {span.kind.value} span ends in {span.outcome!r} but the "
                    f"next span is {nxt.kind.value}"
                )
            if nxt.partial:
                out.append(f"task {task_id}: only a task's first span can predate the trace")
        else:
            status = _STATUS_BY_VALUE.get(span.outcome)
            if span.outcome != _UNFINISHED and (status is None or status not in TERMINAL):
                out.append(
                    f"task {task_id}: last span ends in {span.outcome!r}, neither a terminal "
                    "state nor unfinished"
                )
    return out


def _history_problems(
    spans: Mapping[int, list[_Span]],
    histories: Mapping[int, Sequence[tuple[float, TaskStatus]]],
    origin: float,
    *,
    complete: bool,
) -> list[str]:
    """Each task's spans must be exactly the states its history says, at the same times."""
    out: list[str] = []
    for task_id, history in histories.items():
        if not history:
            continue
        expected: list[tuple[TaskStatus, float, float | None, str]] = []
        for i, (when, status) in enumerate(history):
            if status in TERMINAL or status is _PENDING:
                continue
            if i + 1 < len(history):
                nxt_when, nxt_status = history[i + 1]
                expected.append((status, when, nxt_when, nxt_status.value))
            else:
                expected.append((status, when, None, _UNFINISHED))
        got = [s for s in spans.get(task_id, []) if not s.partial]
        if not got and not expected:
            continue  # a task that only ended while recorded leaves no span
        if task_id not in spans:
            if complete:
                out.append(f"task {task_id}: in the history but not in the trace")
            continue
        if [s.kind for s in got] != [e[0] for e in expected]:
            out.append(
                f"task {task_id}: spans {[s.kind.value for s in got]} but history says "
                f"{[e[0].value for e in expected]}"
            )
            continue
        for span, (kind, start, end, outcome) in zip(got, expected, strict=True):
            if abs(span.start - _us(start, origin)) > _HISTORY_TOLERANCE_US:
                out.append(
                    f"task {task_id}: {kind.value} span starts at {span.start}, history says "
                    f"{_us(start, origin)}"
                )
            if end is not None and abs(span.end - _us(end, origin)) > _HISTORY_TOLERANCE_US:
                out.append(
                    f"task {task_id}: {kind.value} span ends at {span.end}, history says "
                    f"{_us(end, origin)}"
                )
            if span.outcome != outcome:
                out.append(
                    f"task {task_id}: {kind.value} span ends in {span.outcome!r}, history says "
                    f"{outcome!r}"
                )
    if complete:
        for task_id in spans:
            if task_id not in histories:
                out.append(f"task {task_id}: in the trace but not in the histories")
    return out
