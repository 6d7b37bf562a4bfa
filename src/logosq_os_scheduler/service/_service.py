"""The service behind the HTTP routes: a scheduler on its journal, the accounts, and the
questions the routes ask (submit for a user, find a user's task, list, stats).

Everything here runs on the scheduler's event loop, the one uvicorn serves on, so the routes
call the scheduler directly: a submit is checked, counted against the quotas and handed to
``submit_nowait`` in one synchronous stretch, then awaited until the journal holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._config import Durability, FairShare, SchedulerConfig
from .._errors import (
    InvalidConfigError,
    InvalidTaskError,
    KeyReusedError,
    PermissionDeniedError,
    SchedulerError,
    ServiceUnavailableError,
    UnknownTaskError,
)
from .._handle import TaskHandle
from .._scheduler import QuantumScheduler
from .._task import TERMINAL, Task, TaskPriority, TaskStatus
from ._accounts import Accounts, share_weights
from ._config import BackendSettings, ServiceConfig, UserSettings
from ._events import EventHub
from ._wire import (
    PRIORITIES,
    Limits,
    TaskRequest,
    build_task,
    internal_key,
    owner_of,
    request_shots,
    task_view,
)

__all__ = ["Service"]

log = logging.getLogger("logosq_os_scheduler.service")

_PRIORITY_ORDER = sorted(TaskPriority, reverse=True)  # critical first
# The labels of a count by priority: the priorities' names as requests spell them.
_PRIORITY_NAMES = tuple(p.name.lower() for p in _PRIORITY_ORDER)
_ACTIVE = (TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.PREEMPTED)
# A request of one task has nothing to route together with.
_ALONE = contextlib.nullcontext()


class _Finished:
    """How many of one user's tasks ended, by how they ended, since the server started (the
    scheduler's metrics give what runs and waits now)."""

    __slots__ = ("cancelled", "completed", "failed", "timed_out")

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.timed_out = 0


_NONE_FINISHED = _Finished()


class BatchItemError(Exception):
    """The task at ``index`` of a batch was refused with ``error`` (so nothing was)."""

    def __init__(self, index: int, error: SchedulerError) -> None:
        super().__init__(f"tasks[{index}]: {error}")
        self.index = index
        self.error = error


class Service:
    """A scheduler on a journal, served to the users of ``config``.

    Args:
        config: The server's config (its ``server.journal`` must be set).
    """

    def __init__(self, config: ServiceConfig) -> None:
        journal = config.server.journal
        if journal is None:
            raise InvalidConfigError(
                "server.journal",
                "the server runs on a durable journal: set it in [server] or pass --journal",
            )
        self.config = config
        self.functions = config.resolve_functions()
        self.restartable = {name: f.restartable for name, f in config.functions.items()}
        self.limits = Limits(config.server.max_qubits, config.server.max_shots)
        # Built now, so that a backend the config describes wrongly stops the start with the
        # config's key in the message, before any journal is opened.
        self._backends = [(b.name, _make_backend(b)) for b in config.backends]
        self.scheduler = QuantumScheduler(config=self._scheduler_config(journal))
        self.accounts = Accounts(config, self.scheduler.clock)
        self.hub = EventHub(self.view)
        self.closing = asyncio.Event()
        self._finished: dict[str, _Finished] = {}
        # Requests waiting in wait() now (long-polls), for operators (/v1/stats, admin).
        self.long_polls = 0
        self._reader: sqlite3.Connection | None = None
        # Unix time minus the scheduler's clock: views carry Unix times.
        self._offset = time.time() - self.scheduler.clock.now()
        self._started = False

    def _scheduler_config(self, journal: str) -> SchedulerConfig:
        settings = self.config.server
        return SchedulerConfig(
            workers=settings.workers,
            journal=journal,
            durability=Durability(settings.durability),
            max_queue_depth=settings.max_queue_depth,
            fair_share=self._fair_share(),
        )

    def _fair_share(self) -> FairShare:
        """The core's fair share from the accounts: each user's weight and max_running, and
        the max_running of their first group (the core knows one group a user)."""
        users = self.config.users.values()
        groups = self.config.groups
        return FairShare(
            weights=share_weights(self.config),
            max_running={u.name: u.quotas.max_running for u in users if u.quotas.max_running},
            groups={u.name: u.groups[0] for u in users if u.groups},
            group_max_running={
                name: g.quotas.max_running for name, g in groups.items() if g.quotas.max_running
            },
        )

    # -- life ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler (recovering its journal) and register the backends."""
        # Qiskit takes seconds to import: at the start, not in the first client's request.
        with contextlib.suppress(ImportError):
            import qiskit.qasm2
            import qiskit.qasm3  # noqa: F401
        # Before the start, so that tasks recovered from the journal are counted too.
        self.scheduler.add_listener(self._on_transition)
        self.scheduler.add_listener(self.hub.listener)
        await self.scheduler.__aenter__()
        self._started = True
        for name, backend in self._backends:
            await self.scheduler.register_backend(name, backend)
        from ..journal._store import open_for_reading

        path = self.scheduler.journal_path
        assert path is not None
        self._reader = open_for_reading(path)
        log.info(
            "serving %d users, %d backends, %d functions on journal %s",
            len(self.config.users),
            len(self.config.backends),
            len(self.functions),
            path,
        )

    def begin_shutdown(self) -> None:
        """Refuse new work from now on and end long-polls and event streams."""
        self.closing.set()
        self.hub.wake_all()

    async def stop(self) -> None:
        """Close the scheduler: running tasks get ``server.shutdown_grace`` seconds to end,
        the rest stays in the journal for the next start; the journal is flushed."""
        self.begin_shutdown()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._started:
            await self.scheduler.aclose(
                timeout=self.config.server.shutdown_grace, leave_in_journal=True
            )

    def check_open(self) -> None:
        """Raise if the server is shutting down."""
        if self.closing.is_set():
            raise ServiceUnavailableError(
                "the server is shutting down and accepts no new tasks: retry against it "
                "once it is back (the same client key finds the same task)"
            )

    # -- the transition listener --------------------------------------------------------------

    def _on_transition(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        # Only an admission (out of PENDING) and an end change what a user holds.
        ended = new in TERMINAL
        if old is not TaskStatus.PENDING and not ended:
            return
        owner = owner_of(task)
        if owner is None:
            return
        if old is not TaskStatus.PENDING:
            self.accounts.active_changed(owner, -1)
        else:
            if not ended:
                self.accounts.active_changed(owner, +1)
            # PENDING -> an end: the recovery ended a task this server never admitted; like
            # the scheduler's own counts, /v1/stats leaves it out (see docs/service.md).
            return
        finished = self._finished.get(owner)
        if finished is None:
            finished = self._finished[owner] = _Finished()
        if new is TaskStatus.COMPLETED:
            finished.completed += 1
        elif new is TaskStatus.FAILED:
            finished.failed += 1
        elif new is TaskStatus.CANCELLED:
            finished.cancelled += 1
        else:
            finished.timed_out += 1

    # -- tasks ---------------------------------------------------------------------------------

    def view(self, task: Task[Any]) -> dict[str, Any]:
        """A task's view (see the contract)."""
        return task_view(task, self._offset)

    def submit(
        self, user: UserSettings, requests: Sequence[TaskRequest]
    ) -> list[tuple[TaskHandle[Any], bool]]:
        """Check, count and submit ``requests`` for ``user``: all of them or none.

        Returns:
            Each task's handle, and whether it was created now (False: its client key was
            known, and this is the task submitted with it first).

        Raises:
            PermissionDeniedError: A priority above the user's ceiling.
            InvalidTaskError: A malformed request.
            KeyReusedError: A client key the user used before for a different task.
            BatchItemError: In a batch, one of those for the item at its index.
            QuotaExceededError: The new tasks do not fit a quota.
            NoRouteError: No backend can take a circuit (in a batch, as a BatchItemError).
            QueueFullError: The new tasks might not all fit under ``max_queue_depth``.
            ServiceUnavailableError: The server is shutting down.
        """
        self.check_open()
        batch = len(requests) > 1
        out: list[tuple[TaskHandle[Any], bool] | None] = []
        new: list[tuple[int, Any]] = []
        shots = 0
        seen: set[str] = set()
        for i, request in enumerate(requests):
            try:
                self.accounts.check_priority(user, PRIORITIES[request.priority])
                if request.key is not None:
                    if request.key in seen:
                        raise InvalidTaskError("key", f"{request.key!r} is used twice in the batch")
                    seen.add(request.key)
                self._check_backend(request)
                task = build_task(
                    request, user.name, self.functions, self.restartable, self.limits
                ).build()
                if request.key is not None:
                    first = self._first_with_key(task, request.key)
                    if first is not None:
                        out.append((first, False))
                        continue
            except SchedulerError as exc:
                if batch:
                    raise BatchItemError(i, exc) from exc
                raise
            out.append(None)
            new.append((i, task))
            shots += request_shots(request)
        self.accounts.check_quotas(user, len(new), shots)
        several = len(new) > 1
        with self.scheduler.submitting_together() if several else _ALONE:
            if several:
                # All or none: what only the scheduler can refuse (no backend can take a
                # circuit, the queue is full) is asked of every task before any is admitted.
                for i, task in new:
                    try:
                        self.scheduler.check_placement(task)
                    except SchedulerError as exc:
                        raise BatchItemError(i, exc) from exc
                self.scheduler.check_room(len(new))
            submitted: list[TaskHandle[Any]] = []
            try:
                for i, task in new:
                    try:
                        handle = self.scheduler.submit_nowait(task)
                    except SchedulerError as exc:
                        if batch:
                            raise BatchItemError(i, exc) from exc
                        raise
                    submitted.append(handle)
                    out[i] = (handle, True)
            except BaseException:
                # Still all or nothing after the checks (a journal that cannot be written):
                # what was admitted is cancelled, and its key then names a cancelled task.
                for handle in submitted:
                    handle.cancel()
                raise
        self.accounts.charge(user, shots)
        return [item for item in out if item is not None]

    def _first_with_key(self, task: Task[Any], key: str) -> TaskHandle[Any] | None:
        """The task the user submitted first under ``key`` (the client's own key), if it is
        ``task`` again, compared with the first one's spec in the journal
        (``QuantumScheduler.find_submitted``); None for a new key.

        Raises:
            KeyReusedError: If the key names a different task (with the user's key in it).
        """
        try:
            return self.scheduler.find_submitted(task)
        except KeyReusedError as exc:
            raise KeyReusedError(key, exc.task_id) from None

    def _check_backend(self, request: TaskRequest) -> None:
        name = getattr(request, "backend", None)
        if name is None:
            return
        backends = self.scheduler.backends
        if name not in backends:
            known = ", ".join(sorted(backends)) or "none: circuits run on the default simulator"
            raise InvalidTaskError(
                "backend", f"no backend {name!r} on this server (known: {known})"
            )

    def _lookup(self, ref: int | str) -> TaskHandle[Any] | None:
        try:
            return self.scheduler.task(ref)
        except UnknownTaskError:
            return None

    def find(
        self, user: UserSettings, ref: int | str, *, owner: str | None = None
    ) -> TaskHandle[Any]:
        """The task with that id, or that client key of ``owner`` (default: the user), if the
        user may see it.

        Raises:
            UnknownTaskError: If there is none, or it is another user's (the same answer, so
                that nobody learns which ids other users hold).
        """
        if isinstance(ref, str):
            if owner is not None and owner != user.name and not user.admin:
                raise PermissionDeniedError("only an admin may look up other users' keys")
            ref_key = internal_key(owner or user.name, ref)
            handle = self._lookup(ref_key)
        else:
            handle = self._lookup(ref)
        if handle is not None and (user.admin or owner_of(handle.task) == user.name):
            return handle
        raise UnknownTaskError(ref, "for this user")

    async def wait(self, handle: TaskHandle[Any], timeout: float) -> None:
        """Wait until the task ends, ``timeout`` passes or the server begins to close."""
        if handle.done() or timeout <= 0 or self.closing.is_set():
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished(_h: TaskHandle[Any]) -> None:
            if not done.done():
                done.set_result(None)

        handle.add_done_callback(finished)
        closing = asyncio.ensure_future(self.closing.wait())
        self.long_polls += 1
        try:
            await asyncio.wait(
                (done, closing), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self.long_polls -= 1
            closing.cancel()
            if not done.done():
                done.cancel()

    def cancel(self, handle: TaskHandle[Any]) -> bool:
        """Cancel the task; False if it had already ended."""
        return handle.cancel()

    def list_tasks(
        self,
        user: UserSettings,
        *,
        of_user: str | None,
        status: TaskStatus | None,
        priority: TaskPriority | None,
        before: int | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of the tasks ``user`` may see, newest first, and the cursor of the next.

        Raises:
            PermissionDeniedError: If a non-admin asks for another user's tasks.
        """
        from ..journal._inspect import page_ids

        if of_user is not None and of_user != user.name and not user.admin:
            raise PermissionDeniedError("only an admin may list other users' tasks")
        if not user.admin:
            of_user = user.name
        reader = self._reader
        path = self.scheduler.journal_path
        assert reader is not None and path is not None
        views: list[dict[str, Any]] = []
        cursor = before
        # The file's status may trail the live one by a commit: filter on the live one, and
        # read on while a page is short and the file has more.
        while len(views) < limit:
            ids = page_ids(
                reader,
                path,
                user=of_user,
                users_only=True,
                status=None if status is None else status.value,
                priority=None if priority is None else int(priority),
                before=cursor,
                limit=limit,
            )
            for tid in ids:
                handle = self._lookup(tid)
                if handle is None:
                    continue
                task = handle.task
                if status is not None and task.status is not status:
                    continue
                views.append(self.view(task))
                if len(views) == limit:
                    break
            if len(ids) < limit:
                return views, None
            cursor = ids[-1]
        return views, views[-1]["id"] if views else None

    # -- figures -------------------------------------------------------------------------------

    def backends(self) -> list[dict[str, Any]]:
        """Each backend: its size, queues and breaker state."""
        metrics = self.scheduler.metrics()
        kinds = {b.name: b.kind for b in self.config.backends}
        out = []
        for name, backend in self.scheduler.backends.items():
            m = metrics.backends.get(name)
            out.append(
                {
                    "name": name,
                    "kind": kinds.get(name, type(backend).__name__),
                    "num_qubits": getattr(backend, "num_qubits", None),
                    "capacity": m.capacity if m else 0,
                    "busy": m.busy if m else 0,
                    "queued": m.queued if m else 0,
                    "queued_by_priority": dict(
                        zip(_PRIORITY_NAMES, m.queued_by_priority if m else (0,) * 5, strict=True)
                    ),
                    "breaker": m.breaker_state if m else "closed",
                    "in_rotation": m.healthy if m else True,
                }
            )
        return out

    def stats(self, user: UserSettings) -> dict[str, Any]:
        """What /v1/stats shows ``user`` (an admin sees every user's row)."""
        m = self.scheduler.metrics()
        users = []
        names = {u for u in m.users if u} | set(self._finished)
        for name in sorted(names):
            if not (user.admin or name == user.name):
                continue
            now = m.users.get(name)
            finished = self._finished.get(name, _NONE_FINISHED)
            users.append(
                {
                    "user": name,
                    "running": now.running if now else 0,
                    "queued": now.waiting if now else 0,
                    "completed": finished.completed,
                    "failed": finished.failed,
                    "cancelled": finished.cancelled,
                    "timed_out": finished.timed_out,
                    "weight": now.weight if now else None,
                }
            )
        return {
            "now": time.time(),
            "queued_by_priority": {
                name: m.queue_depth_by_priority.get(p, 0)
                for p, name in zip(_PRIORITY_ORDER, _PRIORITY_NAMES, strict=True)
            },
            "running": m.running,
            "completed": m.completed,
            "failed": m.failed,
            "cancelled": m.cancelled,
            "timed_out": m.timed_out,
            "throughput_per_s": m.recent_throughput,
            "users": users,
            "backends": self.backends(),
            **({"long_polls": self.long_polls} if user.admin else {}),
        }

    def me(self, user: UserSettings) -> dict[str, Any]:
        """What /v1/me shows: the user's settings and what they use now."""
        usage = self.accounts.usage(user.name)
        q = user.quotas
        return {
            "user": user.name,
            "groups": list(user.groups),
            "admin": user.admin,
            "priority_ceiling": user.priority_ceiling.name.lower(),
            "quotas": {
                "max_running": q.max_running,
                "max_active": q.max_active,
                "shots_per_day": q.shots_per_day,
            },
            "usage": {"active": usage.active, "shots_today": usage.shots_today},
        }

    def metrics_text(self) -> str:
        """The Prometheus text exposition (needs the observability extra)."""
        from ..observability._prometheus import PrometheusExporter

        return PrometheusExporter(self.scheduler).exposition()


def _make_backend(settings: BackendSettings) -> object:
    """The backend a ``[[backends]]`` table describes.

    Raises:
        InvalidConfigError: Naming the table, if the backend cannot be built.
    """
    key = f"backends.{settings.name}"
    try:
        if settings.kind == "mock":
            from ..backends import MockBackend

            return MockBackend(settings.name, **dict(settings.options))
        if settings.kind == "aer":
            from qiskit_aer import AerSimulator

            return AerSimulator()
        from qiskit_ibm_runtime import fake_provider

        device = str(settings.options["device"])
        factory: Callable[[], object] | None = getattr(fake_provider, device, None)
        if factory is None or not device.startswith("Fake"):
            raise InvalidConfigError(f"{key}.device", f"qiskit_ibm_runtime has no {device!r}")
        return factory()
    except InvalidConfigError:
        raise
    except (TypeError, ValueError, ImportError) as exc:
        raise InvalidConfigError(key, f"{type(exc).__name__}: {exc}") from exc
