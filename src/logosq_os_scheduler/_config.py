"""Scheduler settings in one validated, immutable object."""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from collections.abc import Mapping

from ._coerce import HintingEnumType, coerce_enum, coerce_seconds
from ._errors import InvalidConfigError

__all__ = ["Durability", "FairShare", "PreemptionStrategy", "SchedulerConfig"]


class PreemptionStrategy(enum.Enum, metaclass=HintingEnumType):
    """What happens to running work when more urgent work arrives and no slot is free.

    NONE: tasks run to completion; priority decides only who starts next.
    COOPERATIVE: running tasks give their slot up at checkpoints they reach.
    PREEMPTIVE: more urgent tasks take a slot from the least urgent running task at once.
    """

    NONE = "none"
    COOPERATIVE = "cooperative"
    PREEMPTIVE = "preemptive"


class Durability(enum.Enum, metaclass=HintingEnumType):
    """What a journal's acknowledged writes survive (``SchedulerConfig.durability``).

    ==========  ===============================  ==============================================
    Member      SQLite                           An acknowledged submit survives
    ==========  ===============================  ==============================================
    OFF         ``synchronous=OFF``; ``await     a clean exit; a crash loses what the last
                submit`` does not wait           group commit had not written yet
    PROCESS     ``synchronous=NORMAL`` (WAL)     a crash or kill -9 of the scheduler process
                (default)                        (the OS has the bytes); not a power loss
    POWER       ``synchronous=FULL`` (fsync at   a power loss or kernel crash as well
                every group commit)
    ==========  ===============================  ==============================================
    """

    OFF = "off"
    PROCESS = "process"
    POWER = "power"


def _positive_int(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidConfigError(name, f"must be a positive integer, got {value!r}")


def _non_negative_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidConfigError(name, f"must be a non-negative integer, got {value!r}")


def _seconds(
    name: str, value: object, *, allow_none: bool, allow_zero: bool = False
) -> float | None:
    return coerce_seconds(
        name, value, allow_none=allow_none, allow_zero=allow_zero, error=InvalidConfigError
    )


def _positive_weight(field: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidConfigError(field, f"must be a positive finite number, got {value!r}")
    return float(value)


def _cap(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidConfigError(field, f"must be a positive integer, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class FairShare:
    """How a scheduler shares its slots between users (``SchedulerConfig(fair_share=...)``).

    Tasks say whose they are with ``TaskBuilder.with_user(name)``; tasks without a user
    share one anonymous account.

    Attributes:
        weights: Each user's weight; a user of weight 2 gets twice the starts of a user of
            weight 1 while both have work waiting.
        default_weight: The weight of users not in ``weights``.
        max_running: Most tasks each listed user may have running at once (across every
            pool); their further work waits, whatever their share.
        groups: Each user's group, for ``group_max_running``.
        group_max_running: Most tasks each listed group's users may have running at once,
            together.

    Raises:
        InvalidConfigError: If a weight is not a positive finite number, or a cap not a
            positive integer.
    """

    weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    default_weight: float = 1.0
    max_running: Mapping[str, int] = dataclasses.field(default_factory=dict)
    groups: Mapping[str, str] = dataclasses.field(default_factory=dict)
    group_max_running: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive_weight("fair_share.default_weight", self.default_weight)
        for user, w in self.weights.items():
            _positive_weight(f"fair_share.weights[{user!r}]", w)
        for user, n in self.max_running.items():
            _cap(f"fair_share.max_running[{user!r}]", n)
        for group, n in self.group_max_running.items():
            _cap(f"fair_share.group_max_running[{group!r}]", n)
        for user, group in self.groups.items():
            if not isinstance(group, str) or not group:
                raise InvalidConfigError(
                    f"fair_share.groups[{user!r}]", f"must be a group name, got {group!r}"
                )

    def weight(self, user: str) -> float:
        """The weight of ``user``."""
        return self.weights.get(user, self.default_weight)


@dataclasses.dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Every setting of a :class:`~logosq_os_scheduler.QuantumScheduler`.

    Attributes:
        workers: Classical execution slots, and the size of the worker thread pool.
        max_queue_depth: Most tasks that may wait at once; past it, submit raises
            ``QueueFullError``. None for no limit.
        max_concurrent_quantum: Most quantum jobs in flight across all backends. None for
            only the backends' own limits.
        task_timeout: Default deadline of every task, in seconds from submission; a task's own
            ``with_timeout`` wins. None for no deadline.
        preemption: The :class:`PreemptionStrategy`.
        aging_threshold: Seconds a waiting task must wait to be lifted one priority level (up to
            HIGH; IDLE never ages). None turns aging off.
        inline_threshold: Synchronous functions measured to take less than this many seconds
            run inline on the event loop instead of on a worker thread. 0 turns the fast path
            off (``with_executor("inline")`` still forces it).
        latency_samples: How many recent latencies the metrics keep for their percentiles.
        max_retries: Default retry budget per quantum task for retryable backend errors.
        retry_backoff: First retry delay in seconds; doubles each retry, with full jitter.
        retry_backoff_max: Ceiling of the retry delay in seconds.
        batch_window: How long a partial batch of circuits may wait to fill, in seconds.
        breaker_threshold: Consecutive failures that take a backend out of rotation.
        breaker_cooldown: Seconds before a tripped backend is probed again.
        job_timeout: Seconds a backend job may run before it counts as hung. None: no limit.
        max_preemptions: How often one task may be preempted; after that it runs to the end,
            so no task is starved by a stream of more urgent work.
        journal: Path of the durable journal (an SQLite file), or None to keep everything in
            memory. See docs/journal.md.
        durability: What an acknowledged submit survives (:class:`Durability`).
        journal_retention: Seconds a finished task stays in the journal; None keeps it until
            ``logosq jobs gc``.
        fair_share: Share the slots between users by weight (:class:`FairShare`; tasks say
            whose they are with ``with_user``), each user's work in priority order within
            their share. None (the default): strict priority over everyone's work.
        max_abandoned_threads: Python cannot stop a thread, so a synchronous function that
            times out or is cancelled on a worker thread runs on: its thread is abandoned (it
            exits once the function returns, dropping the result) and a new thread takes its
            place, so the task's slot is free at once. At most this many abandoned threads
            may be running at a time; past it a timed-out thread is not replaced and keeps
            its slot until its function returns (see ``SchedulerMetrics.unreplaced_threads``).
            0 never abandons a thread.
    """

    workers: int = 4
    max_queue_depth: int | None = None
    max_concurrent_quantum: int | None = None
    task_timeout: float | None = None
    preemption: PreemptionStrategy = PreemptionStrategy.NONE
    aging_threshold: float | None = 5.0
    inline_threshold: float = 50e-6
    latency_samples: int = 65_536
    max_retries: int = 3
    retry_backoff: float = 0.05
    retry_backoff_max: float = 2.0
    batch_window: float = 0.002
    breaker_threshold: int = 5
    breaker_cooldown: float = 5.0
    job_timeout: float | None = None
    max_preemptions: int = 3
    max_abandoned_threads: int = 64
    journal: str | None = None
    durability: Durability = Durability.PROCESS
    journal_retention: float | None = None
    fair_share: FairShare | None = None

    def __post_init__(self) -> None:
        _positive_int("workers", self.workers)
        if isinstance(self.workers, int) and self.workers > 4096:
            raise InvalidConfigError("workers", f"at most 4096 workers, got {self.workers}")
        _positive_int("max_queue_depth", self.max_queue_depth, allow_none=True)
        _positive_int("max_concurrent_quantum", self.max_concurrent_quantum, allow_none=True)
        object.__setattr__(
            self, "task_timeout", _seconds("task_timeout", self.task_timeout, allow_none=True)
        )
        if type(self.preemption) is not PreemptionStrategy:
            object.__setattr__(
                self,
                "preemption",
                coerce_enum(
                    PreemptionStrategy,
                    self.preemption,
                    field="preemption",
                    error=InvalidConfigError,
                ),
            )
        object.__setattr__(
            self,
            "aging_threshold",
            _seconds("aging_threshold", self.aging_threshold, allow_none=True),
        )
        object.__setattr__(
            self,
            "inline_threshold",
            _seconds("inline_threshold", self.inline_threshold, allow_none=False, allow_zero=True),
        )
        _positive_int("latency_samples", self.latency_samples)
        _non_negative_int("max_retries", self.max_retries)
        for name in ("retry_backoff", "retry_backoff_max", "batch_window"):
            object.__setattr__(
                self, name, _seconds(name, getattr(self, name), allow_none=False, allow_zero=True)
            )
        _positive_int("breaker_threshold", self.breaker_threshold)
        _non_negative_int("max_preemptions", self.max_preemptions)
        object.__setattr__(
            self,
            "breaker_cooldown",
            _seconds("breaker_cooldown", self.breaker_cooldown, allow_none=False),
        )
        object.__setattr__(
            self, "job_timeout", _seconds("job_timeout", self.job_timeout, allow_none=True)
        )
        _non_negative_int("max_abandoned_threads", self.max_abandoned_threads)
        journal = self.journal
        if journal is not None:
            if hasattr(journal, "__fspath__"):
                journal = os.fspath(journal)
                object.__setattr__(self, "journal", journal)
            if not isinstance(journal, str) or not journal:
                raise InvalidConfigError(
                    "journal", f"must be the path of a file, or None; got {journal!r}"
                )
        if type(self.durability) is not Durability:
            object.__setattr__(
                self,
                "durability",
                coerce_enum(
                    Durability, self.durability, field="durability", error=InvalidConfigError
                ),
            )
        object.__setattr__(
            self,
            "journal_retention",
            _seconds("journal_retention", self.journal_retention, allow_none=True),
        )
        self._check_fair_share()

    def _check_fair_share(self) -> None:
        if self.fair_share is not None and not isinstance(self.fair_share, FairShare):
            raise InvalidConfigError(
                "fair_share",
                f"must be a FairShare(...) or None, got {type(self.fair_share).__name__}",
            )

    def replace(self, /, **changes: object) -> SchedulerConfig:
        """Return a copy with some settings changed (validated like the original).

        Raises:
            InvalidConfigError: If a name is not a setting or a value is out of range.
        """
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise InvalidConfigError(key, f"no such setting; known: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(SchedulerConfig))
_dataclass_init = SchedulerConfig.__init__


def _checked_init(self: SchedulerConfig, *args: object, **kwargs: object) -> None:
    # The dataclass's own __init__ answers an unknown or surplus argument with a bare
    # TypeError; name the setting instead, as every other refusal does.
    if len(args) > len(_FIELD_NAMES):
        raise InvalidConfigError(
            "config", f"takes at most {len(_FIELD_NAMES)} settings, got {len(args)} positional"
        )
    for key in kwargs:
        if key not in _FIELD_NAMES:
            raise InvalidConfigError(
                key, f"no such setting; known: {', '.join(sorted(_FIELD_NAMES))}"
            )
    for key in _FIELD_NAMES[: len(args)]:
        if key in kwargs:
            raise InvalidConfigError(key, "given both by position and by name")
    _dataclass_init(self, *args, **kwargs)  # type: ignore[arg-type]


SchedulerConfig.__init__ = _checked_init  # type: ignore[method-assign]
