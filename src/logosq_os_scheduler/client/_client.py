"""SchedulerClient: the task API of a local scheduler, against a scheduler service.

``logosq serve`` runs a scheduler that many clients share; :class:`SchedulerClient` talks to
it over HTTP (httpx) with the task API a local :class:`~logosq_os_scheduler.QuantumScheduler`
has: submit, await a handle, cancel, and find a task again by its id or client key.

Never twice: every submit carries a client key (the user's, or a fresh ``lq-<uuid4>``), and
the server returns the existing task for a key it knows. A request that fails on the way
(a dropped connection, a time-out, a server error) is therefore sent again with the same
key, and the task runs once whether or not the first request reached the server.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
import urllib.parse
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from .._errors import (
    InvalidConfigError,
    InvalidRequestError,
    KeyReusedError,
    SchedulerClosedError,
    SchedulerError,
    ServiceError,
    ServiceUnavailableError,
    TaskTimeoutError,
)
from .._task import TaskBuilder, TaskPriority, TaskStatus
from ._retry import RetryPolicy, is_retryable_status
from ._views import (
    JSON,
    AccountView,
    BackendView,
    RemoteTaskResult,
    TaskView,
    account_of,
    backend_of,
    view_of,
)
from ._wire import TaskRequest, error_of_problem, error_of_task, new_key, retry_after_seconds

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

__all__ = ["RemoteTaskHandle", "SchedulerClient"]

log = logging.getLogger("logosq_os_scheduler.client")

# The longest long-poll the contract allows (GET ...?wait=), and the shortest the client
# falls back to for a server that allows less than asked.
_MAX_WAIT = 60.0
_MIN_WAIT = 1.0


class RemoteTaskHandle:
    """A task submitted to a scheduler service: await it for its
    :class:`~logosq_os_scheduler.client.RemoteTaskResult`, or inspect and cancel it.

    ``await handle`` (or ``await handle.result()``) returns the result of a completed task
    and raises otherwise, as a local handle does: :class:`~logosq_os_scheduler.TaskFailedError`
    (with the server's message), :class:`~logosq_os_scheduler.TaskTimeoutError` or
    :class:`~logosq_os_scheduler.TaskCancelledError`. Waiting long-polls the server, so a
    handle costs nothing while it is not awaited. Made by ``client.submit(...)`` and by
    ``client.task(id_or_key)``, which finds a task again from any client, after a restart too.
    """

    __slots__ = ("_client", "_view")

    def __init__(self, client: SchedulerClient, view: TaskView) -> None:
        self._client = client
        # The last view the server sent: replaced by every read, never by a guess.
        self._view = view

    @property
    def task_id(self) -> int:
        """The server's id of the task."""
        return self._view.task_id

    @property
    def key(self) -> str | None:
        """The task's client key: give it to ``client.task(key)`` to find the task again."""
        return self._view.key

    @property
    def name(self) -> str:
        """The task's name."""
        return self._view.name

    @property
    def priority(self) -> TaskPriority:
        """The task's priority."""
        return self._view.priority

    @property
    def view(self) -> TaskView:
        """The task as the server last described it to this handle (no request is made)."""
        return self._view

    def done(self) -> bool:
        """Whether the task had ended when the server last answered about it (cheap: no
        request; ``await handle.status()`` asks the server)."""
        return self._view.done

    async def refresh(self) -> TaskView:
        """Ask the server for the task's view now, and keep it."""
        self._view = await self._client._get_view(self._view.task_id, wait=0.0)
        return self._view

    async def status(self) -> TaskStatus:
        """The task's status now, as the server says."""
        return (await self.refresh()).status

    async def cancel(self) -> bool:
        """Cancel the task if it has not ended.

        Returns:
            True if the server cancelled it on this request, False if it had already ended.
        """
        cancelled, view = await self._client._cancel(self._view.task_id)
        self._view = view
        return cancelled

    async def result(self, timeout: float | None = None) -> RemoteTaskResult:
        """Wait until the task ends and return its result.

        Args:
            timeout: Seconds to wait at most; None waits as long as the task takes.

        Raises:
            TaskTimeoutError: If ``timeout`` passes first (the task goes on running), or the
                task itself timed out.
            TaskFailedError, TaskCancelledError: If the task ended so.
            ServiceError: If the server cannot be reached through every retry, or refuses.
        """
        view = self._view
        if not view.done:
            view = self._view = await self._client._wait(view.task_id, timeout)
            if not view.done:
                raise TaskTimeoutError(
                    view.task_id,
                    f"task {view.task_id} ({view.name!r}) did not finish within {timeout} s "
                    "of waiting; it is still running",
                )
        if view.status is TaskStatus.COMPLETED:
            return RemoteTaskResult.of(view)
        raise error_of_task(view)

    def __await__(self) -> Generator[Any, None, RemoteTaskResult]:
        return self.result().__await__()

    def __repr__(self) -> str:
        v = self._view
        return f"<RemoteTaskHandle {v.task_id} {v.name!r} key={v.key!r} {v.status.value}>"


class SchedulerClient:
    """A client of a scheduler service (``logosq serve``), with the task API users know.

    Use it in ``async with`` (or call :meth:`aclose`)::

        async with SchedulerClient("http://127.0.0.1:8765", token) as client:
            handle = await client.submit(Task.quantum("bell").with_circuit(qc).with_shots(1000))
            print((await handle).counts)

    Quantum tasks are built as for a local scheduler (``Task.quantum(...)``); classical work
    runs only as a function registered on the server (:meth:`submit_function`), VQE and QAOA
    by their parameters (:meth:`submit_vqe`, :meth:`submit_qaoa`). Every request is retried
    on a dropped connection, a time-out or a server error (5xx) with back-off, and every
    submit carries a client key, so that a retry never makes a second task.

    Args:
        url: The service's base URL (``http://host:port``; ``https://`` with TLS).
        token: The user's API token (``logosq token`` makes one).
        timeout: Seconds a request may take (a long-poll gets its wait on top).
        retries: How many times a failed request is sent again, or a :class:`RetryPolicy`.
        poll_wait: Seconds one long-poll asks the server to hold a wait (at most 60).
        batch_size: Tasks per batch request in :meth:`submit_many` (the server's max_batch).
        verify: TLS verification: True (the system's CAs), an ``ssl.SSLContext`` (for a
            server's own CA: ``ssl.create_default_context(cafile=...)``), or False.

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
        parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidConfigError("url", f"must be an http:// or https:// URL, got {url!r}")
        if not isinstance(token, str) or not token or not token.isprintable():
            raise InvalidConfigError("token", "must be the API token, a non-empty string")
        if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
            raise InvalidConfigError("timeout", f"must be positive seconds, got {timeout!r}")
        if not isinstance(poll_wait, (int, float)) or not 0 < poll_wait <= _MAX_WAIT:
            raise InvalidConfigError("poll_wait", f"must be in (0, 60] seconds, got {poll_wait!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InvalidConfigError("batch_size", f"must be a positive int, got {batch_size!r}")
        self._url = url.rstrip("/")
        self._retry = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries)
        self._timeout = float(timeout)
        self._poll_wait = float(poll_wait)
        self._batch_size = batch_size
        self._http = httpx.AsyncClient(
            base_url=self._url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=self._timeout,
            verify=verify,
        )
        self._closed = False
        # The loop the client first ran on: httpx's connections belong to it, and the remote
        # primitives hand their jobs to it from other threads.
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        """The service's base URL."""
        return self._url

    async def __aenter__(self) -> SchedulerClient:
        self._bind()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's connections. Tasks on the server go on; reattach with
        ``client.task(key)`` from another client."""
        self._closed = True
        await self._http.aclose()

    # --- submitting -----------------------------------------------------------------------

    async def submit(self, task: TaskBuilder[Any] | TaskRequest) -> RemoteTaskHandle:
        """Submit a task and return its handle once the server has accepted it.

        Args:
            task: A quantum task's builder (``Task.quantum(name).with_circuit(qc)...``), a
                hybrid one running the workflows' VQE or QAOA
                (``Task.hybrid(name).with_algorithm(VQE(h, ansatz))``), or a
                :class:`TaskRequest`.

        Returns:
            The task's handle; a task whose key the server knew already is that task's.

        Raises:
            InvalidTaskError: If the task cannot travel (a classical function, a local-only
                setting) or the server refused it (:class:`InvalidRequestError`, naming the
                field).
            KeyReusedError: Its key names a different task of the user's on the server
                (never retried; ``.task_id`` is that task).
            QuotaExceededError: Over a quota (``.limit`` says which, ``.retry_after`` when).
            PermissionDeniedError: A priority above the user's ceiling.
            AuthenticationError: A wrong or missing token.
            ServiceUnavailableError: The server could not be reached through every retry.
                The same builder submitted again finds the task if the first try made one.
        """
        request = task if isinstance(task, TaskRequest) else TaskRequest.of(task)
        key = request.key or new_key()
        data = await self._request("POST", "/v1/tasks", body=request.to_json(key))
        return RemoteTaskHandle(self, view_of(data))

    async def submit_function(
        self,
        function: str,
        *args: JSON,
        kwargs: Mapping[str, JSON] | None = None,
        name: str | None = None,
        key: str | None = None,
        priority: TaskPriority | str = TaskPriority.NORMAL,
        timeout: float | None = None,
        metadata: Mapping[str, JSON] | None = None,
    ) -> RemoteTaskHandle:
        """Run ``function``, a name in the server's ``[functions]``, with JSON arguments
        (``await client.submit_function("square", 3)``). Never code or a pickle.

        Raises:
            InvalidTaskError: If the server has no such function, or an argument is not JSON.
            And as :meth:`submit`.
        """
        return await self.submit(
            TaskRequest.function(
                function,
                *args,
                kwargs=kwargs,
                name=name,
                key=key,
                priority=priority,
                timeout=timeout,
                metadata=metadata,
            )
        )

    async def submit_vqe(
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
    ) -> RemoteTaskHandle:
        """Run a VQE on the server, by its parameters (see :meth:`TaskRequest.vqe`); the
        result's value holds ``"energy"`` and ``"parameters"``.

        Raises:
            As :meth:`submit`.
        """
        return await self.submit(
            TaskRequest.vqe(
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
        )

    async def submit_qaoa(
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
    ) -> RemoteTaskHandle:
        """Run a QAOA on the server for a diagonal Hamiltonian (see :meth:`TaskRequest.qaoa`).

        Raises:
            As :meth:`submit`.
        """
        return await self.submit(
            TaskRequest.qaoa(
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
        )

    async def submit_many(
        self, tasks: Iterable[TaskBuilder[Any] | TaskRequest]
    ) -> list[RemoteTaskHandle]:
        """Submit tasks through the batch endpoint, ``batch_size`` per request, and return
        their handles in order.

        Each batch is validated whole by the server: one bad task refuses its batch with an
        :class:`InvalidRequestError` whose ``index`` is the task's position in ``tasks``.
        Batches sent before it stay submitted (their handles are lost with the error, but
        their tasks keep their keys: submit the same requests again to get them).

        Raises:
            As :meth:`submit`.
        """
        requests = [t if isinstance(t, TaskRequest) else TaskRequest.of(t) for t in tasks]
        bodies = [r.to_json(r.key or new_key()) for r in requests]
        handles: list[RemoteTaskHandle] = []
        start = 0
        while start < len(bodies):
            chunk = bodies[start : start + self._batch_size]
            try:
                data = await self._request("POST", "/v1/tasks/batch", body={"tasks": chunk})
            except InvalidRequestError as exc:
                # A server whose max_batch is below batch_size refuses the whole batch (so
                # nothing of it was made) and says its limit: send batches of that size.
                allowed = exc.body.get("max_batch")
                if isinstance(allowed, int) and 0 < allowed < len(chunk):
                    self._batch_size = allowed
                    continue
                if exc.index is not None:
                    exc.index += start  # its position in ``tasks``, not in the chunk
                raise
            except KeyReusedError as exc:
                if exc.index is None or not start:
                    raise
                raise KeyReusedError(exc.key, exc.task_id, index=exc.index + start) from None
            try:
                views = [view_of(v) for v in data["tasks"]]
            except (KeyError, TypeError) as exc:
                raise ServiceError(f"the server's batch answer has no task list: {exc}") from exc
            handles.extend(RemoteTaskHandle(self, v) for v in views)
            start += len(chunk)
        return handles

    # --- finding tasks again --------------------------------------------------------------

    async def task(self, ref: int | str, *, user: str | None = None) -> RemoteTaskHandle:
        """The handle of a task of this user, by its id (an int) or its client key (a str):
        from any client, also after this one or the server restarted.

        Args:
            ref: The task's id or client key.
            user: For an admin: whose key ``ref`` is (keys are per user).

        Raises:
            UnknownTaskError: If this user has no such task (another user's task included:
                the server never says it exists).
            PermissionDeniedError: If a non-admin names a ``user``.
        """
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise TypeError(f"a task is found by its id (int) or key (str), got {ref!r}")
        if isinstance(ref, int):
            return RemoteTaskHandle(self, await self._get_view(ref, wait=0.0))
        path = "/v1/tasks/key/" + urllib.parse.quote(ref, safe="/")
        params = None if user is None else {"user": user}
        data = await self._request("GET", path, params=params, ref=ref)
        return RemoteTaskHandle(self, view_of(data))

    async def tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        priority: TaskPriority | str | None = None,
        user: str | None = None,
        limit: int = 100,
    ) -> list[TaskView]:
        """This user's tasks (an admin's: everyone's, or ``user``'s), newest first, at most
        ``limit``, following the server's pages.

        Raises:
            PermissionDeniedError: If a non-admin names another user.
        """
        params: dict[str, str] = {}
        if status is not None:
            params["status"] = status.value if isinstance(status, TaskStatus) else str(status)
        if priority is not None:
            params["priority"] = (
                priority.name.lower() if isinstance(priority, TaskPriority) else str(priority)
            )
        if user is not None:
            params["user"] = user
        out: list[TaskView] = []
        cursor: str | None = None
        while len(out) < limit:
            page = dict(params, limit=str(min(limit - len(out), 1000)))
            if cursor is not None:
                page["cursor"] = cursor
            data = await self._request("GET", "/v1/tasks", params=page)
            out.extend(view_of(v) for v in data.get("tasks", ()))
            # A page filtered by status may hold fewer views than asked for, even none,
            # while more pages follow: only a missing cursor ends the listing.
            cursor = data.get("next_cursor")
            if not cursor:
                break
        return out[:limit]

    # --- the service ----------------------------------------------------------------------

    async def backends(self) -> list[BackendView]:
        """The server's backends with their queues and breaker states."""
        data = await self._request("GET", "/v1/backends")
        return [backend_of(b) for b in data]

    async def me(self) -> AccountView:
        """The token's user: groups, admin or not, priority ceiling, quotas and usage."""
        return account_of(await self._request("GET", "/v1/me"))

    async def stats(self) -> dict[str, JSON]:
        """The server's statistics (``GET /v1/stats``), as its JSON."""
        data = await self._request("GET", "/v1/stats")
        if not isinstance(data, dict):
            raise ServiceError("the server's statistics are not a JSON object")
        return data

    # --- internals: every request passes here ---------------------------------------------

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise SchedulerError(
                "a SchedulerClient is used on the event loop it first ran on; make one per "
                "loop, or use BlockingSchedulerClient from synchronous code"
            )

    async def _get_view(self, task_id: int, *, wait: float) -> TaskView:
        params = {"wait": f"{wait:.3f}"} if wait > 0 else None
        data = await self._request(
            "GET", f"/v1/tasks/{task_id}", params=params, ref=task_id, extra_time=wait
        )
        return view_of(data)

    async def _wait(self, task_id: int, timeout: float | None) -> TaskView:
        """Long-poll until the task ends or ``timeout`` passes; the last view."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            wait = self._poll_wait
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            try:
                view = await self._get_view(task_id, wait=max(wait, 0.0))
            except ServiceUnavailableError as exc:
                # The server is away (a restart takes seconds, more than the retries of one
                # request): the task lives in its journal, so the wait goes on until its own
                # deadline, if it has one.
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise
                log.warning("task %d: the server is unreachable, waiting for it: %s", task_id, exc)
                pause = self._retry.max_backoff
                await asyncio.sleep(pause if left is None else min(pause, left))
                continue
            except InvalidRequestError as exc:
                # A server whose max_wait is below poll_wait refuses the wait: ask for what
                # it says it allows, or for less until it accepts.
                if wait <= _MIN_WAIT:
                    raise
                allowed = exc.body.get("max_wait")
                self._poll_wait = (
                    float(allowed)
                    if isinstance(allowed, (int, float)) and 0 < allowed < wait
                    else max(_MIN_WAIT, wait / 2)
                )
                continue
            if view.done or (deadline is not None and time.monotonic() >= deadline):
                return view

    async def _cancel(self, task_id: int) -> tuple[bool, TaskView]:
        data = await self._request(
            "POST", f"/v1/tasks/{task_id}/cancel", ref=task_id, accept_conflict=True
        )
        if data is None:  # 409: it had ended already
            return False, await self._get_view(task_id, wait=0.0)
        return True, view_of(data)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: JSON = None,
        params: Mapping[str, str] | None = None,
        ref: int | str | None = None,
        extra_time: float = 0.0,
        accept_conflict: bool = False,
    ) -> JSON:
        """Send a request, retrying what the retry policy allows; the decoded JSON answer
        (None for an accepted 409).

        Raises:
            SchedulerClosedError: If the client is closed.
            ServiceUnavailableError: If no attempt got an answer other than a server error.
            SchedulerError: The error a refusal maps to (:func:`error_of_problem`).
        """
        if self._closed:
            raise SchedulerClosedError("the client is closed: make a new SchedulerClient")
        self._bind()
        timeout = self._timeout + extra_time
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = await self._http.request(
                    method, path, json=body, params=params, timeout=timeout
                )
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if _tls_refused(exc):
                    # A certificate that does not verify will not verify on a retry either.
                    raise ServiceError(
                        f"TLS to {self._url} failed: {exc}. For a server with its own CA give "
                        "verify=ssl.create_default_context(cafile=...)"
                    ) from exc
                failure: Exception = exc
                what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                status = response.status_code
                if status < 400:
                    return response.json()
                if status == 409 and accept_conflict:
                    return None
                problem = _problem_of(response)
                if not is_retryable_status(status):
                    raise error_of_problem(
                        status, problem, retry_after=response.headers.get("Retry-After"), ref=ref
                    )
                failure = error_of_problem(status, problem)
                what = f"HTTP {status}: {failure}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            delay = self._retry.delay(attempt, retry_after)
            if delay is None:
                again = (
                    ". A submit may be sent again: its key finds the task if one was made"
                    if method == "POST" and path.startswith("/v1/tasks")
                    else ""
                )
                raise ServiceUnavailableError(
                    f"{method} {self._url}{path} failed on all {attempt + 1} attempts; the "
                    f"last: {what}{again}",
                    status=getattr(failure, "status", None),
                ) from failure
            attempt += 1
            await asyncio.sleep(delay)

    def __repr__(self) -> str:
        return f"<SchedulerClient {self._url}{' closed' if self._closed else ''}>"


def _tls_refused(exc: BaseException) -> bool:
    """Whether a connection failed on the server's certificate."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _problem_of(response: httpx.Response) -> dict[str, JSON]:
    """The RFC 9457 body of a refusal, or what can be said of a body that is not one."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    text = response.text.strip()[:200]
    return {"status": response.status_code, "detail": text or response.reason_phrase}
