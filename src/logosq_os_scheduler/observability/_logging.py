"""Logging with the task on every record: its id, the backend it is on, and the attempt.

The scheduler logs through the standard :mod:`logging` module, to the logger named
``"logosq_os_scheduler"`` (and its children). Records about a task carry ``task_id``, ``task``
(its name), ``priority``, ``backend`` and ``attempt`` attributes, so a format string can show
them::

    handler.addFilter(TaskContextFilter())    # every record gets the fields ("-" if no task)
    handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))

:func:`configure_logging` does exactly that for a quick start. Code that logs about one task
uses a :class:`TaskLoggerAdapter`; :class:`TransitionLogger` is an opt-in listener that logs
every status change, for following a run in detail.

Nothing here costs anything unless a record is actually emitted: the adapter reads the task's
fields only when the logger is enabled for the level, and the transition logger asks
``isEnabledFor`` before building anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import IO, TYPE_CHECKING, Any

from .._task import Task, TaskStatus
from ._listeners import event_source

if TYPE_CHECKING:
    from .._protocols import EventSource

__all__ = [
    "DEFAULT_FORMAT",
    "LOGGER_NAME",
    "TASK_FIELDS",
    "TaskContextFilter",
    "TaskLoggerAdapter",
    "TransitionLogger",
    "configure_logging",
    "task_fields",
]

LOGGER_NAME = "logosq_os_scheduler"
"""The scheduler's logger; its children are named ``logosq_os_scheduler.<part>``."""

TASK_FIELDS = ("task_id", "task", "priority", "backend", "attempt")
"""The attributes a record about a task carries."""

DEFAULT_FORMAT = (
    "%(asctime)s %(levelname)-7s %(name)s "
    "[task=%(task_id)s backend=%(backend)s attempt=%(attempt)s] %(message)s"
)
"""A format showing the task fields; use it with :class:`TaskContextFilter` on the handler."""

_S = TaskStatus


def task_fields(task: Task[Any]) -> dict[str, object]:
    """The logging fields of a task, for ``extra=``.

    ``backend`` is the backend the task ran on, else the pool it is in ("classical" for
    classical work). ``attempt`` is how many times it has been started.
    """
    backend = task.backend_used
    if backend is None:
        pool_name = getattr(task.resources, "name", None)
        backend = pool_name if isinstance(pool_name, str) else "-"
    return {
        "task_id": task.task_id,
        "task": task.name,
        "priority": task.priority.name,
        "backend": backend,
        "attempt": task.attempts,
    }


class TaskContextFilter(logging.Filter):
    """Gives every record the task fields, as ``"-"`` where a record is not about a task.

    Add it to a *handler* (a logger's own filters do not see records from its children), so
    that a format using ``%(task_id)s`` never fails on a record that has no task.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill in missing task fields; never drops a record."""
        fields = record.__dict__
        for name in TASK_FIELDS:
            if name not in fields:
                fields[name] = "-"
        return True


class TaskLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger for records about one task: each carries the task's fields.

    The fields are read when a record is made, so the backend and attempt are those of that
    moment. Fields passed in ``extra=`` win over the task's.

    Args:
        logger: The logger to write to (usually ``logging.getLogger(LOGGER_NAME)``).
        task: The task the records are about.
    """

    def __init__(self, logger: logging.Logger, task: Task[Any]) -> None:
        super().__init__(logger, {})
        self.task = task

    def process(
        self, msg: object, kwargs: MutableMapping[str, Any]
    ) -> tuple[object, MutableMapping[str, Any]]:
        """Add the task's fields to the record's ``extra``."""
        extra = task_fields(self.task)
        given = kwargs.get("extra")
        if isinstance(given, Mapping):
            extra.update(given)
        kwargs["extra"] = extra
        return msg, kwargs


def configure_logging(
    level: int = logging.INFO,
    *,
    stream: IO[str] | None = None,
    fmt: str = DEFAULT_FORMAT,
) -> logging.Handler:
    """Send the scheduler's records at ``level`` and above to ``stream`` (default: stderr).

    Returns:
        The handler added to the ``"logosq_os_scheduler"`` logger, to remove it later.
    """
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskContextFilter())
    handler.setFormatter(logging.Formatter(fmt))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


class TransitionLogger:
    """Logs every status change of every task (opt-in, for following a run in detail).

    Ordinary steps (queued, started, completed) are logged at ``level``; retries, preemptions
    and cancellations at INFO; failures and time-outs at WARNING, with the task's error.

    Args:
        logger: Where to log (default: ``logosq_os_scheduler.transitions``).
        level: The level of ordinary steps.
    """

    __slots__ = ("_source", "level", "logger")

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self.logger = logger or logging.getLogger(LOGGER_NAME + ".transitions")
        self.level = level
        self._source: EventSource | None = None

    @classmethod
    def attach(
        cls,
        target: EventSource,
        logger: logging.Logger | None = None,
        level: int = logging.DEBUG,
    ) -> TransitionLogger:
        """Create one and make it see ``target``'s status changes."""
        self = cls(logger, level)
        self._source = event_source(target)
        self._source.add_listener(self)
        return self

    def detach(self) -> None:
        """Stop logging status changes."""
        if self._source is not None:
            self._source.remove_listener(self)
            self._source = None

    def _level_of(self, old: TaskStatus, new: TaskStatus) -> int:
        if new is _S.FAILED or new is _S.TIMED_OUT:
            return logging.WARNING
        if new is _S.CANCELLED or new is _S.PREEMPTED or (new is _S.QUEUED and old is _S.RUNNING):
            return max(self.level, logging.INFO)
        return self.level

    def __call__(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        level = self._level_of(old, new)
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        extra = task_fields(task)  # the core counts an attempt before the move to RUNNING
        error = task.error
        if error is not None and (new is _S.FAILED or new is _S.TIMED_OUT):
            logger.log(
                level,
                "task %s (%r) %s -> %s at %.6f: %s: %s",
                task.task_id,
                task.name,
                old.value,
                new.value,
                now,
                type(error).__name__,
                error,
                extra=extra,
            )
        else:
            logger.log(
                level,
                "task %s (%r) %s -> %s at %.6f",
                task.task_id,
                task.name,
                old.value,
                new.value,
                now,
                extra=extra,
            )
