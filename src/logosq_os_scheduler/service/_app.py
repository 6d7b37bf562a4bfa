"""The HTTP API: a Starlette app whose routes ask :class:`~._service.Service`.

Each route is a plain async function of the request and the authenticated user; the
:func:`_endpoint` wrapper is the one place that authenticates (Starlette's counterpart of a
dependency), decodes, and turns every refusal into an RFC 9457 problem. Any other exception
is logged and answered with a 500 problem: the server keeps serving whatever a client sends.

The scheduler is started in the app's lifespan, on the loop uvicorn serves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .._errors import InvalidRequestError, PermissionDeniedError, SchedulerError
from .._task import TaskStatus
from ._config import ServiceConfig, UserSettings
from ._openapi import openapi_document
from ._problems import Problem, problem_for
from ._service import BatchItemError, Service
from ._wire import PRIORITIES, BatchRequest, TaskRequest

__all__ = ["create_app"]

log = logging.getLogger("logosq_os_scheduler.service")

_encode = msgspec.json.Encoder().encode
_task_decoder = msgspec.json.Decoder(TaskRequest)
_batch_decoder = msgspec.json.Decoder(BatchRequest)
_STATUSES = {s.value: s for s in TaskStatus if s is not TaskStatus.PENDING}

Handler = Callable[[Request, Service, UserSettings], Awaitable[Response]]


class JSON(Response):
    """A JSON response encoded with msgspec."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


def _problem_response(problem: Problem) -> Response:
    return Response(
        _encode(problem.body),
        status_code=problem.status,
        headers=problem.headers,
        media_type="application/problem+json",
    )


def _bad_request(
    detail: str, *, status: int = 400, slug: str = "bad-request", field: str = "request"
) -> Problem:
    title = "Malformed request" if status == 400 else "Invalid request"
    return Problem(status, slug, title, detail, error="InvalidRequestError", field=field)


def _endpoint(
    handler: Handler, *, auth: bool = True, admin: bool = False, query_token: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a route: authenticate (the dependency every /v1 route has), then map errors."""

    async def endpoint(request: Request) -> Response:
        service: Service = request.app.state.service
        try:
            user = None
            if auth:
                user = service.accounts.authenticate(_token(request, query_token))
                if admin and not user.admin:
                    raise PermissionDeniedError(f"{request.url.path} is for admins only")
            return await handler(request, service, user)  # type: ignore[arg-type]
        except Problem as problem:
            return _problem_response(problem)
        except BatchItemError as exc:
            return _problem_response(problem_for(exc.error, index=exc.index))
        except SchedulerError as exc:
            return _problem_response(problem_for(exc))
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is there to read it
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return _problem_response(
                Problem(
                    500,
                    "internal",
                    "Internal server error",
                    "the server failed on this request; it has been logged and the server "
                    "goes on serving",
                    error="InternalError",
                )
            )

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _token(request: Request, query_token: bool) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if query_token:
        return request.query_params.get("token")
    return None


async def _body(request: Request, service: Service) -> bytes:
    """The request body, refused (413) as soon as it passes ``server.max_body_bytes``."""
    limit = service.config.server.max_body_bytes
    declared = request.headers.get("content-length")
    too_large = InvalidRequestError(
        f"the request body is larger than this server accepts ({limit} bytes, "
        "server.max_body_bytes): send fewer tasks per batch or smaller circuits",
        field="body",
        status=413,
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field, index = _blame(message)
        problem = _bad_request(
            f"invalid request: {message}", status=422, slug="invalid-request", field=field
        )
        if index is not None:
            problem.body["index"] = index
        raise problem from exc
    except msgspec.DecodeError as exc:
        raise _bad_request(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise _bad_request(
            "the body is nested too deeply to read", status=422, slug="invalid-request"
        ) from exc


# msgspec says where: "Object contains unknown field `colour` - at `$.tasks[1].run_options`".
_WHERE = re.compile(r" - at `\$(?:\.tasks\[(\d+)\])?((?:\.\w+)*)`$")
_NAMED = re.compile(r"field `(\w+)`")


def _blame(message: str) -> tuple[str, int | None]:
    """The task field a msgspec validation message blames (the outermost one on its path,
    else the field it names), and the batch index it names, if any."""
    where = _WHERE.search(message)
    index = None
    path: list[str] = []
    if where is not None:
        index = None if where.group(1) is None else int(where.group(1))
        path = [p for p in where.group(2).split(".") if p]
    if path:
        return path[0], index
    named = _NAMED.search(message)
    return (named.group(1) if named else "request"), index


def _wait_seconds(request: Request, service: Service) -> float:
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    limit = service.config.server.max_wait
    if not (0 <= wait <= limit):
        problem = _bad_request(
            f"wait must be a number of seconds between 0 and {limit:g}, got {raw!r}",
            status=422,
            slug="invalid-request",
            field="wait",
        )
        problem.body["max_wait"] = limit
        raise problem
    return wait


# -- routes ---------------------------------------------------------------------------------------


async def healthz(request: Request, service: Service, user: UserSettings) -> Response:
    """Liveness: 200 while the server serves."""
    return JSON({"status": "closing" if service.closing.is_set() else "ok"})


async def submit_task(request: Request, service: Service, user: UserSettings) -> Response:
    """Submit one task (201; 200 with the existing task for a client key already used)."""
    req = _decode(_task_decoder, await _body(request, service))
    [(handle, created)] = service.submit(user, [req])
    await service.scheduler.persisted()
    return JSON(service.view(handle.task), status_code=201 if created else 200)


async def submit_batch(request: Request, service: Service, user: UserSettings) -> Response:
    """Submit several tasks, all or none."""
    req: BatchRequest = _decode(_batch_decoder, await _body(request, service))
    limit = service.config.server.max_batch
    if not req.tasks:
        raise _bad_request("a batch needs at least one task", status=422, slug="invalid-request")
    if len(req.tasks) > limit:
        problem = _bad_request(
            f"a batch holds at most {limit} tasks (server.max_batch), this one {len(req.tasks)}",
            status=422,
            slug="invalid-request",
        )
        problem.body["max_batch"] = limit  # what a client splits its batches to
        raise problem
    results = service.submit(user, req.tasks)
    await service.scheduler.persisted()
    return JSON({"tasks": [service.view(h.task) for h, _created in results]}, status_code=201)


async def get_task(request: Request, service: Service, user: UserSettings) -> Response:
    """A task by id; ``wait=`` long-polls until it ends."""
    wait = _wait_seconds(request, service)
    handle = service.find(user, _task_id(request))
    await service.wait(handle, wait)
    return JSON(service.view(handle.task))


async def get_task_by_key(request: Request, service: Service, user: UserSettings) -> Response:
    """A task by its client key (an admin may add ``user=`` for another user's key)."""
    key: str = request.path_params["key"]
    wait = _wait_seconds(request, service)
    handle = service.find(user, key, owner=request.query_params.get("user"))
    await service.wait(handle, wait)
    return JSON(service.view(handle.task))


async def cancel_task(request: Request, service: Service, user: UserSettings) -> Response:
    """Cancel a task (409 if it had already ended)."""
    handle = service.find(user, _task_id(request))
    if not service.cancel(handle):
        status = handle.status.value
        raise Problem(
            409,
            "conflict",
            "Task already ended",
            f"task {handle.task_id} already ended ({status}); there is nothing to cancel",
            error="InvalidTaskError",
            task_status=status,
        )
    return JSON(service.view(handle.task))


async def list_tasks(request: Request, service: Service, user: UserSettings) -> Response:
    """A page of the user's tasks (an admin's: everyone's), newest first."""
    q = request.query_params
    status = priority = None
    if "status" in q:
        status = _STATUSES.get(q["status"])
        if status is None:
            raise _bad_request(
                f"status must be one of {', '.join(_STATUSES)}, got {q['status']!r}",
                status=422,
                slug="invalid-request",
                field="status",
            )
    if "priority" in q:
        priority = PRIORITIES.get(q["priority"])
        if priority is None:
            raise _bad_request(
                f"priority must be one of {', '.join(PRIORITIES)}, got {q['priority']!r}",
                status=422,
                slug="invalid-request",
                field="priority",
            )
    limit = _int_param(q.get("limit"), "limit", 100, 1, 1000)
    cursor = q.get("cursor")
    before = None if cursor is None else _int_param(cursor, "cursor", 0, 1, 2**62)
    views, next_cursor = service.list_tasks(
        user, of_user=q.get("user"), status=status, priority=priority, before=before, limit=limit
    )
    return JSON({"tasks": views, "next_cursor": None if next_cursor is None else str(next_cursor)})


async def me(request: Request, service: Service, user: UserSettings) -> Response:
    """Who the token belongs to, their quotas and what they use."""
    return JSON(service.me(user))


async def backends(request: Request, service: Service, user: UserSettings) -> Response:
    """The backends, their queues and breakers."""
    return JSON(service.backends())


async def stats(request: Request, service: Service, user: UserSettings) -> Response:
    """Queues, throughput and per-user work."""
    return JSON(service.stats(user))


async def metrics(request: Request, service: Service, user: UserSettings) -> Response:
    """Prometheus text exposition (admin)."""
    try:
        text = service.metrics_text()
    except ImportError as exc:
        raise Problem(
            501,
            "not-implemented",
            "Metrics need an extra",
            "the Prometheus metrics need prometheus-client: "
            "pip install 'logosq-os-scheduler[observability]'",
            error="MissingExtraError",
        ) from exc
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def events(request: Request, service: Service, user: UserSettings) -> Response:
    """Server-sent events: ``task`` on each status change, ``stats`` every second."""
    return StreamingResponse(
        _event_stream(service, user),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _event_stream(service: Service, user: UserSettings) -> AsyncIterator[bytes]:
    sub = service.hub.subscribe(user.name, user.admin)
    loop_time = service.scheduler.clock.now
    try:
        yield b"retry: 2000\n\n"
        yield _sse("stats", service.stats(user))
        next_stats = loop_time() + 1.0
        while not service.closing.is_set():
            timeout = max(0.0, next_stats - loop_time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await sub.wake.wait()
            sub.wake.clear()
            if sub.dropped:
                yield _sse("lagged", {"dropped": sub.dropped})
                sub.dropped = 0
            while sub.pending:
                yield _sse("task", sub.pending.popleft())
            if loop_time() >= next_stats:
                yield _sse("stats", service.stats(user))
                next_stats = loop_time() + 1.0
    finally:
        service.hub.unsubscribe(sub)


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encode(data) + b"\n\n"


_STATIC = Path(__file__).parent / "static"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


# The dashboard talks to its own server only and nothing may frame it; its script sets the
# queue bars' widths through the CSSOM, which style-src 'self' allows. The form is never
# submitted by the browser (the script reads it), so no token can end up in a URL.
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _static_file(name: str) -> Response:
    """A file of the dashboard (package data), by its plain name only."""
    path = _STATIC / name
    media_type = _MEDIA_TYPES.get(path.suffix)
    if (
        "/" in name
        or "\\" in name
        or name.startswith(".")
        or media_type is None
        or not path.is_file()
    ):
        raise Problem(404, "not-found", "No such file", f"the dashboard has no file {name!r}")
    return Response(path.read_bytes(), media_type=media_type, headers=_PAGE_HEADERS)


async def dashboard(request: Request, service: Service, user: UserSettings) -> Response:
    """The dashboard page (it asks for a token and reads the /v1 API with it)."""
    return _static_file("index.html")


async def static(request: Request, service: Service, user: UserSettings) -> Response:
    """The dashboard's scripts and styles."""
    return _static_file(request.path_params["name"])


async def openapi(request: Request, service: Service, user: UserSettings) -> Response:
    """The OpenAPI 3.1 document of this API."""
    return JSON(openapi_document())


def _task_id(request: Request) -> int:
    return _int_param(request.path_params["task_id"], "task_id", 0, 1, 2**62)


def _int_param(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _bad_request(
            f"{name} must be an integer between {low} and {high}, got {raw!r}",
            status=422,
            slug="invalid-request",
            field=name,
        )
    return value


async def _no_route(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (no such path, or not with this method), as problems."""
    status = getattr(exc, "status_code", 404)
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        return _problem_response(Problem(405, "method-not-allowed", "Method not allowed", detail))
    detail = f"no route {request.url.path}: see /openapi.json for the API"
    return _problem_response(Problem(404, "not-found", "No such route", detail))


# -- the app --------------------------------------------------------------------------------------


def create_app(config: ServiceConfig) -> Starlette:
    """The ASGI app serving ``config``; its lifespan starts and closes the scheduler.

    Args:
        config: The server's config (``server.journal`` must be set).

    Raises:
        InvalidConfigError: If the config cannot be served (no journal, a function that does
            not import).
    """
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    routes = [
        Route("/", _endpoint(dashboard, auth=False), methods=["GET"]),
        Route("/static/{name}", _endpoint(static, auth=False), methods=["GET"]),
        Route("/healthz", _endpoint(healthz, auth=False), methods=["GET"]),
        Route("/openapi.json", _endpoint(openapi, auth=False), methods=["GET"]),
        Route("/metrics", _endpoint(metrics, admin=True), methods=["GET"]),
        Route("/v1/tasks", _endpoint(submit_task), methods=["POST"]),
        Route("/v1/tasks", _endpoint(list_tasks), methods=["GET"]),
        Route("/v1/tasks/batch", _endpoint(submit_batch), methods=["POST"]),
        Route("/v1/tasks/key/{key:path}", _endpoint(get_task_by_key), methods=["GET"]),
        Route("/v1/tasks/{task_id}", _endpoint(get_task), methods=["GET"]),
        Route("/v1/tasks/{task_id}/cancel", _endpoint(cancel_task), methods=["POST"]),
        Route("/v1/me", _endpoint(me), methods=["GET"]),
        Route("/v1/backends", _endpoint(backends), methods=["GET"]),
        Route("/v1/stats", _endpoint(stats), methods=["GET"]),
        Route("/v1/events", _endpoint(events, query_token=True), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _no_route, 405: _no_route},
    )
    app.state.service = service
    return app
