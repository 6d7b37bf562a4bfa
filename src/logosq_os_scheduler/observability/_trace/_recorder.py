"""The trace recorder: one tuple per status change, kept until the trace is exported."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._task import Task, TaskPriority, TaskStatus, TaskType
from .._listeners import event_source
from ._chrome import build_trace
from ._schema import Event, Mark

if TYPE_CHECKING:
    from ..._protocols import EventSource

__all__ = ["TraceRecorder"]


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

    __slots__ = ("_source", "_events", "_info", "_limit", "_marks", "dropped", "origin")

    def __init__(self, *, max_events: int | None = 1_000_000, origin: float = 0.0) -> None:
        if max_events is not None and max_events <= 0:
            raise ValueError(f"max_events must be positive or None, got {max_events!r}")
        self._events: list[Event] = []
        # task id -> (name, priority, type), filled on a task's first recorded change.
        self._info: dict[int, tuple[str, TaskPriority, TaskType]] = {}
        self._marks: list[Mark] = []
        self._limit = sys.maxsize if max_events is None else max_events
        self._source: EventSource | None = None
        self.dropped = 0
        """Status changes not recorded because ``max_events`` was reached."""
        self.origin = origin

    # -- attaching ---------------------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        target: EventSource,
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
        source = event_source(target)
        recorder = cls(max_events=max_events, origin=source.started_at)
        recorder._source = source
        source.add_listener(recorder.record)
        return recorder

    def detach(self) -> None:
        """Stop recording (what was recorded stays available for export)."""
        if self._source is not None:
            self._source.remove_listener(self.record)
            self._source = None

    @property
    def attached(self) -> bool:
        """Whether the recorder is listening to a scheduler."""
        return self._source is not None

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
            source = self._source
            end = source.clock.now() if source is not None and not self.dropped else last
        end = max(end, last)
        return build_trace(events, dict(self._info), list(self._marks), self.origin, end, self)

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
