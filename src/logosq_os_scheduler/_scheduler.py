"""QuantumScheduler: the asyncio runtime that drives the scheduling core.

The core (:mod:`logosq_os_scheduler.core`) decides; this module carries the decisions out: it
runs functions inline, on worker threads or as coroutines, arms the deadline timer, resolves
handles, and wakes whoever waits. Only the event-loop thread changes scheduler state; other
threads reach it through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import enum
import gc
import logging
import math
import os
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ._clock import Clock, LoopClock, MonotonicClock
from ._coerce import SeedSpelling
from ._config import Durability, PreemptionStrategy, SchedulerConfig
from ._context import _current_task
from ._errors import (
    InternalError,
    InterruptedByRestartError,
    InvalidConfigError,
    InvalidTaskError,
    KeyReusedError,
    NoRouteError,
    QueueFullError,
    SchedulerClosedError,
    SchedulerError,
    UnknownTaskError,
)
from ._handle import TaskHandle
from ._quantum import QuantumDispatcher
from ._task import (
    Task,
    TaskBuilder,
    TaskStatus,
    TaskType,
    is_transient,
    reserve_ids,
    restored_task,
)
from ._timers import Timer, Timers
from .core import Pool, SchedulerCore
from .core._core import TransitionListener
from .core._inline import FunctionTimings, Timing
from .core._preemption import (
    PreemptionMove,
    choose_victim,
    preemption_move,
    preempts_on_arrival,
    should_yield,
    slot_wanted,
)
from .core._recovery import RecoveryAction, RecoveryFacts, decide_recovery, waits_for_backend
from .core._state import TERMINAL
from .core._statistics import statistics
from .executors._base import Executor
from .executors._threads import NOT_CALLED, Completion, ThreadWorkers
from .journal._codec import decode_spec, encode_spec, same_spec
from .observability._logging import task_fields
from .observability._metrics import SchedulerMetrics, UserMetrics
from .observability._trace import TraceRecorder

if TYPE_CHECKING:
    from .backends._base import Backend
    from .core._routing import RoutingRule
    from .journal import Journal, JournalRow
    from .security import ResultSigner
    from .workflows import HybridWorkflow, WorkflowResult

__all__ = ["QuantumScheduler"]

T = TypeVar("T")

log = logging.getLogger("logosq_os_scheduler")

_S = TaskStatus
_PENDING = _S.PENDING
_RUNNING = _S.RUNNING
_COMPLETED = _S.COMPLETED
_FAILED = _S.FAILED
_CANCELLED = _S.CANCELLED
_PREEMPTED = _S.PREEMPTED
_CLASSICAL = TaskType.CLASSICAL
_HYBRID = TaskType.HYBRID
_RESTART = PreemptionMove.RESTART
_AT_CHECKPOINT = PreemptionMove.AT_CHECKPOINT
_QUANTUM = TaskType.QUANTUM
_DURABILITY_OFF = Durability.OFF
_REQUEUE = decide_recovery(RecoveryFacts(running=False, quantum=False))
_CoroutineType = types.CoroutineType
_BUILTIN_EXECUTORS = frozenset({"auto", "inline", "thread"})
# Longest stretch one _dispatch call keeps the loop before it yields (seconds).
_DISPATCH_SLICE = 0.002


class _ExecutorRun:
    """What runs a task on a pluggable executor: enough to cancel, suspend or resume it.

    The task's ``runner`` while it runs there (a :class:`TaskRunner`), and its ``resume``
    while its process worker is paused with SIGSTOP (a :class:`ParkedRun`)."""

    __slots__ = ("executor", "task_id")

    def __init__(self, executor: Executor, task_id: int) -> None:
        self.executor = executor
        self.task_id = task_id

    def cancel(self) -> bool:
        return self.executor.cancel(self.task_id)

    def suspend(self) -> bool:
        return self.executor.suspend(self.task_id)

    def wake(self) -> None:
        self.executor.resume(self.task_id)

    def stop(self) -> None:
        """Nothing to wake: cancelling its runner (this same run) kills the worker."""


class _CoroutineParked:
    """A coroutine parked at its checkpoint (a :class:`ParkedRun`): it awaits ``resumed``."""

    __slots__ = ("resumed",)

    def __init__(self, resumed: asyncio.Future[None]) -> None:
        self.resumed = resumed

    def wake(self) -> None:
        if not self.resumed.done():
            self.resumed.set_result(None)

    def stop(self) -> None:
        """Nothing to wake: cancelling its runner unwinds the coroutine where it waits."""


class _ThreadParked:
    """A worker thread parked at its checkpoint (a :class:`ParkedRun`): it waits on
    ``resumed``, and the pool ran a replacement meanwhile (``park``), which ``unpark``
    retires."""

    __slots__ = ("resumed", "threads")

    def __init__(self, resumed: threading.Event, threads: ThreadWorkers) -> None:
        self.resumed = resumed
        self.threads = threads

    def wake(self) -> None:
        self.threads.unpark()
        self.resumed.set()

    def stop(self) -> None:
        # The task ended while its thread waited: wake it, so that it unwinds (its checkpoint
        # finds the task ended).
        self.wake()


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class QuantumScheduler:
    """The hybrid quantum-classical task scheduler.

    Use it as an async context manager, which closes it (draining the queue) on exit::

        async with QuantumScheduler(4) as scheduler:
            handle = await scheduler.submit(Task.classical("add").with_function(add, 1, 2))
            result = await handle
            assert result.value == 3

    The scheduler binds to the event loop it is first used on. From synchronous code, use
    :class:`~logosq_os_scheduler.BlockingScheduler`.

    Args:
        workers: Classical slots and worker threads (default 4).
        config: All settings at once; ``workers``, if also given, overrides its ``workers``.
        clock: Where time comes from (default: the monotonic clock).
        journal: Path of a durable journal (``config.journal`` otherwise): every submit,
            result and backend job is recorded there, and a scheduler that opens an existing
            journal recovers its tasks. See docs/journal.md.

    Raises:
        InvalidConfigError: If a setting is out of range.
        JournalError: If the journal cannot be opened (names the file and what to do).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        config: SchedulerConfig | None = None,
        clock: Clock | None = None,
        journal: str | os.PathLike[str] | None = None,
    ) -> None:
        if config is None:
            config = SchedulerConfig() if workers is None else SchedulerConfig(workers=workers)
        elif not isinstance(config, SchedulerConfig):
            raise InvalidConfigError("config", f"expected a SchedulerConfig, got {config!r}")
        elif workers is not None:
            config = config.replace(workers=workers)
        if journal is not None:
            config = config.replace(journal=journal)
        if clock is None:
            clock = MonotonicClock()
        elif not isinstance(clock, Clock):
            raise InvalidConfigError("clock", f"expected an object with now(), got {clock!r}")
        self._config = config
        self._clock = clock
        # The real clock is read through the builtin directly: it is read on every event.
        self._now: Callable[[], float] = (
            time.monotonic if type(clock) is MonotonicClock else clock.now
        )
        self._core = SchedulerCore(config, clock, owner=self)
        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._threads: ThreadWorkers | None = None
        # Tasks ended early whose thread was not abandoned: max_abandoned_threads were running.
        self._unreplaced_threads = 0
        # Tasks holding a slot whose execution has not returned yet (incl. ended-but-running).
        self._active: set[Task[Any]] = set()
        self._dispatching: set[str] = set()
        # id(code) -> [code, seconds]: how long a synchronous function takes (EWMA).
        # Which synchronous functions run inline (core._inline); its table is read directly.
        self._timings = FunctionTimings(config.inline_threshold)
        self._fast = self._timings.entries
        self._timer: Timer | None = None
        # The runtime's timers, in the clock's time (set when the scheduler starts).
        self._timers: Timers | None = None
        self._timer_when = math.inf
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._executors: dict[str, tuple[Executor, Pool]] = {}
        self._trace: TraceRecorder | None = None
        self._signer: ResultSigner | None = None
        # The quantum half: backends, routing, batching, retries (see _quantum).
        self._quantum = QuantumDispatcher(self)
        # The dispatcher's set of RUNNING quantum tasks, read on every task's end.
        self._qactive = self._quantum._qactive
        # Client keys of tasks submitted with with_key() when there is no journal.
        self._keys: dict[str, Task[Any]] = {}
        # Recovered tasks waiting for a backend that can run them to be registered, with
        # (seconds waited before, since when on this clock), and the backend job each
        # recovered quantum task was in: task id -> (job key, backend, job ID or None).
        self._parked: list[Task[Any]] = []
        self._parked_wait: dict[int, tuple[float, float]] = {}
        self._job_of: dict[int, tuple[str, str, str | None]] = {}
        self._journal: Journal | None = None
        if config.journal is not None:
            from .journal import Journal

            self._journal = Journal(
                config.journal, config.durability, retention=config.journal_retention
            )
            reserve_ids(self._journal.max_id)

    # -- configuration -----------------------------------------------------------------------

    @property
    def config(self) -> SchedulerConfig:
        """The settings in force."""
        return self._config

    @property
    def clock(self) -> Clock:
        """The scheduler's clock (timestamps in results and metrics are on it)."""
        return self._clock

    @property
    def workers(self) -> int:
        """Number of classical slots."""
        return self._config.workers

    @property
    def closed(self) -> bool:
        """Whether the scheduler has been closed (or is closing)."""
        return self._state in (_State.CLOSING, _State.CLOSED)

    def configure(self, /, **changes: object) -> QuantumScheduler:
        """Change settings (see :class:`SchedulerConfig`); returns the scheduler.

        Raises:
            InvalidConfigError: If a setting is unknown or out of range.
            SchedulerClosedError: If the scheduler is closed.
        """
        if self.closed:
            raise SchedulerClosedError("the scheduler is closed; its settings can no longer change")
        new = self._config.replace(**changes)
        core = self._core
        if (new.fair_share is None) != (core.fair is None):
            raise InvalidConfigError(
                "fair_share",
                "cannot be turned on or off on a running scheduler: build the scheduler with "
                "SchedulerConfig(fair_share=FairShare(...)) to share it between users",
            )
        if core.fair is not None and new.fair_share is not None:
            core.fair.policy = new.fair_share  # new weights and caps apply from now on
        self._config = new
        self._timings.set_threshold(new.inline_threshold)
        core.config = new
        core.classical.capacity = new.workers
        for pool in core.pools.values():
            pool.queue.aging = new.aging_threshold
        if self._threads is not None:
            self._threads.resize(new.workers)
        if self._loop is not None and self._state is _State.RUNNING:
            self._dispatch(core.classical)
        return self

    def with_max_concurrent_quantum(self, n: int) -> QuantumScheduler:
        """Limit quantum jobs in flight across all backends to ``n``."""
        return self.configure(max_concurrent_quantum=n)

    def with_max_queue_depth(self, n: int) -> QuantumScheduler:
        """Limit how many tasks may wait at once; past it, submit raises QueueFullError."""
        return self.configure(max_queue_depth=n)

    def with_task_timeout(self, timeout: float | timedelta) -> QuantumScheduler:
        """Give every task a deadline, counted from submission (a task's own timeout wins)."""
        return self.configure(task_timeout=timeout)

    def with_preemption(self, strategy: PreemptionStrategy) -> QuantumScheduler:
        """Choose the preemption strategy."""
        return self.configure(preemption=strategy)

    def with_aging(self, threshold: float | timedelta | None) -> QuantumScheduler:
        """Set the aging threshold in seconds (None turns aging off)."""
        return self.configure(aging_threshold=threshold)

    def with_result_signing(
        self, key: ResultSigner | object, *, strict: bool = False
    ) -> QuantumScheduler:
        """Sign every task that completes from now on with an Ed25519 key.

        Each completed task's result carries ``signature`` and ``signed_record`` (every signed
        field: see ``SECURITY.md``); check it with
        :func:`~logosq_os_scheduler.security.verify_result` and the public key
        (``scheduler.signer.public_key_pem()``). A task whose result cannot be signed (a
        cyclic value; in strict mode, a value that is not plain data) fails with
        ``UnsignableValueError`` instead of completing unsigned.

        Args:
            key: A :class:`~logosq_os_scheduler.security.ResultSigner`, an
                ``Ed25519PrivateKey``, or the path of a key file (never a key in code; see
                ``ResultSigner.from_env`` for environment variables).
            strict: Refuse results that are not plain data (ignored for a ResultSigner).

        Raises:
            SigningKeyError: If the key cannot be loaded.
            SchedulerClosedError: If the scheduler is closed.
        """
        from .security import ResultSigner

        if self.closed:
            raise SchedulerClosedError("the scheduler is closed; signing can no longer change")
        signer = key if isinstance(key, ResultSigner) else ResultSigner(key, strict=strict)  # type: ignore[arg-type]
        self._signer = signer
        return self

    @property
    def signer(self) -> ResultSigner | None:
        """The result signer, or None when results are not signed."""
        return self._signer

    def _seal(self, task: Task[Any], now: float) -> BaseException | None:
        """Sign a task about to complete at ``now``; return the error that fails it instead.

        Runs before the move to COMPLETED, so that nobody (another thread waiting on a
        handle included) sees the task completed but unsigned.
        """
        signer = self._signer
        assert signer is not None
        from .security import UnsignableValueError

        props = None
        name = task.backend_used
        if name is not None:
            entry = self._quantum._backends.get(name)
            if entry is not None:
                try:
                    props = entry.backend.properties()
                except Exception as exc:  # a backend's own bug: the task cannot be signed
                    error = UnsignableValueError(
                        "backend_properties", f"{name!r}.properties() raised {exc!r}"
                    )
                    error.__cause__ = exc
                    return error
        try:
            record = signer.sign_task(
                task, backend_properties=props, status=_COMPLETED, finished_at=now
            )
        except SchedulerError as exc:
            return exc
        task.signature = record.signature
        task.signed_record = record
        return None

    def enable_tracing(self, *, max_events: int | None = 1_000_000) -> TraceRecorder:
        """Record every status change of every task from now on (before submitting work).

        Returns:
            The recorder; :meth:`export_trace` writes what it holds.
        """
        if self._trace is None:
            self._trace = TraceRecorder.attach(self, max_events=max_events)
        return self._trace

    def export_trace(self, path: str | os.PathLike[str]) -> str:
        """Write the recorded trace as Chrome trace-event / Perfetto JSON (ui.perfetto.dev).

        Raises:
            InvalidConfigError: If tracing was not enabled.
        """
        if self._trace is None:
            raise InvalidConfigError(
                "trace", "tracing is off: call enable_tracing() before submitting work"
            )
        return str(self._trace.export_chrome_trace(path))

    # -- lifecycle ---------------------------------------------------------------------------

    if not TYPE_CHECKING:  # hidden from type checkers, which then still flag ``close()``
        # The seed's ``scheduler.close()``: a descriptor, not a __getattr__ hook, which would
        # slow every attribute read of the scheduler.
        close = SeedSpelling(
            "it is asynchronous, close it with 'await scheduler.aclose()' or use "
            "'async with QuantumScheduler(...) as scheduler:' (from synchronous code, "
            "BlockingScheduler has close())"
        )

    async def __aenter__(self) -> QuantumScheduler:
        self._ensure_started()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            # The body failed: like a TaskGroup, stop everything rather than wait on it.
            await self.aclose(cancel_pending=True, timeout=0)

    def _ensure_started(self) -> None:
        state = self._state
        if state is _State.RUNNING:
            return
        if state is not _State.NEW:
            raise SchedulerClosedError("the scheduler is closed and accepts no new tasks")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        clock = self._clock
        if isinstance(clock, LoopClock):
            clock.bind(loop)
        self._timers = Timers(clock, loop)
        self._threads = ThreadWorkers(self._config.workers, loop, self._on_thread_batch)
        self._state = _State.RUNNING
        log.info("scheduler started with %d workers", self._config.workers)
        journal = self._journal
        if journal is not None:
            journal.bind(loop, self._now)
            self._core.add_listener(journal.listener)
            # Jobs on backends with job IDs are journaled, and a restarted scheduler sends
            # a task with the same idempotency key as before.
            self._quantum.job_listener = journal
            self._quantum.idempotency_prefix = journal.uid
            self._recover(journal)

    # -- durability --------------------------------------------------------------------------

    def _recover(self, journal: Journal) -> None:
        """Take back what the journal says was unfinished when its last scheduler stopped.

        Each task is decided by ``core._recovery.decide_recovery``: queued ones go back to
        their queues with their priority, order and age; running ones run again, fail with
        InterruptedByRestartError, or (quantum) wait for their backend to be registered.
        """
        # A million recovered tasks are a million new objects at once: the cyclic collector
        # would walk them all again and again while they are made (none of them is garbage).
        collecting = gc.isenabled()
        gc.disable()
        try:
            rows = journal.unfinished()
            if rows:
                self._recover_rows(journal, rows)
        finally:
            if collecting:
                gc.enable()

    def _recover_rows(self, journal: Journal, rows: list[JournalRow]) -> None:
        now = self._now()
        wall = journal.wall(now)
        states = journal.saved_states()
        jobs = journal.jobs()
        job_tasks: dict[str, list[int]] = {}
        requeued = rerun = failed = 0
        for row in rows:
            try:
                task = decode_spec(row.spec, row.task_id, row.name, row.task_type, row.priority)
            except Exception as exc:
                self._end_recovered(
                    journal,
                    row,
                    now,
                    InternalError(
                        f"task {row.task_id} ({row.name!r}) could not be read back from the "
                        f"journal after a restart ({type(exc).__name__}: {exc}): is the "
                        "module of its function still importable under the same name?"
                    ),
                )
                failed += 1
                continue
            if row.key is not None:
                task.key = row.key
            task.attempts = row.attempts
            if row.status is _RUNNING:
                action = decide_recovery(
                    RecoveryFacts(
                        running=True,
                        quantum=row.task_type is _QUANTUM,
                        restartable=task.restartable,
                        algorithm=task.algorithm is not None,
                        saved_state=row.task_id in states,
                    )
                )
            else:
                action = _REQUEUE  # decide_recovery's answer for every task that had not started
            if action is RecoveryAction.FAIL:
                self._end_recovered(
                    journal,
                    row,
                    now,
                    InterruptedByRestartError(
                        row.task_id,
                        f"task {row.task_id} ({row.name!r}) was running when its scheduler "
                        "stopped and is not marked safe to run again: mark it "
                        "with_restartable() to rerun it after a restart (on logosq serve: "
                        "restartable = true for its function in [functions])",
                    ),
                )
                failed += 1
                continue
            journal.adopt(task)
            if row.task_type is _QUANTUM and row.status is _RUNNING:
                job = jobs.get(row.task_id)
                if job is not None:  # its job's fate is decided once its backend is back
                    self._job_of[row.task_id] = job
                    job_tasks.setdefault(job[0], []).append(row.task_id)
            if action is RecoveryAction.RESUME:
                task.saved_state = states[row.task_id]
            if action is RecoveryAction.RERUN or action is RecoveryAction.RESUME:
                task.recovery = action.value
                rerun += 1
            else:
                requeued += 1  # it runs once, as if there had been no restart: no mark
            self._readmit(task, max(0.0, wall - row.submitted))
        for job_key, ids in job_tasks.items():
            journal.follow_job(job_key, ids)  # its row goes once its tasks have left it
        # Jobs whose tasks had all ended (the crash came before their rows were deleted).
        journal.forget_jobs({key for key, _b, _i in jobs.values()} - job_tasks.keys())
        self._dispatch_all()
        log.info(
            "journal %s recovered: %d requeued, %d to run again, %d failed",
            journal.path,
            requeued,
            rerun,
            failed,
        )

    def _end_recovered(
        self, journal: Journal, row: JournalRow, now: float, error: BaseException
    ) -> None:
        task = restored_task(row.task_id, row.name, row.task_type, row.priority)
        if row.key is not None:
            task.key = row.key
        if row.user is not None:
            task.user = row.user
        task.attempts = row.attempts
        journal.adopt(task)
        task.error = error
        self._end_outside_core(task, _FAILED, now)

    def _end_outside_core(self, task: Task[Any], status: TaskStatus, now: float) -> None:
        """End a recovered task the core never admitted (it could not be read back, may
        not run again, or was cancelled while it waited for its backend): the listeners
        hear PENDING -> ``status`` (the journal, which records the end, among them) and
        whoever waits for it is woken. The core's counts leave it out: it was counted by
        the scheduler that admitted it before the restart."""
        SchedulerCore.end_unadmitted(task, status, now)
        self._parked_wait.pop(task.task_id, None)
        self._job_of.pop(task.task_id, None)
        listener = self._core.listener
        if listener is not None:
            listener(task, _PENDING, status, now)
        self._settle(task)

    def _readmit(self, task: Task[Any], waited: float) -> None:
        """Admit a recovered task: like a submit, with its earlier wait counted and no new
        journal row. A quantum task no registered backend can run waits for one (and with
        none registered yet, as at a start, it waits for the program to register its own
        rather than go to the default simulator a plain submit would start)."""
        quantum = task.task_type is _QUANTUM
        if waits_for_backend(
            quantum=quantum,
            backends_registered=bool(self._quantum._backends),
            in_job=task.task_id in self._job_of,
        ):
            self._park(task, waited)
            return
        try:
            pool = self._pool_for(task)
        except NoRouteError:
            if not waits_for_backend(
                quantum=quantum, backends_registered=True, in_job=False, routable=False
            ):
                raise
            self._park(task, waited)
            return
        started = self._core.admit(task, pool, self._now(), waited=waited)
        self._admitted(task, pool, started)

    def _unpark(self) -> None:
        """A backend was registered: admit the recovered tasks that can run now.

        A task that was in a backend job when its scheduler died waits for that backend by
        name; then ``decide_recovery`` chooses, knowing what the backend can do: collect the
        job by its ID (REATTACH), send it again with the same idempotency keys (RESEND), or
        run it again (RERUN).
        """
        parked, self._parked = self._parked, []
        now = self._now()
        backends = self._quantum._backends
        jobs: dict[str, tuple[str, str, list[Task[Any]], float, RecoveryFacts]] = {}
        for task in parked:
            if task.status is not _PENDING:
                continue  # cancelled while parked
            waited, since = self._parked_wait.pop(task.task_id, (0.0, now))
            waited += now - since
            job = self._job_of.get(task.task_id)
            if job is not None:
                job_key, name, job_id = job
                entry = backends.get(name)
                if waits_for_backend(
                    quantum=True,
                    backends_registered=True,
                    in_job=True,
                    job_backend_back=entry is not None,
                ):
                    self._park(task, waited)  # wait for the backend its job went to
                    continue
                assert entry is not None
                del self._job_of[task.task_id]
                backend = entry.backend
                facts = RecoveryFacts(
                    running=True,
                    quantum=True,
                    job_id=job_id,
                    job_intent=True,
                    can_reattach=backend.supports_reattach,
                    remembers_keys=backend.supports_idempotency,
                )
                action = decide_recovery(facts)
                task.recovery = action.value
                if action is RecoveryAction.REATTACH:
                    assert job_id is not None  # REATTACH needs the ID
                    jobs.setdefault(job_key, (name, job_id, [], waited, facts))[2].append(task)
                    continue
            self._readmit(task, waited)
        for job_key, (name, job_id, tasks, waited, facts) in jobs.items():
            if not self._quantum.reattach_job(name, job_key, job_id, tasks, waited):
                # No free slot to collect it in: what the decision says without one.
                action = decide_recovery(dataclasses.replace(facts, slot_free=False))
                for task in tasks:
                    task.recovery = action.value
                    self._readmit(task, waited)
        self._dispatch_all()

    def _park(self, task: Task[Any], waited: float) -> None:
        """Keep a recovered task aside until a backend that can run it is registered."""
        self._parked.append(task)
        self._parked_wait[task.task_id] = (waited, self._now())

    def _dispatch_all(self) -> None:
        """Start what the free slots of every pool can take (after tasks were requeued)."""
        for pool in list(self._core.pools.values()):
            if pool.queue:
                if pool.direct:
                    self._dispatch(pool)
                else:
                    self._quantum._dispatch_quantum_soon()

    def _save_state(self, task: Task[Any], state: object) -> None:
        """TaskContext.save_state: keep ``state`` on the task, and journal it."""
        journal = self._journal
        if journal is not None and journal.live(task.task_id) is task:
            journal.save_state(task, state)
        task.saved_state = state

    def task(self, ref: int | str) -> TaskHandle[Any]:
        """The handle of a task by its id or its client key (``with_key``).

        With a journal this finds every task it holds, from before a restart too: awaiting
        the handle gives the result (at once for a finished task). Without one, it finds the
        tasks submitted with a key to this scheduler.

        Raises:
            UnknownTaskError: If no task has that id or key.
            InvalidTaskError: If ``ref`` is neither an int nor a non-empty string.
        """
        if isinstance(ref, bool) or not isinstance(ref, (int, str)) or ref == "":
            raise InvalidTaskError(
                "ref", f"a task id (an int) or a client key (a string), got {ref!r}"
            )
        found = self._find(ref)
        if found is None:
            journal = self._journal
            where = (
                f"in journal {journal.path}"
                if journal is not None
                else "in this scheduler (without a journal only tasks submitted with "
                "with_key() are found again: keep the handle that submit returned)"
            )
            raise UnknownTaskError(ref, where)
        return TaskHandle(found, self)

    def _find(self, ref: int | str) -> Task[Any] | None:
        journal = self._journal
        if journal is None:
            return self._keys.get(ref) if isinstance(ref, str) else None
        task = journal.live(ref)
        if task is not None:
            return task
        row = journal.row(ref)
        if row is None:
            return None
        task = journal.live(ref)  # it may have ended while the row was read
        if task is not None:
            return task
        return journal.ended_task(row)

    async def persisted(self) -> None:
        """Wait until every task submitted so far is written to the journal.

        ``await submit(...)`` already waits for its own task; this is the wait for a run of
        ``submit_nowait`` calls. Returns at once without a journal.

        Raises:
            JournalError: If the journal could not be written (a full disk): the tasks
                submitted since its last successful write are not durable.
        """
        journal = self._journal
        if journal is not None:
            await journal.persisted()

    @property
    def journal_path(self) -> str | None:
        """The journal's file, or None when the scheduler keeps everything in memory."""
        journal = self._journal
        return None if journal is None else journal.path

    async def join(self) -> None:
        """Wait until every submitted task has ended (the scheduler stays open)."""
        if self._core.unfinished == 0 or self._loop is None:
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._idle_waiters.append(fut)
        await fut

    async def aclose(
        self,
        *,
        cancel_pending: bool = False,
        timeout: float | None = None,
        leave_in_journal: bool = False,
    ) -> None:
        """Stop accepting tasks and wait for those submitted to end.

        Args:
            cancel_pending: Cancel tasks still waiting in the queue instead of running them.
            timeout: Seconds to wait for the rest; past it every unfinished task is cancelled,
                so closing never hangs on a task that does not end.
            leave_in_journal: With a journal, what would be cancelled (the queued tasks at
                once, and the running ones still running after ``timeout``) is left in the
                journal as it is instead: the next scheduler on it recovers those tasks as
                after a crash (docs/journal.md), and here their handles end CANCELLED. This
                is how a service stops on SIGTERM without losing its queue.
        """
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            if self._journal is not None:
                self._journal.close()
            return
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSING
        leave = leave_in_journal and self._journal is not None
        if leave:
            self._leave_in_journal(queued_only=True)
        elif cancel_pending:
            self.cancel_all(queued_only=True)
        try:
            if timeout is None:
                await self.join()
            elif timeout <= 0:
                if self._core.unfinished:
                    raise TimeoutError
            else:
                assert self._timers is not None
                await self._timers.wait_for(self.join(), timeout)
        except TimeoutError:
            if leave:
                self._leave_in_journal(queued_only=False)
            else:
                self.cancel_all(queued_only=False)
        finally:
            runners = [t.runner for t in self._active if isinstance(t.runner, asyncio.Task)]
            if runners:
                await asyncio.gather(*runners, return_exceptions=True)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await self._quantum._close_quantum()
            for executor, _pool in self._executors.values():
                await executor.aclose()
            if self._threads is not None:
                self._threads.close()
            for task in self._parked:
                # Still waiting for a backend: it stays in the journal for the next
                # scheduler; whoever awaits it here is told so.
                fut = task.future
                if fut is not None and not fut.done():
                    fut.set_exception(
                        SchedulerClosedError(
                            f"task {task.task_id} ({task.name!r}) was waiting for a backend "
                            "that can run it when the scheduler closed; it stays in the "
                            "journal and runs after the next restart that registers one"
                        )
                    )
            if self._journal is not None:
                self._journal.close()
            self._state = _State.CLOSED

    def _leave_in_journal(self, *, queued_only: bool) -> None:
        """End unfinished tasks here without the journal recording it (see ``aclose``)."""
        journal = self._journal
        assert journal is not None
        # The journal learns of ends through its listener and of job ends through
        # job_listener: with both detached the file keeps these tasks as they are now.
        self._core.remove_listener(journal.listener)
        self._quantum.job_listener = None
        try:
            self.cancel_all(queued_only=queued_only)
        finally:
            self._core.add_listener(journal.listener)
            self._quantum.job_listener = journal

    def cancel_all(self, *, queued_only: bool = False) -> int:
        """Cancel every task not yet finished: the queued ones, and unless ``queued_only`` the
        running ones too (as :meth:`TaskHandle.cancel` does each). The scheduler stays open.

        Call it on the scheduler's event-loop thread; ``BlockingScheduler.cancel_all`` does
        the same from any thread.

        Returns:
            How many tasks were cancelled.
        """
        now = self._now()
        victims = [t for pool in self._core.pools.values() for t in pool.queue]
        if not queued_only:
            victims.extend(t for t in self._active if t.status not in TERMINAL)
            victims.extend(t for t in self._qactive if t.status not in TERMINAL)
        for task in victims:
            self._end_early(task, _S.CANCELLED, now)
        return len(victims)

    # -- submission --------------------------------------------------------------------------

    async def submit(self, task: Task[T] | TaskBuilder[T]) -> TaskHandle[T]:
        """Submit a task (or a builder, which is built) and return its handle at once.

        With a journal, it returns once the task is written there (it then survives a kill of
        the scheduler; see :class:`~logosq_os_scheduler.Durability`). A task with a client key
        the scheduler already knows is not submitted again: the first task's handle returns,
        if it is the same task (else KeyReusedError).

        Raises:
            InvalidTaskError: If the task is malformed or was already submitted, or (with a
                journal) could not be run again after a restart (a lambda, say).
            KeyReusedError: If its client key names a different task (an InvalidTaskError).
            QueueFullError: If ``max_queue_depth`` tasks already wait; nothing else changes.
            NoRouteError: If a quantum task's circuit fits no backend.
            SchedulerClosedError: If the scheduler is closing or closed.
            JournalError: If the journal cannot be written (a full disk).
        """
        handle = self.submit_nowait(task)
        journal = self._journal
        if journal is not None and journal.durability is not _DURABILITY_OFF:
            await journal.persisted()
        return handle

    async def submit_many(
        self, tasks: Iterable[Task[Any] | TaskBuilder[Any]]
    ) -> list[TaskHandle[Any]]:
        """Submit several tasks; stops at the first that is refused, raising its error (a
        KeyReusedError with the refused task's ``index`` in ``tasks``). The tasks before it
        stay submitted: a keyed one is found again with :meth:`task`.

        With a journal, it returns once all of them are written there (one group commit).
        """
        handles = []
        with self._quantum.submitting_together():
            for index, task in enumerate(tasks):
                try:
                    handles.append(self.submit_nowait(task))
                except KeyReusedError as exc:
                    raise KeyReusedError(exc.key, exc.task_id, index=index) from None
        journal = self._journal
        if journal is not None and journal.durability is not _DURABILITY_OFF:
            await journal.persisted()
        return handles

    def submitting_together(self) -> contextlib.AbstractContextManager[None]:
        """Submits made inside it (on the loop's thread, with no await between them) are one
        batch: quantum tasks alike are routed once, not once a task.

        Alike: the same circuit (the same requirements: OpenQASM text is analysed once),
        priority, pinned backend and shots. One decision serves them all where it did not
        weigh loads (the task is pinned, a rule names one backend, or only one backend can run
        the circuit) and no rule reads fidelity estimates or calls a predicate; otherwise
        each task is routed as it comes, against the loads its predecessors left. A backend
        registered or rules set inside it count from then on. :meth:`submit_many` submits
        inside one; the service submits each request's tasks inside one.
        """
        return self._quantum.submitting_together()

    def check_placement(self, task: Task[Any]) -> None:
        """Raise what submitting ``task`` now would raise about where it runs, and submit
        nothing: for a batch that must be admitted whole, checked item by item first.

        A quantum task is analysed and routed as its submit would route it (inside
        :meth:`submitting_together` a decision that serves its like is kept for the submits
        that follow); a classical one's executor and limits are checked.

        Raises:
            NoRouteError: If no backend can take the quantum task now (or a rule refuses it).
            InvalidTaskError: If its executor is unknown or cannot enforce its limits.
        """
        self._pool_for(task)

    def check_room(self, count: int) -> None:
        """Raise QueueFullError if ``count`` more tasks might not all fit under
        ``max_queue_depth`` now (each counted as if it had to wait): for a batch that must be
        admitted whole. Without the limit, nothing is raised."""
        limit = self._config.max_queue_depth
        waiting = self._core.waiting
        if limit is not None and waiting + count > limit:
            raise QueueFullError(waiting, limit, batch=count)

    def submit_nowait(self, task: Task[T] | TaskBuilder[T]) -> TaskHandle[T]:
        """:meth:`submit` as a plain call, for use on the scheduler's event-loop thread."""
        if self._state is not _State.RUNNING:
            self._ensure_started()
        if task.__class__ is TaskBuilder:
            task = task.build()
        elif not isinstance(task, Task):
            if isinstance(task, TaskBuilder):
                task = task.build()
            else:
                raise InvalidTaskError(
                    "task", f"expected a Task or TaskBuilder, got {type(task).__name__}"
                )
        elif task.status is not _PENDING:
            raise InvalidTaskError(
                "task", f"task {task.task_id} ({task.name!r}) was already submitted"
            )
        extras = task.extras
        if self._journal is not None or (extras is not None and extras.key is not None):
            return self._submit_durable(task)
        pool = self._pool_for(task)
        handle = TaskHandle(task, self)
        self._admitted(task, pool, self._core.admit(task, pool, self._now()))
        return handle

    def find_submitted(self, task: Task[T] | TaskBuilder[T]) -> TaskHandle[T] | None:
        """The handle of the task submitted before with ``task``'s client key (what
        :meth:`submit` returns for ``task`` without submitting it), or None if the key is new
        or ``task`` has none.

        Raises:
            KeyReusedError: If the key names a different task (another function, arguments,
                circuit, shots, priority, name, backend or option): nothing is submitted.
            JournalError: If the journal cannot be read.
        """
        if not isinstance(task, Task):
            task = task.build()
        key = task.key
        if key is None:
            return None
        existing = self._find(key)
        if existing is None:
            return None
        if not self._same_submission(existing, task):
            raise KeyReusedError(key, existing.task_id)
        return TaskHandle(existing, self)

    def _same_submission(self, existing: Task[Any], task: Task[Any]) -> bool:
        """Whether ``task`` is ``existing`` submitted again (see ``journal._codec.same_spec``):
        compared with the spec the journal wrote at its submit where it has it, since a task
        that ran may have changed its own objects."""
        if (existing.name, existing.task_type, existing.priority) != (
            task.name,
            task.task_type,
            task.priority,
        ):
            return False
        journal = self._journal
        stored = None if journal is None else journal.spec(existing.task_id)
        try:
            spec = encode_spec(task)
            if stored is None:
                stored = encode_spec(existing)
        except InvalidTaskError:
            # Without a journal a task need not be storable (a lambda): compare its function.
            return existing.fn is task.fn
        return same_spec(stored, spec)

    def _submit_durable(self, task: Task[Any]) -> TaskHandle[Any]:
        """:meth:`submit_nowait` for a task with a client key or on a journal."""
        key = task.key
        if key is not None:
            # An idempotent submit: the first task, if this is the same one again.
            first = self.find_submitted(task)
            if first is not None:
                return first
        pool = self._pool_for(task)
        journal = self._journal
        now = self._now()
        if journal is None or is_transient(task):
            started = self._core.admit(task, pool, now)
            if key is not None:
                self._keys[key] = task
        else:
            if journal.error is not None:
                raise journal.error
            journal.submitted(task, encode_spec(task), now)
            try:
                started = self._core.admit(task, pool, now)
            except BaseException:
                journal.retract(task)
                raise
        self._admitted(task, pool, started)
        return TaskHandle(task, self)

    def _admitted(self, task: Task[Any], pool: Pool, started: bool) -> None:
        """What follows an admission: arm its deadline, run it, or dispatch or preempt."""
        deadline = task.deadline
        if deadline is not None and deadline < self._timer_when:
            self._arm_timer(deadline)
        if started:
            self._run(task)
        elif not pool.direct:
            self._quantum._dispatch_quantum_soon()
        elif preempts_on_arrival(task.priority, self._config.preemption):
            self._preempt_for(task, pool)

    def _pool_for(self, task: Task[Any]) -> Pool:
        kind = task.task_type
        if kind is _CLASSICAL or (kind is _HYBRID and task.fn is not None):
            extras = task.extras
            executor = None if extras is None else extras.executor
            if executor is None or executor in _BUILTIN_EXECUTORS:
                if extras is not None and extras.limits is not None:
                    raise InvalidTaskError(
                        "limits",
                        "memory and CPU-time limits are enforced only in worker processes: "
                        "add .with_executor('process') (threads and the event loop share the "
                        "scheduler's own process)",
                    )
                return self._core.classical
            entry = self._executors.get(executor)
            if entry is None and executor == "process":
                # The built-in process executor: one worker process per classical worker.
                from .executors import ProcessExecutor

                self.register_executor("process", ProcessExecutor(self._config.workers))
                entry = self._executors["process"]
            if entry is None:
                known = sorted(_BUILTIN_EXECUTORS | self._executors.keys() | {"process"})
                raise InvalidTaskError(
                    "executor", f"unknown executor {executor!r}; known: {', '.join(known)}"
                )
            if task.is_async:
                raise InvalidTaskError(
                    "function",
                    f"executor {executor!r} runs plain functions; async functions run on "
                    "the event loop (leave the executor unset)",
                )
            fn = task.fn
            assert fn is not None  # classical and function-hybrid tasks have one (build())
            entry[0].validate(fn, task.args, task.kwargs)
            return entry[1]
        if kind is _HYBRID:
            return self._hybrid_pool_for(task)
        return self._quantum._quantum_pool_for(task)

    # -- execution ---------------------------------------------------------------------------

    def _run(self, task: Task[Any]) -> None:
        """Start the execution of a task that the core has just made RUNNING.

        Synchronous functions run inline on the loop when forced to or when they have been
        measured to take less than ``inline_threshold``; otherwise on a worker thread.
        Invariant: a task is in ``_active`` iff its execution is under way off the loop stack
        (on a thread or as a coroutine); inline runs start and end within this call.
        """
        extras = task.extras
        resume = None if extras is None else extras.resume
        if resume is not None:
            # A preempted task has its slot again: let it continue where it stood.
            task.resume = None
            self._active.add(task)
            resume.wake()
            return
        if task.is_async:
            self._active.add(task)
            self._run_async(task)
            return
        executor = None if extras is None else extras.executor
        if executor is None or executor == "auto":
            fn = task.fn
            entry = self._fast.get(id(getattr(fn, "__code__", fn)))
            if entry is not None and self._timings.runs_inline(entry):
                self._run_inline(task, entry)
                return
        elif executor == "inline":
            self._run_inline(task, None)
            return
        elif executor != "thread":
            self._run_on_executor(task, self._executors[executor][0])
            return
        self._active.add(task)
        threads = self._threads
        assert threads is not None
        threads.submit(task)

    def _run_inline(self, task: Task[Any], entry: Timing | None) -> None:
        fn = task.fn
        assert fn is not None
        perf = time.perf_counter
        token = _current_task.set(task)
        t0 = perf()
        try:
            value = fn(*task.args, **task.kwargs)
        except Exception as exc:
            self._finish_run(task, _FAILED, exc)
            return
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: end the task, re-raise
            self._finish_run(task, _FAILED, exc)
            raise
        finally:
            seconds = perf() - t0
            _current_task.reset(token)
            if entry is None:
                self._timings.record(fn, seconds)
            else:
                self._timings.update(entry, seconds)
        if value.__class__ is _CoroutineType:
            self._active.add(task)
            self._drive(task, value)
            return
        if self._signer is not None:
            self._finish_run(task, _COMPLETED, value)  # results are signed there
            return
        # The common case, finished without the generic steps an inline run does not need
        # (it was never in _active, has no runner, and its pool is the classical one).
        core = self._core
        now = self._now()
        pool = core.classical
        if task.slot_held:
            task.slot_held = False
            core.release(pool, task.started_at, now)
        if task.status is _RUNNING:
            task.value = value
            core.transition(task, _COMPLETED, now)
            self._settle(task)
        if pool.queue:
            self._dispatch(pool)

    def _run_async(self, task: Task[Any]) -> None:
        fn = task.fn
        assert fn is not None
        try:
            coro = fn(*task.args, **task.kwargs)
        except Exception as exc:
            self._finish_run(task, _FAILED, exc)
            return
        self._drive(task, coro)

    def _drive(self, task: Task[Any], awaitable: Any) -> None:
        loop = self._loop
        assert loop is not None
        attempt = task.attempts
        runner = loop.create_task(self._await_task(task, awaitable, attempt))
        task.runner = runner
        runner.add_done_callback(lambda r: self._runner_done(task, r, awaitable, attempt))

    def _runner_done(
        self, task: Task[Any], runner: asyncio.Task[None], awaitable: Any, attempt: int
    ) -> None:
        # Every path through _await_task ends in _finish_run, which drops the task from
        # _active. A runner that is done while its task is still active here was cancelled
        # before its first step: the user's coroutine never started and nothing released
        # the slot. Close the coroutine and end the run here.
        if task.runner is runner and task in self._active:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()
            self._finish_run(task, _S.CANCELLED, None, attempt)

    async def _await_task(self, task: Task[Any], awaitable: Any, attempt: int) -> None:
        _current_task.set(task)
        try:
            value = await awaitable
        except asyncio.CancelledError:
            # Cancelled by us (cancel/timeout: the task has already ended; or a restart: it
            # is PREEMPTED) or by someone else, such as the loop shutting down: end it
            # CANCELLED unless it already ended. Then let the cancellation propagate.
            self._finish_run(task, _S.CANCELLED, None, attempt)
            raise
        except Exception as exc:
            self._finish_run(task, _FAILED, exc, attempt)
        except BaseException as exc:
            self._finish_run(task, _FAILED, exc, attempt)
            raise
        else:
            self._finish_run(task, _COMPLETED, value, attempt)

    def _hybrid_pool_for(self, task: Task[Any]) -> Pool:
        """A hybrid task with an algorithm runs ``run_hybrid(self, algorithm, ...)`` as a
        coroutine on the loop. It takes a slot of its own pool, not a classical one: it only
        waits on the tasks it submits, and holding a worker slot while its own classical tasks
        queue for one could deadlock a small scheduler."""
        from .workflows import run_hybrid

        task.fn = run_hybrid
        task.args = (self, task.algorithm)
        task.kwargs = {
            "priority": task.priority,
            "backend": task.backend,
            "optimizer": task.optimizer,
        }
        task.is_async = True
        return self._core.hybrid_pool()

    async def run_workflow(self, workflow: HybridWorkflow) -> WorkflowResult:
        """Run a hybrid workflow to its end; see :func:`~logosq_os_scheduler.run_workflow`."""
        from .workflows import run_workflow

        return await run_workflow(self, workflow)

    def _run_on_executor(self, task: Task[Any], executor: Executor) -> None:
        fn = task.fn
        assert fn is not None
        self._active.add(task)
        attempt = task.attempts
        try:
            fut = executor.submit(
                fn, task.args, task.kwargs, task_id=task.task_id, limits=task.limits
            )
        except Exception as exc:
            self._finish_run(task, _FAILED, exc, attempt)
            return
        task.runner = _ExecutorRun(executor, task.task_id)
        fut.add_done_callback(lambda f: self._executor_done(task, f, attempt))

    def _executor_done(self, task: Task[Any], fut: asyncio.Future[Any], attempt: int) -> None:
        if fut.cancelled():
            self._finish_run(task, _S.CANCELLED, None, attempt)
            return
        exc = fut.exception()
        if exc is not None:
            self._finish_run(task, _FAILED, exc, attempt)
        else:
            self._finish_run(task, _COMPLETED, fut.result(), attempt)

    # -- quantum backends and routing (carried out by the QuantumDispatcher) ----------------

    @property
    def backends(self) -> dict[str, Backend]:
        """The registered backends by name (a copy)."""
        return self._quantum.backends

    async def register_backend(self, name: str, backend: object) -> Backend:
        """Register a backend under ``name``: a logosq ``Backend`` or any Qiskit BackendV2
        (Aer, ``GenericBackendV2``, the offline IBM device models), which is wrapped.

        Returns:
            The registered Backend (the adapter, for a Qiskit backend), started.

        Raises:
            InvalidTaskError: If the name is taken.
            InvalidConfigError: If the object is not a backend.
        """
        registered = await self._quantum.register_backend(name, backend)
        if self._parked:
            self._unpark()
        return registered

    def register_backend_nowait(self, name: str, backend: object) -> Backend:
        """:meth:`register_backend` as a plain call."""
        registered = self._quantum.register_backend_nowait(name, backend)
        if self._parked:
            self._unpark()
        return registered

    async def unregister_backend(self, name: str) -> None:
        """Take a backend out: its queued tasks move to other backends that can run them
        (those no other backend can run fail with NoRouteError); jobs in flight finish.

        Raises:
            InvalidTaskError: If no backend has that name.
        """
        await self._quantum.unregister_backend(name)

    def set_routing_rules(self, rules: Sequence[RoutingRule]) -> None:
        """Replace the routing rules (tried in order; see :class:`RoutingRule`).

        Raises:
            InvalidTaskError: If an item is not a complete RoutingRule.
        """
        self._quantum.set_routing_rules(rules)

    @property
    def routing_rules(self) -> tuple[RoutingRule, ...]:
        """The routing rules in force."""
        return self._quantum.routing_rules

    def flush_batches(self) -> None:
        """Send the quantum tasks queued so far without waiting out the batch window.

        A partial batch normally waits up to ``batch_window`` for more circuits. A caller that
        has just submitted everything it will submit for now (the evaluations of one
        optimiser iteration, say) knows no more are coming, and calls this to have them sent
        at the loop's next turn, batched as far as backends allow. Tasks submitted later are
        held as usual. Call it on the scheduler's event-loop thread; it does nothing before
        the scheduler has started.
        """
        self._quantum.flush_batches()

    def register_executor(self, name: str, executor: Executor) -> None:
        """Make ``executor`` available to tasks as ``.with_executor(name)``.

        It gets its own pool of ``executor.capacity`` slots; the scheduler closes it on
        :meth:`aclose`.

        Raises:
            InvalidTaskError: If the name is taken or the object is not an Executor.
        """
        if not isinstance(executor, Executor):
            raise InvalidTaskError("executor", f"expected an Executor, got {executor!r}")
        if not isinstance(name, str) or not name or name in _BUILTIN_EXECUTORS:
            raise InvalidTaskError("executor", f"invalid executor name {name!r}")
        if name in self._executors:
            raise InvalidTaskError("executor", f"an executor named {name!r} is registered")
        pool = self._core.add_pool(f"executor:{name}", executor.capacity)
        self._executors[name] = (executor, pool)

    def _on_thread_batch(self, batch: list[Completion]) -> None:
        note = self._timings.record
        finish = self._finish_run
        for task, ok, value, seconds in batch:
            fn = task.fn
            if fn is not None and seconds != NOT_CALLED:
                note(fn, seconds)
            finish(task, _COMPLETED if ok else _FAILED, value)

    def _finish_run(
        self, task: Task[Any], status: TaskStatus, value: Any, attempt: int | None = None
    ) -> None:
        """An execution has returned: release its slot, end the task unless it ended already.

        ``attempt`` identifies the run; a run superseded by a restart is ignored.
        """
        if attempt is not None and attempt != task.attempts:
            return  # a restarted task's old run unwinding: it holds nothing any more
        core = self._core
        now = self._now()
        self._active.discard(task)
        task.runner = None
        pool = core.release_task(task, now)
        if task.status is _RUNNING:
            if status is _COMPLETED:
                task.value = value
                if self._signer is not None:
                    unsigned = self._seal(task, now)
                    if unsigned is not None:
                        task.value = None
                        status, value = _FAILED, unsigned
            if status is not _COMPLETED:
                task.error = value
                if log.isEnabledFor(logging.INFO):
                    log.info(
                        "task %s (%r) %s: %s",
                        task.task_id,
                        task.name,
                        status.value,
                        f"{type(value).__name__}: {value}" if value is not None else "",
                        extra=task_fields(task),
                    )
            core.transition(task, status, now)
            self._settle(task)
        if pool.queue:
            self._dispatch(pool)

    def _dispatch(self, pool: Pool) -> None:
        """Start queued tasks of ``pool`` while it has free slots (never re-entered per pool)."""
        name = pool.name
        dispatching = self._dispatching
        if name in dispatching:
            return  # the loop further up the stack will see the freed slot
        dispatching.add(name)
        try:
            core = self._core
            now_fn = self._now
            started = time.perf_counter()
            n = 0
            while True:
                task = core.next_ready(pool, now_fn())
                if task is None:
                    break
                self._run(task)
                n += 1
                if not n & 63 and time.perf_counter() - started > _DISPATCH_SLICE:
                    # A long queue of inline tasks would otherwise hold the loop: let timers,
                    # I/O and other coroutines in, and carry on in the next iteration.
                    loop = self._loop
                    assert loop is not None
                    loop.call_soon(self._dispatch, pool)
                    break
        finally:
            dispatching.discard(name)

    # -- ending tasks early ------------------------------------------------------------------

    def _end_early(self, task: Task[Any], status: TaskStatus, now: float) -> bool:
        """Cancel or time out a task that has not finished; stop its execution if possible."""
        was_running = task.status is _RUNNING or task.status is _PREEMPTED
        if not self._core.finish(task, status, now):
            return False
        self._settle(task)
        if was_running:
            self._stop_runner(task)
        return True

    def _stop_runner(self, task: Task[Any]) -> None:
        """Stop what runs a task that has just ended early, where that can be stopped.

        A synchronous function on a worker thread cannot be stopped: its thread is abandoned
        and replaced, and the slot is free at once (see :meth:`_abandon_thread`).
        """
        resume = task.resume
        if resume is not None:
            # Parked (at a checkpoint, or paused): let what is parked unwind.
            task.resume = None
            resume.stop()
        runner = task.runner
        if runner is not None:
            # A coroutine, a run on an executor, or a quantum task waiting out a retry
            # back-off. Quantum tasks in a job have none and are not stopped: the job carries
            # other tasks; their outcome is dropped.
            runner.cancel()
            return
        threads = self._threads
        if threads is not None and task.slot_held:
            # A task parked in a checkpoint holds no slot (and its thread was replaced when
            # it parked): it is woken above and unwinds; only a thread holding a slot is given up.
            thread = threads.thread_of(task)
            if thread is not None:
                self._abandon_thread(task, threads, thread)

    def _abandon_thread(
        self, task: Task[Any], threads: ThreadWorkers, thread: threading.Thread
    ) -> None:
        """``task`` ended early while its function runs on ``thread``, which cannot be stopped.

        Below ``max_abandoned_threads`` abandoned threads still running, the thread is
        abandoned: the pool starts a replacement, the task's slot is released now so the next
        queued task starts at once, and the thread exits without reporting once the function
        returns (so nothing is released twice). At the cap the thread is not replaced: it keeps
        the slot until the function returns, as it would without abandonment, and the task
        records a :class:`SchedulerError` saying so (also logged at INFO and counted in
        ``SchedulerMetrics.unreplaced_threads``). Either way the task has already ended.
        """
        limit = self._config.max_abandoned_threads
        running = threads.abandoned_running
        what = "timed out" if task.status is _S.TIMED_OUT else "was cancelled"
        if running >= limit:
            self._unreplaced_threads += 1
            why = (
                "abandoning threads is off (max_abandoned_threads=0)"
                if limit == 0
                else f"{running} abandoned threads are still running "
                f"(max_abandoned_threads={limit})"
            )
            error = SchedulerError(
                f"task {task.task_id} ({task.name!r}) {what} while its function was still "
                f"running on worker thread {thread.name!r}, and that thread was not replaced: "
                f"{why}. The thread keeps its worker slot until the function returns, so the "
                "pool runs one worker short meanwhile. Make long functions return once "
                "current_context().cancelled is true, or raise max_abandoned_threads."
            )
            task.error = error
            if log.isEnabledFor(logging.INFO):
                log.info("%s", error, extra=task_fields(task))
            return
        if threads.abandon(task) is None:
            return  # the function has just returned: its completion releases the slot
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "task %s (%r) %s while its function was still running: abandoned worker "
                "thread %r (it exits when the function returns) and started a replacement; "
                "%d abandoned threads running",
                task.task_id,
                task.name,
                what,
                thread.name,
                threads.abandoned_running,
                extra=task_fields(task),
            )
        self._active.discard(task)
        task.runner = None
        pool = self._core.release_task(task, self._now())
        if pool.queue:
            self._dispatch(pool)

    # -- preemption --------------------------------------------------------------------------

    def _wants_slot_back(self, task: Task[Any]) -> bool:
        """A cheap, thread-safe estimate of whether a checkpoint would yield now."""
        return slot_wanted(task.resources, self._config.preemption)

    def _yield_now(self, task: Task[Any]) -> bool:
        pool = task.resources
        if not isinstance(pool, Pool) or not pool.direct:
            return False
        cfg = self._config
        return should_yield(task, pool, cfg.preemption, cfg.max_preemptions, self._now())

    async def _checkpoint(self, task: Task[Any]) -> None:
        """Run on the task's own coroutine: yield the slot if more urgent work waits."""
        if not self._yield_now(task):
            return
        loop = self._loop
        assert loop is not None
        pool = self._core.locate(task)
        resumed: asyncio.Future[None] = loop.create_future()
        task.resume = _CoroutineParked(resumed)
        self._core.preempt(task, pool, self._now())
        self._dispatch(pool)
        await resumed

    def _park_thread(self, task: Task[Any], resumed: threading.Event) -> None:
        """On the loop: a worker thread asks to yield at a checkpoint; ``resumed`` wakes it."""
        if task.status in TERMINAL or not self._yield_now(task):
            resumed.set()
            return
        threads = self._threads
        assert threads is not None
        pool = self._core.locate(task)
        task.resume = _ThreadParked(resumed, threads)
        threads.park()
        self._core.preempt(task, pool, self._now())
        self._dispatch(pool)

    def _preempt_for(self, urgent: Task[Any], pool: Pool) -> None:
        """PREEMPTIVE: an urgent task found no free slot; take one from a less urgent task.

        A restartable victim (a coroutine, or a function in a process worker, which is
        killed) is stopped at once and will start again from scratch; a function in a process
        worker that is not restartable is paused with SIGSTOP and continues where it stood;
        any other victim (a thread cannot be interrupted) is preempted at its next checkpoint.
        """
        candidates = [t for t in self._active if t.resources is pool and t.status is _RUNNING]
        victim = choose_victim(candidates, urgent.priority, self._config.max_preemptions)
        if victim is None:
            return
        runner = victim.runner
        move = preemption_move(
            restartable=victim.restartable,
            in_process=isinstance(runner, _ExecutorRun),
            coroutine=isinstance(runner, asyncio.Task),
        )
        if move is _AT_CHECKPOINT or runner is None:
            return  # it yields at its next checkpoint
        if isinstance(runner, _ExecutorRun):
            if move is _RESTART:
                # Its future is cancelled; _executor_done then finds it PREEMPTED holding no
                # slot (nothing to do) or, once restarted, of an older attempt (ignored).
                stopped = runner.cancel()
                victim.resume = None
                victim.runner = None
            else:
                # A process worker paused with SIGSTOP keeps its state; it resumes when popped.
                stopped = runner.suspend()
                victim.resume = runner
            if not stopped:
                victim.resume = None
                victim.runner = runner
                return
        else:
            # A coroutine: it starts again from scratch when its turn comes.
            victim.resume = None
            victim.runner = None
            runner.cancel()
        self._core.preempt(victim, pool, self._now())
        self._active.discard(victim)
        self._dispatch(pool)

    def _call_soon_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            raise SchedulerClosedError("the scheduler is not running")
        loop.call_soon_threadsafe(fn, *args)

    def _cancel(self, task: Task[Any]) -> bool:
        if task.status is _PENDING and task in self._parked:
            # A recovered task waiting for its backend: never admitted to the core.
            self._parked.remove(task)
            self._end_outside_core(task, _S.CANCELLED, self._now())
            return True
        return self._end_early(task, _S.CANCELLED, self._now())

    def _cancel_from_any_thread(self, task: Task[Any]) -> bool:
        if task.status in TERMINAL:
            return False
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            return self._cancel(task)
        done: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def cancel_on_loop() -> None:
            done.set_result(self._cancel(task))

        loop.call_soon_threadsafe(cancel_on_loop)
        return done.result()

    def _arm_timer(self, when: float) -> None:
        timers = self._timers
        assert timers is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = timers.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = math.inf
        now = self._now()
        for task in self._core.expire(now):
            # INFO, as a failure is: the caller learns of it from the handle (TaskTimeoutError).
            if log.isEnabledFor(logging.INFO):
                log.info("task %s (%r) timed out", task.task_id, task.name, extra=task_fields(task))
            self._settle(task)
            self._stop_runner(task)
        nxt = self._core.next_deadline()
        if nxt is not None:
            self._arm_timer(nxt)

    # -- waking waiters ----------------------------------------------------------------------

    def _settle(self, task: Task[Any]) -> None:
        """A task has just ended: wake whoever waits for it, and for the scheduler to idle."""
        self._qactive.discard(task)
        fut = task.future
        if fut is not None and not fut.done():
            fut.set_result(None)
        fair = self._core.fair
        if fair is not None and fair.woken:
            # A user held back by a fair-share cap may start work again, in any pool.
            fair.woken = False
            loop = self._loop
            if loop is not None:
                loop.call_soon(self._dispatch_all)
        if self._idle_waiters and self._core.unfinished == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _call_when_done(self, task: Task[Any], fn: Callable[[], None]) -> None:
        """Arrange ``fn()`` once ``task`` ends; from any thread. Runs at once if it has."""
        if task.status in TERMINAL:
            fn()
            return
        loop = self._loop
        if loop is None:
            raise InternalError(f"task {task.task_id} is unfinished on a scheduler never started")
        if threading.get_ident() == self._loop_thread:
            self._attach(task, fn)
            return
        loop.call_soon_threadsafe(self._attach, task, fn)

    def _attach(self, task: Task[Any], fn: Callable[[], None]) -> None:
        if task.status in TERMINAL:
            fn()
            return
        fut = task.future
        if fut is None:
            assert self._loop is not None
            fut = task.future = self._loop.create_future()
        fut.add_done_callback(lambda _f: fn())

    # -- observation -------------------------------------------------------------------------

    @property
    def started_at(self) -> float:
        """When the scheduler was made, on :attr:`clock` (the zero of metrics' uptime)."""
        return self._core.started_at

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(task, old, new, now)`` after every status change of every task,
        after the listeners already attached: the scheduler's event stream, which the trace
        recorder, the transition logger, the journal and the service listen to.

        A listener runs on the event loop inside the change: it must be quick and must not
        raise or submit. Call this on the loop's thread (or before the scheduler starts).
        """
        self._core.add_listener(listener)

    def remove_listener(self, listener: TransitionListener) -> bool:
        """Stop calling ``listener``; the other listeners stay.

        Returns:
            True if it was attached (and now is not), False if it was not.
        """
        return self._core.remove_listener(listener)

    def metrics_from_any_thread(self, timeout: float | None = 5.0) -> SchedulerMetrics:
        """:meth:`metrics`, called from any thread (an exporter's HTTP thread, say).

        The scheduler's state belongs to its event-loop thread: from another thread the
        snapshot is taken on the loop and handed back; on the loop thread, or when the loop
        is not running, it is taken directly.

        Raises:
            TimeoutError: If the loop does not take it within ``timeout`` seconds.
        """
        loop = self._loop
        if loop is not None and loop.is_running() and threading.get_ident() != self._loop_thread:
            return asyncio.run_coroutine_threadsafe(_snapshot(self), loop).result(timeout)
        return self.metrics()

    def metrics(self) -> SchedulerMetrics:
        """A snapshot of counts, queue depth, throughput, latency percentiles and utilisation."""
        core = self._core
        now = self._now()
        c = core.counts
        classical = core.classical
        # Quantum slots are jobs; their use is reported per backend.
        stats = statistics(
            core,
            now,
            (
                t.started_at
                for t in list(self._active)
                if t.started_at is not None and core.locate(t) is classical
            ),
        )
        uptime = stats.uptime
        threads = self._threads
        return SchedulerMetrics(
            submitted=core.submitted,
            queued=c[_S.QUEUED],
            running=c[_RUNNING],
            preempted=c[_S.PREEMPTED],
            completed=c[_COMPLETED],
            failed=c[_FAILED],
            cancelled=c[_S.CANCELLED],
            timed_out=c[_S.TIMED_OUT],
            by_priority=types.MappingProxyType(dict(core.submitted_by_priority)),
            by_type=types.MappingProxyType(dict(core.submitted_by_type)),
            queue_depth=core.waiting,
            queue_depth_by_priority=types.MappingProxyType(dict(stats.depth_by_priority)),
            uptime=uptime,
            throughput=stats.throughput,
            recent_throughput=stats.recent_throughput,
            queue_wait_p50=stats.queue_wait_p50,
            queue_wait_p99=stats.queue_wait_p99,
            latency_p50=stats.latency_p50,
            latency_p99=stats.latency_p99,
            latency_p999=stats.latency_p999,
            worker_utilisation=stats.classical_utilisation,
            retries=core.retries,
            reroutes=core.reroutes,
            preemptions=core.preemptions,
            preempted_seconds=core.preempted_seconds,
            breaker_trips=core.breaker_trips,
            backends=types.MappingProxyType(self._quantum._backend_metrics(now, uptime)),
            finished_by_class=types.MappingProxyType(dict(core.finished_by_class)),
            latency_sum=core.latency_sum,
            abandoned_threads=0 if threads is None else threads.abandoned_total,
            abandoned_threads_running=0 if threads is None else threads.abandoned_running,
            unreplaced_threads=self._unreplaced_threads,
            users=types.MappingProxyType(_user_metrics(core)),
        )

    def __repr__(self) -> str:
        core = self._core
        return (
            f"<QuantumScheduler {self._state.value} workers={self._config.workers} "
            f"waiting={core.waiting} unfinished={core.unfinished}>"
        )


def _user_metrics(core: SchedulerCore) -> dict[str, UserMetrics]:
    """Each user's work and share under fair share (empty without it)."""
    fair = core.fair
    if fair is None:
        return {}
    policy = fair.policy
    names = set(fair.running) | set(fair.waiting) | set(fair.starts)
    return {
        user: UserMetrics(
            user=user,
            running=fair.running.get(user, 0),
            waiting=fair.waiting.get(user, 0),
            started=fair.starts.get(user, 0),
            weight=policy.weight(user),
            share_pass=fair.passes.get(user, 0.0),
        )
        for user in sorted(names)
    }


async def _snapshot(scheduler: QuantumScheduler) -> SchedulerMetrics:
    return scheduler.metrics()
