"""RayExecutor: classical tasks on a Ray cluster, local or remote, behind the Executor contract.

Ray is imported here and only here, when a :class:`RayExecutor` is built: importing the package
never imports Ray. Every task goes through one remote trampoline, ``_invoke(fn, args,
kwargs)``; the task's function travels as an argument. The trampoline is serialized by value,
so the cluster's nodes need the modules that hold your task functions, not this package.

A task's ``ObjectRef`` is bridged to the event loop through ``ref.future()`` (a
``concurrent.futures.Future`` that Ray resolves on one of its threads) and
``loop.call_soon_threadsafe``: no coroutine and no thread per task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import (
    InvalidConfigError,
    InvalidTaskError,
    SchedulerClosedError,
    TaskFailedError,
)
from ._base import Executor
from ._errors import WorkerCrashedError

__all__ = ["RayExecutor"]


def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Run in a Ray worker: the task's own call."""
    return fn(*args, **kwargs)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "RayExecutor needs Ray: install it with `pip install logosq-os-scheduler[ray]`"
        ) from exc
    return ray


class _RayJob:
    __slots__ = ("task_id", "future", "ref")

    def __init__(self, task_id: int, future: asyncio.Future[Any], ref: Any) -> None:
        self.task_id = task_id
        self.future = future
        self.ref = ref


class RayExecutor(Executor):
    """Runs task functions as Ray tasks: on this machine, or on a cluster it joins.

    Use it when classical work outgrows one machine, or to share a cluster with other Ray
    programs. ``RayExecutor()`` starts a local Ray (or joins one this process already
    started); ``RayExecutor("auto")`` joins the cluster this machine belongs to;
    ``RayExecutor("ray://head:10001")`` connects through Ray Client. See ``docs/ray.md``.

    Each task is a Ray task asking for one CPU, with Ray's own retries turned off (the
    scheduler's retry policy decides). The future a submit returns raises what the function
    raised (Ray's ``RayTaskError`` unwrapped; Ray's traceback attached as a note),
    :class:`WorkerCrashedError` if the Ray worker or its node died, or
    :class:`TaskFailedError` for any other Ray failure (Ray's error as ``__cause__``).

    Args:
        address: None to start (or reuse) a local Ray, ``"auto"`` to join the local
            machine's cluster, or a ``ray://`` / ``host:port`` address.
        num_cpus: CPUs of a local Ray this executor starts (ignored when joining a cluster).
        capacity: Tasks to run at once (the scheduler's slot count); default: the cluster's
            CPU count, read when Ray has started (reading :attr:`capacity` before
            :meth:`start` starts Ray, blocking, unless ``capacity`` or ``num_cpus`` is given).
        runtime_env: Ray runtime environment for the tasks (``working_dir``, ``pip``, ...).
        init_kwargs: Further keyword arguments for ``ray.init``.

    Raises:
        InvalidConfigError: If a setting is out of range.
        ImportError: If Ray is not installed.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        capacity: int | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (("num_cpus", num_cpus), ("capacity", capacity)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise InvalidConfigError(name, f"must be a positive integer, got {value!r}")
        self._ray = _import_ray()
        self._address = address
        self._num_cpus = num_cpus
        self._capacity = capacity
        self._runtime_env = dict(runtime_env) if runtime_env is not None else None
        self._init_kwargs = dict(init_kwargs or {})
        self._remote_fn: Any = None
        self._remote: Any = None
        # True iff this executor called ray.init: only then does aclose() shut Ray down.
        self._owns_ray = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: dict[int, _RayJob] = {}
        self._closed = False

    # -- Ray lifecycle -----------------------------------------------------------------------

    def _connect(self) -> None:
        """Start or join Ray (blocking; :meth:`start` runs it off the event loop)."""
        if self._remote is not None:
            return
        ray = self._ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(self._init_kwargs)
            if self._address is not None:
                kwargs["address"] = self._address
            elif self._num_cpus is not None:
                kwargs["num_cpus"] = self._num_cpus
            if self._runtime_env is not None:
                kwargs["runtime_env"] = self._runtime_env
            ray.init(**kwargs)
            self._owns_ray = True
        # The trampoline is sent by value, so that cluster nodes need not install this package.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        # One CPU per task; Ray's own retries off, since the scheduler's policy decides.
        self._remote_fn = ray.remote(num_cpus=1, max_retries=0)(_invoke)
        self._remote = self._remote_fn
        if self._capacity is None:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            self._capacity = max(1, cpus)

    async def start(self) -> None:
        """Start or join Ray now, off the event loop (Ray takes seconds to start)."""
        self._bind()
        if self._remote is None:
            await asyncio.to_thread(self._connect)

    @property
    def capacity(self) -> int:
        """Tasks run at once: ``capacity``, else a local Ray's ``num_cpus``, else the
        cluster's CPU count (which needs Ray started: reading it first starts Ray)."""
        if self._capacity is None:
            if self._num_cpus is not None and self._address is None:
                return self._num_cpus
            self._connect()
        assert self._capacity is not None
        return self._capacity

    @property
    def owns_ray(self) -> bool:
        """Whether this executor started Ray (and so shuts it down on :meth:`aclose`)."""
        return self._owns_ray

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise SchedulerClosedError(
                "this RayExecutor is bound to another event loop; create one per loop"
            )
        return loop

    # -- the Executor contract ---------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        task_id: int,
        limits: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Run ``fn(*args, **kwargs)`` as a Ray task; returns a future for its value.

        Starts Ray (blocking) if :meth:`start` was not awaited first.

        Args:
            fn: The function (module-level, or anything Ray's cloudpickle can send).
            args: Positional arguments.
            kwargs: Keyword arguments.
            task_id: The task's id (unique among tasks on this executor at once).
            limits: ``{"memory_bytes": n}`` reserves that much memory for the task in Ray's
                scheduling (Ray does not cap a task's memory); ``cpu_seconds`` is not
                supported here.

        Raises:
            InvalidTaskError: If the function or its arguments cannot be serialized
                (``field`` ``"function"`` or ``"args"``), or a limit is not supported.
            SchedulerClosedError: After :meth:`aclose`.
        """
        loop = self._loop if self._loop is not None else self._bind()
        if self._closed:
            raise SchedulerClosedError("this RayExecutor is closed and accepts no tasks")
        if task_id in self._jobs:
            raise InvalidTaskError("task_id", f"task {task_id} is already running on this executor")
        remote = self._remote_for(limits)
        try:
            ref = remote.remote(fn, args, dict(kwargs))
        except Exception as exc:
            raise self._serialization_error(fn, exc) from exc
        fut: asyncio.Future[Any] = loop.create_future()
        job = _RayJob(task_id, fut, ref)
        self._jobs[task_id] = job
        fut.add_done_callback(lambda f: self._on_future_done(job, f))

        def ray_done(cf: concurrent.futures.Future[Any]) -> None:
            # On a Ray thread: hand over to the loop. A closed loop has nobody to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._settle, job, cf)

        ref.future().add_done_callback(ray_done)
        return fut

    def cancel(self, task_id: int) -> bool:
        """Stop a task with ``ray.cancel(ref, force=True)`` (its Ray worker is killed).

        Returns:
            True if the task was running here and has been cancelled; False otherwise.
        """
        job = self._jobs.pop(task_id, None)
        if job is None:
            return False
        with contextlib.suppress(Exception):  # it may have just finished: nothing to stop
            self._ray.cancel(job.ref, force=True)
        job.future.cancel()
        return True

    async def aclose(self) -> None:
        """Cancel tasks still running, then shut Ray down if this executor started it."""
        if self._closed:
            return
        self._closed = True
        for task_id in list(self._jobs):
            self.cancel(task_id)
        if self._owns_ray and self._ray.is_initialized():
            await asyncio.to_thread(self._ray.shutdown)
        self._owns_ray = False
        self._remote = None

    def __repr__(self) -> str:
        where = self._address or "local"
        state = "closed" if self._closed else ("connected" if self._remote else "not started")
        return f"<RayExecutor {where} {state} running={len(self._jobs)}>"

    # -- helpers -----------------------------------------------------------------------------

    def _remote_for(self, limits: Mapping[str, Any] | None) -> Any:
        if self._remote is None:
            self._connect()
        remote = self._remote
        if not limits:
            return remote
        unknown = set(limits) - {"memory_bytes", "cpu_seconds"}
        if unknown:
            raise InvalidTaskError(
                "limits", f"unknown limit(s) {', '.join(sorted(map(repr, unknown)))}"
            )
        if limits.get("cpu_seconds") is not None:
            raise InvalidTaskError(
                "limits",
                "RayExecutor cannot enforce cpu_seconds; give the task a timeout, or run it "
                "on a ProcessExecutor",
            )
        memory = limits.get("memory_bytes")
        if memory is None:
            return remote
        if not isinstance(memory, int) or isinstance(memory, bool) or memory < 1:
            raise InvalidTaskError(
                "limits", f"memory_bytes must be a positive integer, got {memory!r}"
            )
        return self._remote_fn.options(memory=memory)

    def _serialization_error(self, fn: Callable[..., Any], exc: Exception) -> InvalidTaskError:
        try:
            self._ray.cloudpickle.dumps(fn)
        except Exception as fn_exc:
            return InvalidTaskError(
                "function", f"{fn!r} cannot be serialized to send it to Ray: {fn_exc}"
            )
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        return InvalidTaskError(
            "args", f"the task's arguments cannot be serialized to send them to Ray: {first_line}"
        )

    def _settle(self, job: _RayJob, cf: concurrent.futures.Future[Any]) -> None:
        """On the loop: resolve our future from Ray's outcome."""
        if self._jobs.get(job.task_id) is job:
            del self._jobs[job.task_id]
        fut = job.future
        if fut.done():
            return
        try:
            value = cf.result()
        except BaseException as exc:
            err = self._translate(job.task_id, exc)
            if err is None:
                fut.cancel()
            else:
                fut.set_exception(err)
            return
        fut.set_result(value)

    def _translate(self, task_id: int, exc: BaseException) -> BaseException | None:
        """Ray's error to ours: the task's own exception, a crash, or None (cancelled)."""
        rex = self._ray.exceptions
        if isinstance(exc, (rex.TaskCancelledError, concurrent.futures.CancelledError)):
            return None
        if isinstance(exc, rex.RayTaskError):
            cause = exc.cause
            if isinstance(cause, Exception) and not isinstance(cause, rex.RayError):
                tb = getattr(exc, "traceback_str", "") or str(exc)
                cause.add_note(f"[Ray traceback]\n{tb.rstrip()}")
                return cause
            if isinstance(cause, BaseException) and not isinstance(cause, Exception):
                err = TaskFailedError(
                    task_id, f"task {task_id} raised {type(cause).__name__} in its Ray worker"
                )
                err.__cause__ = cause
                return err
            if isinstance(cause, rex.RayError):
                exc = cause  # a Ray failure inside the task: translate that instead
        crashes = (
            rex.WorkerCrashedError,
            rex.NodeDiedError,
            rex.LocalRayletDiedError,
            rex.OutOfMemoryError,
        )
        if isinstance(exc, crashes):
            err = WorkerCrashedError(
                task_id,
                f"task {task_id}'s Ray worker died while running it "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''})",
            )
            err.__cause__ = exc
            return err
        err = TaskFailedError(task_id, f"task {task_id} failed in Ray: {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err

    def _on_future_done(self, job: _RayJob, fut: asyncio.Future[Any]) -> None:
        # Someone cancelled the future we returned: cancel the Ray task too.
        if fut.cancelled() and self._jobs.get(job.task_id) is job:
            self.cancel(job.task_id)
