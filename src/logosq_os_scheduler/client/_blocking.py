"""BlockingSchedulerClient: the client for synchronous code (scripts, notebooks, Qiskit).

The blocking twin of :class:`SchedulerClient`, as
:class:`~logosq_os_scheduler.BlockingScheduler` is of the scheduler: it owns an event loop on
a background thread, runs a :class:`SchedulerClient` there, and every method hands its
coroutine to that loop and blocks the calling thread until it is done. One code path: the
blocking methods are the async ones, waited for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import SchedulerClosedError, SchedulerError
from .._handle import future_result
from .._task import TaskBuilder, TaskPriority, TaskStatus
from ._client import RemoteTaskHandle, SchedulerClient
from ._retry import RetryPolicy
from ._views import JSON, AccountView, BackendView, RemoteTaskResult, TaskView
from ._wire import TaskRequest

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

__all__ = ["BlockingRemoteTaskHandle", "BlockingSchedulerClient"]

R = TypeVar("R")


class BlockingRemoteTaskHandle:
    """The blocking twin of :class:`RemoteTaskHandle`: ``handle.result(timeout=)`` blocks
    the calling thread until the task ends; ``status()``, ``refresh()`` and ``cancel()``
    block for one request."""

    __slots__ = ("_client", "_handle")

    def __init__(self, client: BlockingSchedulerClient, handle: RemoteTaskHandle) -> None:
        self._client = client
        self._handle = handle

    @property
    def task_id(self) -> int:
        """The server's id of the task."""
        return self._handle.task_id

    @property
    def key(self) -> str | None:
        """The task's client key."""
        return self._handle.key

    @property
    def name(self) -> str:
        """The task's name."""
        return self._handle.name

    @property
    def priority(self) -> TaskPriority:
        """The task's priority."""
        return self._handle.priority

    @property
    def view(self) -> TaskView:
        """The task as the server last described it to this handle (no request is made)."""
        return self._handle.view

    @property
    def handle(self) -> RemoteTaskHandle:
        """The async handle underneath (for coroutines run on the client's loop)."""
        return self._handle

    def done(self) -> bool:
        """Whether the task had ended when the server last answered about it (no request)."""
        return self._handle.done()

    def refresh(self) -> TaskView:
        """Ask the server for the task's view now."""
        return self._client._call(self._handle.refresh())

    def status(self) -> TaskStatus:
        """The task's status now, as the server says."""
        return self._client._call(self._handle.status())

    def cancel(self) -> bool:
        """Cancel the task; True if this call cancelled it, False if it had ended."""
        return self._client._call(self._handle.cancel())

    def result(self, timeout: float | None = None) -> RemoteTaskResult:
        """Block until the task ends and return its result.

        Raises:
            TaskTimeoutError: If ``timeout`` seconds pass first (the task goes on), or the
                task itself timed out.
            TaskFailedError, TaskCancelledError: If the task ended so.
        """
        return self._client._call(self._handle.result(timeout))

    def __repr__(self) -> str:
        return repr(self._handle).replace("<RemoteTaskHandle", "<BlockingRemoteTaskHandle", 1)


class BlockingSchedulerClient:
    """A :class:`SchedulerClient` for synchronous code: the same methods, without ``await``.

    Example::

        with BlockingSchedulerClient("http://127.0.0.1:8765", token) as client:
            handle = client.submit_function("square", 7, key="sq/7")
            print(handle.result(timeout=30).value)    # 49

    Args:
        url, token, timeout, retries, poll_wait, batch_size, verify: As for
            :class:`SchedulerClient`.

    Raises:
        InvalidConfigError: If a setting is out of range (naming it).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int | RetryPolicy = 5,
        poll_wait: float = 30.0,
        batch_size: int = 1000,
        verify: bool | ssl.SSLContext = True,
    ) -> None:
        self._client = SchedulerClient(
            url,
            token,
            timeout=timeout,
            retries=retries,
            poll_wait=poll_wait,
            batch_size=batch_size,
            verify=verify,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="logosq-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def client(self) -> SchedulerClient:
        """The async client underneath, living on :attr:`loop`."""
        return self._client

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the client runs on (its own thread)."""
        return self._loop

    @property
    def url(self) -> str:
        """The service's base URL."""
        return self._client.url

    def __enter__(self) -> BlockingSchedulerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the client's thread. Tasks on the server go on."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the client's loop and wait for it; an interrupt of the waiting
        thread (Ctrl-C) cancels it there too."""
        if self._closed:
            coro.close()
            raise SchedulerClosedError("the client is closed: make a new BlockingSchedulerClient")
        if threading.current_thread() is self._thread:
            coro.close()
            raise SchedulerError(
                "a blocking call on the client's own loop would wait forever: use "
                "client.client (the async SchedulerClient) there"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future_result(future)
        except concurrent.futures.CancelledError:
            raise
        except BaseException:
            future.cancel()
            raise

    def submit(self, task: TaskBuilder[Any] | TaskRequest) -> BlockingRemoteTaskHandle:
        """As :meth:`SchedulerClient.submit`."""
        return BlockingRemoteTaskHandle(self, self._call(self._client.submit(task)))

    def submit_function(
        self,
        function: str,
        *args: JSON,
        kwargs: Mapping[str, JSON] | None = None,
        name: str | None = None,
        key: str | None = None,
        priority: TaskPriority | str = TaskPriority.NORMAL,
        timeout: float | None = None,
        metadata: Mapping[str, JSON] | None = None,
    ) -> BlockingRemoteTaskHandle:
        """As :meth:`SchedulerClient.submit_function`."""
        request = TaskRequest.function(
            function,
            *args,
            kwargs=kwargs,
            name=name,
            key=key,
            priority=priority,
            timeout=timeout,
            metadata=metadata,
        )
        return self.submit(request)

    def submit_vqe(
        self,
        hamiltonian: SparsePauliOp | Mapping[str, float] | Sequence[tuple[str, float]],
        ansatz: QuantumCircuit | str,
        *,
        reps: int | None = None,
        optimizer: str = "cobyla",
        maxiter: int = 100,
        initial_point: Sequence[float] | None = None,
        shots: int | None = 4096,
        seed: int | None = None,
        backend: str | None = None,
        name: str | None = None,
        key: str | None = None,
        priority: TaskPriority | str = TaskPriority.NORMAL,
        timeout: float | None = None,
    ) -> BlockingRemoteTaskHandle:
        """As :meth:`SchedulerClient.submit_vqe`."""
        request = TaskRequest.vqe(
            hamiltonian,
            ansatz,
            reps=reps,
            optimizer=optimizer,
            maxiter=maxiter,
            initial_point=initial_point,
            shots=shots,
            seed=seed,
            backend=backend,
            name=name,
            key=key,
            priority=priority,
            timeout=timeout,
        )
        return self.submit(request)

    def submit_qaoa(
        self,
        hamiltonian: SparsePauliOp | Mapping[str, float] | Sequence[tuple[str, float]],
        *,
        reps: int = 1,
        optimizer: str = "cobyla",
        maxiter: int = 100,
        initial_point: Sequence[float] | None = None,
        shots: int | None = 4096,
        seed: int | None = None,
        backend: str | None = None,
        name: str | None = None,
        key: str | None = None,
        priority: TaskPriority | str = TaskPriority.NORMAL,
        timeout: float | None = None,
    ) -> BlockingRemoteTaskHandle:
        """As :meth:`SchedulerClient.submit_qaoa`."""
        request = TaskRequest.qaoa(
            hamiltonian,
            reps=reps,
            optimizer=optimizer,
            maxiter=maxiter,
            initial_point=initial_point,
            shots=shots,
            seed=seed,
            backend=backend,
            name=name,
            key=key,
            priority=priority,
            timeout=timeout,
        )
        return self.submit(request)

    def submit_many(
        self, tasks: Iterable[TaskBuilder[Any] | TaskRequest]
    ) -> list[BlockingRemoteTaskHandle]:
        """As :meth:`SchedulerClient.submit_many`."""
        handles = self._call(self._client.submit_many(list(tasks)))
        return [BlockingRemoteTaskHandle(self, h) for h in handles]

    def task(self, ref: int | str, *, user: str | None = None) -> BlockingRemoteTaskHandle:
        """As :meth:`SchedulerClient.task`: a task found again by its id or key."""
        return BlockingRemoteTaskHandle(self, self._call(self._client.task(ref, user=user)))

    def tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        priority: TaskPriority | str | None = None,
        user: str | None = None,
        limit: int = 100,
    ) -> list[TaskView]:
        """As :meth:`SchedulerClient.tasks`."""
        return self._call(
            self._client.tasks(status=status, priority=priority, user=user, limit=limit)
        )

    def backends(self) -> list[BackendView]:
        """As :meth:`SchedulerClient.backends`."""
        return self._call(self._client.backends())

    def me(self) -> AccountView:
        """As :meth:`SchedulerClient.me`."""
        return self._call(self._client.me())

    def stats(self) -> dict[str, JSON]:
        """As :meth:`SchedulerClient.stats`."""
        return self._call(self._client.stats())

    def __repr__(self) -> str:
        return f"<BlockingSchedulerClient {self.url}{' closed' if self._closed else ''}>"
