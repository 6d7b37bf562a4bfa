"""Checking a trace: the Chrome trace-event rules, each task's spans, and its history.

:func:`validate_trace` checks a trace's structure, that every task's slices follow one another
without gap or overlap, and, given independently recorded state histories, that they match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..._task import TaskStatus
from ...core._state import TERMINAL
from ._load import TraceInput, TraceValidationError, load_trace
from ._schema import KIND_OF_CAT, UNFINISHED, to_us

__all__ = ["validate_trace"]

_PENDING = TaskStatus.PENDING

_STATUS_BY_VALUE: Mapping[str, TaskStatus] = {s.value: s for s in TaskStatus}
_TRACK_TOLERANCE_US = 1e-3
_HISTORY_TOLERANCE_US = 1e-2

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
        kind = KIND_OF_CAT.get(cat)
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
            if span.outcome != UNFINISHED and (status is None or status not in TERMINAL):
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
                expected.append((status, when, None, UNFINISHED))
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
            if abs(span.start - to_us(start, origin)) > _HISTORY_TOLERANCE_US:
                out.append(
                    f"task {task_id}: {kind.value} span starts at {span.start}, history says "
                    f"{to_us(start, origin)}"
                )
            if end is not None and abs(span.end - to_us(end, origin)) > _HISTORY_TOLERANCE_US:
                out.append(
                    f"task {task_id}: {kind.value} span ends at {span.end}, history says "
                    f"{to_us(end, origin)}"
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
