"""The parent's side of a :class:`ProcessExecutor`: the executor, its workers and jobs.

:class:`ProcessExecutor` and :class:`ProcessExecutorStatistics`; the bookkeeping of workers
(:class:`_Worker`) and tasks (:class:`_Job`); sending tasks, reading and resolving replies,
reaping dead workers; and the exit hook that kills workers an unclosed executor left behind.
Imports :mod:`._wire` (the frames) and :mod:`._child` (:func:`._child._worker_main`, the
target each worker process is started with).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import functools
import logging
import math
import multiprocessing
import multiprocessing.context
import multiprocessing.util  # imported before our atexit hook so that ours runs first
import os
import pickle
import signal
import socket
import sys
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

from ..._errors import (
    InvalidConfigError,
    InvalidTaskError,
    SchedulerClosedError,
    TaskFailedError,
)
from .._base import Executor
from .._errors import ResourceLimitError, WorkerCrashedError, describe_exit
from ._child import _worker_main
from ._wire import (
    _BAD_INPUT,
    _BAD_RESULT,
    _CANCEL,
    _EXIT,
    _HDR_IN,
    _HDR_OUT,
    _JOIN_LIMIT,
    _OK,
    _OVER_LIMIT,
    _PROTOCOL,
    _RAISED,
    _READY,
    _RECV_MAX,
    _RECV_SIZE,
    _RUN,
    _SKIPPED,
    _unpack_exception,
)

__all__ = ["ProcessExecutor", "ProcessExecutorStatistics"]

log = logging.getLogger("logosq_os_scheduler")

# A worker that dies before saying it is ready counts as a failed start; this many in a row
# means workers cannot start at all (for example the main module fails to import in them).
_MAX_START_FAILURES = 3
_CLOSE_GRACE = 5.0


# -- the parent: validating tasks ------------------------------------------------------------


def _pickling_error(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], exc: Exception
) -> InvalidTaskError:
    """Say which part of a task cannot be pickled (called only after pickling failed)."""
    try:
        pickle.dumps(fn, _PROTOCOL)
    except Exception as fn_exc:
        return InvalidTaskError(
            "function",
            f"{fn!r} cannot be pickled to send it to a worker process ({fn_exc}); process "
            "executors need a function defined at module level (not a lambda, a nested "
            "function or a bound method of an unpicklable object)",
        )
    for i, arg in enumerate(args):
        try:
            pickle.dumps(arg, _PROTOCOL)
        except Exception as arg_exc:
            return InvalidTaskError(
                "args",
                f"argument {i} (a {type(arg).__qualname__}) cannot be pickled to send it to a "
                f"worker process: {arg_exc}",
            )
    for key, arg in kwargs.items():
        try:
            pickle.dumps(arg, _PROTOCOL)
        except Exception as arg_exc:
            return InvalidTaskError(
                "args",
                f"keyword argument {key!r} (a {type(arg).__qualname__}) cannot be pickled to "
                f"send it to a worker process: {arg_exc}",
            )
    return InvalidTaskError("args", f"the task cannot be pickled for a worker process: {exc}")


# -- the parent: bookkeeping -----------------------------------------------------------------


class _Job:
    """One submitted task, from submit until its future is resolved."""

    __slots__ = ("task_id", "future", "payload", "memory", "cpu", "worker", "cancelled")

    def __init__(
        self,
        task_id: int,
        future: asyncio.Future[Any],
        payload: bytes,
        memory: int,
        cpu: float,
    ) -> None:
        self.task_id = task_id
        self.future = future
        # Kept until the job ends, so that a job that never started on a worker that died
        # can be sent to another.
        self.payload = payload
        self.memory = memory
        self.cpu = cpu
        # Invariant: worker is None iff the job waits in the backlog (or has ended).
        self.worker: _Worker | None = None
        # A job cancelled while queued behind another on a worker: it stays in that worker's
        # queue (so positions keep matching the worker's) until the worker skips it.
        self.cancelled = False


class _Worker:
    """One worker process and the parent's end of its socket pair."""

    __slots__ = (
        "process",
        "pid",
        "sock",
        "fd",
        "sentinel",
        "jobs",
        "assigned",
        "closed_to_new",
        "ready",
        "rbuf",
        "wqueue",
        "reading",
        "undelivered",
        "exited",
    )

    def __init__(self, process: multiprocessing.process.BaseProcess, sock: socket.socket) -> None:
        self.process = process
        self.pid: int = process.pid or 0
        self.sock = sock
        self.fd = sock.fileno()
        self.sentinel: int = process.sentinel
        # Jobs sent to the worker, in the order it runs them. Invariant: jobs[0], if any, is
        # the job it is running (or starts next without a further decision); the rest are
        # queued (prefetched) and may still be skipped.
        self.jobs: deque[_Job] = deque()
        self.assigned = 0
        # Set when the worker must take no more jobs: it has one under a CPU limit (its hard
        # limit stays lowered afterwards) or reached max_tasks_per_worker. It is retired
        # once its queue is empty.
        self.closed_to_new = False
        self.ready = False
        self.rbuf = bytearray()
        self.wqueue: deque[memoryview] = deque()
        self.reading = True
        # Set when the worker died with data from us unread (Linux reports that as a reset
        # rather than end-of-file) or a write to it failed: its only job never started.
        self.undelivered = False
        # Resolved when the process has exited and been reaped (created by aclose()).
        self.exited: asyncio.Future[None] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessExecutorStatistics:
    """A snapshot of a :class:`ProcessExecutor` (from :meth:`ProcessExecutor.statistics`).

    Attributes:
        capacity: Tasks it accepts at once (workers times ``1 + prefetch``).
        workers: Worker processes in service (the ``workers`` setting while it is open and
            started; suspended workers are not counted).
        idle: Workers with no task.
        running: Tasks a worker is running (suspended ones included).
        queued: Tasks sent to a worker behind the one it runs (prefetch).
        waiting: Tasks not yet sent to any worker.
        suspended: Workers paused with :meth:`ProcessExecutor.suspend`.
        completed: Tasks that returned a value.
        failed: Tasks that raised, went over a limit, or whose worker crashed.
        crashed: Tasks whose worker died under them (included in ``failed``).
        cancelled: Tasks stopped by :meth:`ProcessExecutor.cancel`.
        workers_started: Worker processes started so far, replacements included.
    """

    capacity: int
    workers: int
    idle: int
    running: int
    queued: int
    waiting: int
    suspended: int
    completed: int
    failed: int
    crashed: int
    cancelled: int
    workers_started: int


# Open executors, so that workers are killed at interpreter exit if aclose() was never
# awaited. Registered after multiprocessing's own exit hook (imported above), so it runs
# first: otherwise that hook would wait forever for our (non-daemonic) workers.
_LIVE: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


def _kill_leftover_workers() -> None:
    for executor in list(_LIVE):
        executor._kill_all_now()


atexit.register(_kill_leftover_workers)


def _default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _check_count(name: str, value: object, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidConfigError(name, f"must be an integer of at least {minimum}, got {value!r}")
    return value


class ProcessExecutor(Executor):
    """Runs task functions in a pool of worker processes: true parallelism, isolated memory.

    Use it for CPU-bound pure-Python work, and for code that may crash or leak: each task runs
    in a separate process, so a segfault, an ``os._exit`` or an out-of-memory kill fails that
    task alone (:class:`WorkerCrashedError`) and the worker is replaced. Functions, arguments
    and results travel by pickle: functions must be defined at module level.

    The executor must be used from one asyncio event loop (selector-based, as on POSIX;
    uvloop works): it binds to the loop of its first :meth:`submit` or :meth:`start`.

    Example::

        executor = ProcessExecutor(workers=8)
        async with QuantumScheduler() as scheduler:
            scheduler.register_executor("process", executor)
            handle = await scheduler.submit(
                Task.classical("fit").with_function(fit, data).with_executor("process")
            )

    Args:
        workers: Worker processes (default: the CPUs this process may use).
        prefetch: Tasks each worker may hold queued behind the one it runs (default 0).
            With 1, a worker starts its next task the moment it finishes one, without waiting
            for a round trip through the event loop: worth it for tasks of a few milliseconds
            or less. Capacity becomes ``workers * (1 + prefetch)``, so a queued task counts as
            started for the scheduler; a worker with a queued task cannot be suspended.
        mp_context: ``"forkserver"`` (default where available: a new worker is a cheap fork of
            a small server process) or ``"spawn"`` (a fresh interpreter per worker: slower to
            start, available everywhere). ``"fork"`` is refused (see the module docs).
        max_tasks_per_worker: Replace a worker after it has run this many tasks (None: never),
            to contain slow leaks in task code.
        memory_limit_bytes: Default address-space limit of a worker while it runs a task
            (``RLIMIT_AS``; it counts the interpreter too, about 30-100 MB). A task's own
            ``memory_bytes`` limit replaces it.
        cpu_time_limit: Default CPU seconds a task may use (``RLIMIT_CPU``, whole seconds,
            rounded up). A task's own ``cpu_seconds`` limit replaces it. A worker that ran a
            task under a CPU limit is replaced afterwards (its hard limit cannot be raised).

    Raises:
        InvalidConfigError: If a setting is out of range.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        prefetch: int = 0,
        mp_context: str | None = None,
        max_tasks_per_worker: int | None = None,
        memory_limit_bytes: int | None = None,
        cpu_time_limit: float | None = None,
    ) -> None:
        workers = _check_count(
            "workers", _default_workers() if workers is None else workers, minimum=1
        )
        prefetch = _check_count("prefetch", prefetch, minimum=0)
        methods = multiprocessing.get_all_start_methods()
        if mp_context is None:
            mp_context = "forkserver" if "forkserver" in methods else "spawn"
        if mp_context == "fork":
            raise InvalidConfigError(
                "mp_context",
                "'fork' is unsafe here: the scheduler's process has threads, and forked "
                "workers would inherit each other's sockets; use 'forkserver' or 'spawn'",
            )
        if mp_context not in methods:
            raise InvalidConfigError(
                "mp_context",
                f"start method {mp_context!r} is not available here; choose from "
                f"{', '.join(m for m in methods if m != 'fork')}",
            )
        if max_tasks_per_worker is not None:
            _check_count("max_tasks_per_worker", max_tasks_per_worker, minimum=1)
        try:
            default_memory, default_cpu = self._check_limits(memory_limit_bytes, cpu_time_limit)
        except ValueError as exc:
            name = "memory_limit_bytes" if "memory" in str(exc) else "cpu_time_limit"
            raise InvalidConfigError(name, str(exc)) from None
        self._workers_wanted = workers
        self._depth = 1 + prefetch
        # Typed as the spawn context: every allowed context has the same Process API.
        self._context = cast(
            multiprocessing.context.SpawnContext, multiprocessing.get_context(mp_context)
        )
        self._max_tasks = max_tasks_per_worker
        self._default_memory = default_memory
        self._default_cpu = default_cpu
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # Invariants, while open:
        # - _workers holds the workers in service: len(_workers) == workers once started,
        #   except for moments after a failed process start (topped up on the next submit)
        #   and after resume() (the extra worker is retired when it next runs empty).
        # - _idle holds the workers in service with no job that take new ones; _open those
        #   with 1..depth-1 jobs that take new ones (always empty without prefetch).
        # - a job is in _backlog iff its worker is None; every job not cancelled is in _jobs.
        # - _suspended workers hold exactly one job and are stopped with SIGSTOP.
        # - _all holds every started process not reaped yet (in service, suspended or dying).
        self._workers: set[_Worker] = set()
        self._idle: set[_Worker] = set()
        self._open: set[_Worker] = set()
        self._suspended: set[_Worker] = set()
        self._all: set[_Worker] = set()
        self._jobs: dict[int, _Job] = {}
        self._backlog: deque[_Job] = deque()
        self._start_failures = 0
        self._broken: str | None = None
        self._completed = 0
        self._failed = 0
        self._crashed = 0
        self._cancelled = 0
        self._started = 0

    # -- the Executor contract ---------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many tasks it accepts at once: ``workers * (1 + prefetch)``."""
        return self._workers_wanted * self._depth

    @property
    def workers(self) -> int:
        """The number of worker processes kept in service."""
        return self._workers_wanted

    async def start(self) -> None:
        """Start every worker now rather than on the first :meth:`submit`."""
        self._bind()
        self._top_up()

    def validate(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        """Check at submit that the function and its arguments pickle (they travel to a worker
        process), so that a task that cannot run fails before it is queued.

        Raises:
            InvalidTaskError: Naming the function, or the argument, that does not pickle.
        """
        try:
            pickle.dumps((fn, args, dict(kwargs)), _PROTOCOL)
        except Exception as exc:
            raise _pickling_error(fn, args, kwargs, exc) from exc

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        task_id: int,
        limits: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker process; returns a future for its value.

        The future raises what ``fn`` raised (type preserved, its ``__cause__`` chain rebuilt,
        the worker's traceback attached as a note), :class:`WorkerCrashedError` if the worker
        died, :class:`ResourceLimitError` past a limit, or :class:`TaskFailedError` if the
        value cannot be pickled back. Cancelling the future stops the task, as :meth:`cancel`
        does. Past capacity, tasks wait for a worker in submission order.

        Args:
            fn: A picklable (module-level) function.
            args: Positional arguments (picklable).
            kwargs: Keyword arguments (picklable).
            task_id: The task's id (unique among tasks on this executor at once).
            limits: ``{"memory_bytes": int, "cpu_seconds": float}``, either optional; they
                replace the executor's defaults for this task.

        Raises:
            InvalidTaskError: If the function or an argument cannot be pickled (``field`` is
                ``"function"`` or ``"args"``), a limit is malformed (``"limits"``), or
                ``task_id`` is already running here (``"task_id"``).
            SchedulerClosedError: After :meth:`aclose`.
        """
        loop = self._loop
        if loop is None:
            loop = self._bind()
        if self._closed:
            raise SchedulerClosedError("this ProcessExecutor is closed and accepts no tasks")
        memory = self._default_memory
        cpu = self._default_cpu
        if limits:
            memory, cpu = self._task_limits(limits)
        if task_id in self._jobs:
            raise InvalidTaskError("task_id", f"task {task_id} is already running on this executor")
        try:
            payload = pickle.dumps((fn, args, kwargs), _PROTOCOL)
        except Exception as exc:
            raise _pickling_error(fn, args, kwargs, exc) from exc
        fut: asyncio.Future[Any] = loop.create_future()
        if self._broken is not None:
            fut.set_exception(WorkerCrashedError(task_id, self._broken))
            return fut
        job = _Job(task_id, fut, payload, memory, cpu)
        self._jobs[task_id] = job
        fut.add_done_callback(functools.partial(self._on_future_done, job))
        if len(self._workers) < self._workers_wanted:
            self._top_up()
        worker = self._idle.pop() if self._idle else self._open.pop() if self._open else None
        if worker is None:
            self._backlog.append(job)
        else:
            self._send_job(worker, job)
            self._place(worker)
        return fut

    def cancel(self, task_id: int) -> bool:
        """Stop a task. A running task's worker is killed (a replacement starts at once); a
        task queued on a worker is skipped by it; a task not yet sent is dropped. Its future
        is cancelled.

        Returns:
            True if the task was here and has been stopped; False if it is unknown or done.
        """
        job = self._jobs.pop(task_id, None)
        if job is None:
            return False
        worker = job.worker
        if worker is None:
            self._backlog.remove(job)
        elif worker.jobs[0] is job:
            self._kill_running(worker)
        else:
            # Queued behind another job: the worker skips it, or, if it committed to it
            # before reading this, the parent kills it when its result shows that.
            job.cancelled = True
            self._write(worker, _HDR_IN.pack(_CANCEL, task_id, 0, 0, 0.0))
        self._cancelled += 1
        job.future.cancel()
        return True

    def suspend(self, task_id: int) -> bool:
        """Pause the worker running a task with SIGSTOP (its state is kept).

        A spare worker starts so that capacity stays available to other tasks; the extra
        worker is retired once the paused task has resumed and a worker runs empty.

        Returns:
            True if the worker was paused; False if the task is not running here, or has a
            task queued behind it on its worker (prefetch).
        """
        job = self._jobs.get(task_id)
        worker = None if job is None else job.worker
        if worker is None or worker not in self._workers or len(worker.jobs) != 1:
            return False
        try:
            os.kill(worker.pid, signal.SIGSTOP)
        except ProcessLookupError:
            return False  # it has just died: its sentinel will report the crash
        self._workers.discard(worker)
        self._open.discard(worker)
        self._suspended.add(worker)
        self._top_up()
        return True

    def resume(self, task_id: int) -> bool:
        """Continue a task paused by :meth:`suspend` (SIGCONT).

        Returns:
            True if it was paused and now runs again; False otherwise.
        """
        job = self._jobs.get(task_id)
        worker = None if job is None else job.worker
        if worker is None or worker not in self._suspended:
            return False
        self._suspended.discard(worker)
        self._workers.add(worker)
        # If it died while paused, its sentinel reports the crash.
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGCONT)
        self._place(worker)
        return True

    async def aclose(self) -> None:
        """Stop every worker and release their sockets; no process is left behind.

        Tasks still waiting or running are cancelled (their workers are killed); idle workers
        are asked to exit and are killed if they have not within a few seconds.
        """
        if self._closed:
            if self._all:
                await self._wait_exits(list(self._all))
            return
        self._closed = True
        _LIVE.discard(self)
        jobs = list(self._jobs.values())
        self._jobs.clear()
        self._backlog.clear()
        self._idle.clear()
        self._open.clear()
        for job in jobs:
            self._cancelled += 1
            job.future.cancel()
        for worker in list(self._workers | self._suspended):
            busy = bool(worker.jobs)
            worker.jobs.clear()
            self._take_out(worker, kill=busy)
        await self._wait_exits(list(self._all))

    # -- observation -------------------------------------------------------------------------

    def statistics(self) -> ProcessExecutorStatistics:
        """A snapshot of the pool: workers, tasks by state, crashes and restarts."""
        running = queued = 0
        for worker in self._workers | self._suspended:
            live = [job for job in worker.jobs if not job.cancelled]
            if worker.jobs and not worker.jobs[0].cancelled:
                running += 1
                queued += len(live) - 1
            else:
                queued += len(live)
        return ProcessExecutorStatistics(
            capacity=self.capacity,
            workers=len(self._workers),
            idle=len(self._idle),
            running=running,
            queued=queued,
            waiting=len(self._backlog),
            suspended=len(self._suspended),
            completed=self._completed,
            failed=self._failed,
            crashed=self._crashed,
            cancelled=self._cancelled,
            workers_started=self._started,
        )

    def worker_pids(self) -> frozenset[int]:
        """Process ids of every worker not yet reaped (in service, paused or exiting)."""
        return frozenset(w.pid for w in self._all)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<ProcessExecutor {state} workers={len(self._workers)}/{self._workers_wanted} "
            f"tasks={len(self._jobs)} waiting={len(self._backlog)}>"
        )

    # -- limits ------------------------------------------------------------------------------

    @staticmethod
    def _check_limits(memory: object, cpu: object) -> tuple[int, float]:
        """Validate limits; 0 means none. Raises ValueError naming the limit."""
        mem_value = 0
        cpu_value = 0.0
        if (memory is not None or cpu is not None) and sys.platform == "win32":
            raise ValueError("memory and cpu limits need setrlimit, which Windows lacks")
        if memory is not None:
            if not isinstance(memory, int) or isinstance(memory, bool) or memory < 1:
                raise ValueError(f"memory_bytes must be a positive integer, got {memory!r}")
            mem_value = memory
        if cpu is not None:
            if (
                not isinstance(cpu, (int, float))
                or isinstance(cpu, bool)
                or not math.isfinite(cpu)
                or cpu <= 0
            ):
                raise ValueError(f"cpu_seconds must be a positive number, got {cpu!r}")
            cpu_value = float(cpu)
        return mem_value, cpu_value

    def _task_limits(self, limits: Mapping[str, Any]) -> tuple[int, float]:
        unknown = set(limits) - {"memory_bytes", "cpu_seconds"}
        if unknown:
            raise InvalidTaskError(
                "limits",
                f"unknown limit(s) {', '.join(sorted(map(repr, unknown)))}; "
                "known: 'memory_bytes', 'cpu_seconds'",
            )
        memory = limits.get("memory_bytes")
        cpu = limits.get("cpu_seconds")
        try:
            mem_value, cpu_value = self._check_limits(memory, cpu)
        except ValueError as exc:
            raise InvalidTaskError("limits", str(exc)) from None
        if memory is None:
            mem_value = self._default_memory
        if cpu is None:
            cpu_value = self._default_cpu
        return mem_value, cpu_value

    # -- workers -----------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            _LIVE.add(self)
        elif self._loop is not loop:
            raise SchedulerClosedError(
                "this ProcessExecutor is bound to another event loop; create one per loop"
            )
        return loop

    def _top_up(self) -> None:
        """Start workers until ``workers`` are in service; give them waiting jobs."""
        if self._closed or self._broken is not None:
            return
        while len(self._workers) < self._workers_wanted:
            try:
                worker = self._spawn()
            except OSError as exc:  # out of processes or fds: run short, retry on next submit
                log.error("ProcessExecutor could not start a worker process: %s", exc)
                return
            self._workers.add(worker)
            self._fill(worker)

    def _spawn(self) -> _Worker:
        loop = self._loop
        assert loop is not None
        parent_sock, child_sock = socket.socketpair()
        try:
            process = self._context.Process(
                target=_worker_main,
                args=(child_sock, os.getpid()),
                name=f"logosq-process-worker-{self._started}",
                # Not daemonic, so that tasks may start processes of their own; the atexit
                # hook above kills workers an unclosed executor left behind.
                daemon=False,
            )
            process.start()
        except BaseException:
            parent_sock.close()
            raise
        finally:
            # Only the worker holds the other end now, so its death reads as end-of-file.
            child_sock.close()
        parent_sock.setblocking(False)
        worker = _Worker(process, parent_sock)
        self._started += 1
        self._all.add(worker)
        loop.add_reader(worker.fd, self._on_readable, worker)
        loop.add_reader(worker.sentinel, self._on_exit, worker)
        return worker

    def _place(self, worker: _Worker) -> None:
        """File a worker in service under _idle or _open by how many jobs it holds."""
        self._idle.discard(worker)
        self._open.discard(worker)
        if worker not in self._workers or worker.closed_to_new:
            return
        n = len(worker.jobs)
        if n == 0:
            self._idle.add(worker)
        elif n < self._depth:
            self._open.add(worker)

    def _fill(self, worker: _Worker) -> None:
        """Give a worker in service waiting jobs up to its depth; retire it if it is done."""
        backlog = self._backlog
        while (
            backlog
            and not worker.closed_to_new
            and len(worker.jobs) < self._depth
            and worker in self._workers
        ):
            self._send_job(worker, backlog.popleft())
        if not worker.jobs and (
            worker.closed_to_new or len(self._workers) > self._workers_wanted or self._closed
        ):
            self._take_out(worker, kill=False)
            self._top_up()
            return
        self._place(worker)

    def _take_out(self, worker: _Worker, *, kill: bool) -> None:
        """Remove a worker from service; kill it, or ask it to exit (it is idle)."""
        self._workers.discard(worker)
        self._suspended.discard(worker)
        self._idle.discard(worker)
        self._open.discard(worker)
        if worker.reading:
            worker.reading = False
            loop = self._loop
            assert loop is not None
            loop.remove_reader(worker.fd)
        if kill:
            if worker.wqueue:
                worker.wqueue.clear()
                assert self._loop is not None
                self._loop.remove_writer(worker.fd)
            # If it is already dead, its sentinel reports it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        else:
            self._write(worker, _HDR_IN.pack(_EXIT, 0, 0, 0, 0.0))

    def _kill_running(self, worker: _Worker) -> None:
        """Kill a worker to stop the job it runs; jobs queued behind it go to other workers."""
        jobs = worker.jobs
        jobs.popleft().worker = None
        self._requeue(jobs)
        self._take_out(worker, kill=True)
        self._top_up()

    def _requeue(self, jobs: deque[_Job]) -> None:
        """Jobs that never started on a worker go back to the front of the backlog."""
        for job in reversed(jobs):
            job.worker = None
            if not job.cancelled:
                self._backlog.appendleft(job)
        jobs.clear()

    # -- writing -----------------------------------------------------------------------------

    def _send_job(self, worker: _Worker, job: _Job) -> None:
        worker.jobs.append(job)
        worker.assigned += 1
        if job.cpu or (self._max_tasks is not None and worker.assigned >= self._max_tasks):
            worker.closed_to_new = True
        job.worker = worker
        payload = job.payload
        header = _HDR_IN.pack(_RUN, job.task_id, len(payload), job.memory, job.cpu)
        if len(payload) <= _JOIN_LIMIT:
            self._write(worker, header + payload)
        else:
            self._write(worker, header)
            self._write(worker, payload)

    def _write(self, worker: _Worker, data: bytes) -> None:
        if worker.wqueue:
            worker.wqueue.append(memoryview(data))
            return
        try:
            sent = worker.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            worker.undelivered = True  # the worker is gone: its sentinel reports it
            return
        if sent < len(data):
            worker.wqueue.append(memoryview(data)[sent:])
            assert self._loop is not None
            self._loop.add_writer(worker.fd, self._on_writable, worker)

    def _on_writable(self, worker: _Worker) -> None:
        queue = worker.wqueue
        while queue:
            view = queue[0]
            try:
                sent = worker.sock.send(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                worker.undelivered = True
                queue.clear()
                break
            if sent < len(view):
                queue[0] = view[sent:]
                return
            queue.popleft()
        assert self._loop is not None
        self._loop.remove_writer(worker.fd)

    # -- reading -----------------------------------------------------------------------------

    def _on_readable(self, worker: _Worker) -> None:
        buf = worker.rbuf
        size = _RECV_SIZE
        if len(buf) >= _HDR_OUT.size:
            want = _HDR_OUT.size + _HDR_OUT.unpack_from(buf)[2] - len(buf)
            size = min(max(want, _RECV_SIZE), _RECV_MAX)
        try:
            data = worker.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            worker.undelivered = True
            data = b""
        except OSError:
            data = b""
        if not data:
            # End of file: the worker has exited or is exiting; its sentinel settles it.
            worker.reading = False
            assert self._loop is not None
            self._loop.remove_reader(worker.fd)
            return
        self._feed(worker, data)

    def _feed(self, worker: _Worker, data: bytes) -> None:
        buf = worker.rbuf
        frames: bytes | bytearray
        if buf:
            buf += data
            frames = buf
        else:
            frames = data
        size = len(frames)
        pos = 0
        hdr = _HDR_OUT.size
        unpack = _HDR_OUT.unpack_from
        while size - pos >= hdr and worker.reading:
            kind, task_id, length = unpack(frames, pos)
            end = pos + hdr + length
            if end > size:
                break
            body = frames[pos + hdr : end]
            pos = end
            self._on_frame(worker, kind, task_id, body)
        if not worker.reading:
            worker.rbuf = bytearray()  # the worker was killed: the rest does not matter
        elif pos == size:
            worker.rbuf = bytearray()
        elif pos:
            worker.rbuf = bytearray(frames[pos:])
        elif frames is not buf:
            worker.rbuf = bytearray(frames)

    def _on_frame(self, worker: _Worker, kind: int, task_id: int, body: bytes | bytearray) -> None:
        if kind == _READY:
            worker.ready = True
            self._start_failures = 0
            return
        jobs = worker.jobs
        if kind == _SKIPPED:
            for job in jobs:
                if job.task_id == task_id and job.cancelled:
                    jobs.remove(job)
                    job.worker = None
                    break
        else:
            if not jobs or jobs[0].task_id != task_id:
                return  # not ours to settle (the worker is being killed)
            job = jobs.popleft()
            job.worker = None
            if self._jobs.get(task_id) is job:
                del self._jobs[task_id]
            self._resolve(job, kind, body)
            if jobs and jobs[0].cancelled:
                # The worker committed to a job cancelled while it was queued: stop it.
                self._kill_running(worker)
                return
        if worker in self._workers:
            self._fill(worker)
        elif worker in self._suspended and not jobs:
            # Paused after it had replied: it is free, and a spare has taken its place.
            self._suspended.discard(worker)
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGCONT)
            self._take_out(worker, kill=False)

    def _resolve(self, job: _Job, kind: int, body: bytes | bytearray) -> None:
        fut = job.future
        if fut.done():
            return
        task_id = job.task_id
        if kind == _OK:
            try:
                value = pickle.loads(body)
            except Exception as exc:
                self._failed += 1
                err = TaskFailedError(
                    task_id,
                    f"task {task_id} returned a value that cannot be unpickled in the "
                    f"scheduler's process: {type(exc).__name__}: {exc}",
                )
                err.__cause__ = exc
                fut.set_exception(err)
                return
            self._completed += 1
            fut.set_result(value)
            return
        self._failed += 1
        if kind == _RAISED:
            fut.set_exception(_unpack_exception(body, task_id))
        elif kind == _BAD_RESULT:
            cause = _unpack_exception(body, task_id)
            err = TaskFailedError(
                task_id,
                f"task {task_id} returned a value that cannot be pickled back from its worker "
                f"process: {type(cause).__name__}: {cause}; return plain data instead",
            )
            err.__cause__ = cause
            fut.set_exception(err)
        elif kind == _BAD_INPUT:
            cause = _unpack_exception(body, task_id)
            err = TaskFailedError(
                task_id,
                f"task {task_id}'s function or arguments could not be loaded in the worker "
                f"process: {type(cause).__name__}: {cause}; define them in a module the "
                "worker can import",
            )
            err.__cause__ = cause
            fut.set_exception(err)
        elif kind == _OVER_LIMIT:
            limit, packed = pickle.loads(body)
            if limit == "memory_bytes":
                err = ResourceLimitError(
                    task_id,
                    f"task {task_id} ran out of memory under its limit of {job.memory} bytes "
                    f"({job.memory / 2**20:.0f} MiB of address space) and was stopped",
                    limit=limit,
                    value=job.memory,
                )
                err.__cause__ = _unpack_exception(packed, task_id)
            else:
                err = ResourceLimitError(
                    task_id,
                    f"task {task_id} used more than its CPU-time limit of {job.cpu:g} s "
                    "and was stopped",
                    limit=limit,
                    value=job.cpu,
                )
            fut.set_exception(err)
        else:
            fut.set_exception(
                TaskFailedError(task_id, f"task {task_id}: unknown reply kind {kind}")
            )

    # -- deaths ------------------------------------------------------------------------------

    def _on_exit(self, worker: _Worker) -> None:
        """A worker process has exited: reap it; if it was in service, settle its jobs."""
        loop = self._loop
        assert loop is not None
        loop.remove_reader(worker.sentinel)
        unexpected = worker in self._workers or worker in self._suspended
        if unexpected:
            # Out of service first, so that a reply drained below does not bring it new jobs.
            self._workers.discard(worker)
            self._suspended.discard(worker)
            self._idle.discard(worker)
            self._open.discard(worker)
            if worker.reading:
                self._drain(worker)  # replies written just before the exit still count
        if worker.reading:
            worker.reading = False
            loop.remove_reader(worker.fd)
        if worker.wqueue:
            worker.wqueue.clear()
            loop.remove_writer(worker.fd)
        process = worker.process
        process.join(0)
        if process.exitcode is None:
            # With "spawn" the sentinel can close a moment before the exit status is ready.
            process.join(2.0)
            if process.exitcode is None:
                process.kill()
                process.join()
        exitcode = process.exitcode
        jobs = worker.jobs
        if unexpected and jobs:
            head = jobs.popleft()
            if worker.undelivered and not jobs and not head.cancelled:
                # It died before it read its only job (an idle worker killed from outside,
                # say): the job never started, so it goes first to the next worker.
                jobs.append(head)
            elif not head.cancelled:
                self._crash(head, worker, exitcode)
            self._requeue(jobs)
        jobs.clear()
        if unexpected and not worker.ready:
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                self._break(exitcode)
        worker.sock.close()
        process.close()
        self._all.discard(worker)
        if worker.exited is not None and not worker.exited.done():
            worker.exited.set_result(None)
        if unexpected:
            self._top_up()

    def _drain(self, worker: _Worker) -> None:
        while worker.reading:
            try:
                data = worker.sock.recv(_RECV_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                worker.undelivered = True
                return
            except OSError:
                return
            if not data:
                return
            self._feed(worker, data)

    def _crash(self, job: _Job, worker: _Worker, exitcode: int | None) -> None:
        task_id = job.task_id
        self._jobs.pop(task_id, None)
        job.worker = None
        self._failed += 1
        self._crashed += 1
        how = describe_exit(exitcode)
        signum = -exitcode if exitcode is not None and exitcode < 0 else None
        err: TaskFailedError
        if job.cpu and signum in (signal.SIGKILL, signal.SIGXCPU):
            err = ResourceLimitError(
                task_id,
                f"task {task_id} used more than its CPU-time limit of {job.cpu:g} s: its "
                f"worker process (pid {worker.pid}) {how}; the worker has been replaced",
                limit="cpu_seconds",
                value=job.cpu,
            )
        else:
            hint = ""
            if job.memory:
                hint = (
                    f" (it ran under a memory limit of {job.memory} bytes, which it may have "
                    "hit in native code)"
                )
            err = WorkerCrashedError(
                task_id,
                f"task {task_id} crashed its worker process (pid {worker.pid}), which {how} "
                f"while running it{hint}; the worker has been replaced, no other task is "
                "affected",
                pid=worker.pid,
                exitcode=None if signum is not None else exitcode,
                signal=signum,
            )
        if not job.future.done():
            job.future.set_exception(err)

    def _break(self, exitcode: int | None) -> None:
        """Workers cannot start: fail what waits rather than restart them forever."""
        self._broken = (
            f"worker processes exit before they are ready (the last {describe_exit(exitcode)}); "
            "the executor has stopped starting them. Usually the main module or the package "
            "fails to import in a fresh process: check the workers' stderr"
        )
        log.error("ProcessExecutor: %s", self._broken)
        while self._backlog:
            job = self._backlog.popleft()
            self._jobs.pop(job.task_id, None)
            self._failed += 1
            job.future.set_exception(WorkerCrashedError(job.task_id, self._broken))

    def _on_future_done(self, job: _Job, fut: asyncio.Future[Any]) -> None:
        # Someone cancelled the future we returned: stop the task as cancel() would.
        if fut.cancelled() and self._jobs.get(job.task_id) is job:
            self.cancel(job.task_id)

    # -- closing -----------------------------------------------------------------------------

    async def _wait_exits(self, workers: list[_Worker]) -> None:
        if not workers:
            return  # none was ever started (the executor was not used)
        loop = self._loop
        assert loop is not None
        waits: list[asyncio.Future[None]] = []
        for worker in workers:
            if worker.exited is None:
                worker.exited = loop.create_future()
            waits.append(worker.exited)
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=_CLOSE_GRACE)
        if pending:
            for worker in workers:
                if worker in self._all:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
            await asyncio.wait(pending)

    def _kill_all_now(self) -> None:
        """At interpreter exit, without the loop: kill and reap every worker."""
        self._closed = True
        for worker in list(self._all):
            try:
                worker.process.kill()
                worker.process.join(1.0)
                worker.sock.close()
            except (OSError, ValueError):
                pass
        self._all.clear()
