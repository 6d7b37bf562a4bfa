"""RFC 9457 problem bodies for every refusal, from the SchedulerError family.

One table says which error is which HTTP status; the body carries the error's own message as
``detail`` and its class name as ``error``, so a client can raise the same exception it would
have got from a scheduler in its own process.
"""

from __future__ import annotations

import math
from typing import Any

from .._errors import (
    AuthenticationError,
    InvalidConfigError,
    InvalidTaskError,
    KeyReusedError,
    NoRouteError,
    PermissionDeniedError,
    QueueFullError,
    QuotaExceededError,
    SchedulerClosedError,
    SchedulerError,
    ServiceError,
    ServiceUnavailableError,
    UnknownTaskError,
)

__all__ = ["PROBLEM_BASE", "Problem", "problem_for"]

PROBLEM_BASE = "https://logosq.dev/problems/"

# Most specific first: the first class the error is an instance of decides.
_TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (AuthenticationError, 401, "unauthorized", "Missing or unknown API token"),
    (PermissionDeniedError, 403, "forbidden", "Not allowed for this user"),
    (UnknownTaskError, 404, "not-found", "No such task"),
    (QuotaExceededError, 429, "quota-exceeded", "Quota exceeded"),
    (QueueFullError, 429, "queue-full", "The scheduler's queue is full"),
    (NoRouteError, 422, "no-route", "No backend can run this task"),
    (KeyReusedError, 422, "key-reused", "Client key already used for a different task"),
    (InvalidTaskError, 422, "invalid-task", "Invalid task"),
    (InvalidConfigError, 422, "invalid-task", "Invalid task"),
    (SchedulerClosedError, 503, "unavailable", "The scheduler is closed"),
    (ServiceUnavailableError, 503, "unavailable", "The server is shutting down"),
)


class Problem(Exception):
    """A refusal on its way to the client: the HTTP status and the RFC 9457 body.

    Args:
        status: The HTTP status.
        slug: The last part of the problem type URI.
        title: A short summary, the same for every problem of this type.
        detail: What was wrong with this request, and what to do.
        error: The SchedulerError class name the client may raise.
        headers: Extra response headers (Retry-After).
        extra: Extension members of the body.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        error: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = headers or {}
        self.body: dict[str, Any] = {
            "type": PROBLEM_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
        }
        if error is not None:
            self.body["error"] = error
        self.body.update(extra)


_BY_STATUS = {
    400: ("bad-request", "Malformed request"),
    413: ("too-large", "Request body too large"),
    422: ("invalid-task", "Invalid task"),
}


def problem_for(exc: SchedulerError, *, index: int | None = None) -> Problem:
    """The problem that reports ``exc``; a SchedulerError the table does not name (one the
    scheduler raised about the task itself) is a 422.

    Args:
        exc: The refusal.
        index: The position of the refused task in a batch (said in the body and in front
            of the detail).
    """
    status, slug, title = next(
        ((status, slug, title) for cls, status, slug, title in _TABLE if isinstance(exc, cls)),
        (422, "rejected", "The scheduler refused the task"),
    )
    if isinstance(exc, ServiceError) and exc.status in _BY_STATUS:
        status = exc.status
        slug, title = _BY_STATUS[status]
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, QuotaExceededError):
        retry = max(1, math.ceil(exc.retry_after or 1))
        headers["Retry-After"] = str(retry)
        extra = {"limit": exc.limit, "scope": exc.scope, "retry_after": retry}
    elif isinstance(exc, QueueFullError):
        headers["Retry-After"] = "1"
        extra = {"limit": "max_queue_depth", "retry_after": 1}
    elif isinstance(exc, KeyReusedError):
        extra = {"field": "key", "key": exc.key, "task_id": exc.task_id}
    elif isinstance(exc, InvalidTaskError):
        extra = {"field": exc.field}
    detail = str(exc)
    if index is not None:
        extra["index"] = index
        detail = f"tasks[{index}]: {detail}"
    return Problem(status, slug, title, detail, error=public_name(exc), headers=headers, **extra)


def public_name(exc: BaseException) -> str:
    """The name of the nearest class of ``exc`` that the package exports (a client can raise
    it): ``CircuitParseError`` is reported as ``InvalidTaskError``."""
    import logosq_os_scheduler as package

    public = set(package.__all__)
    for cls in type(exc).__mro__:
        if cls.__name__ in public and getattr(package, cls.__name__, None) is cls:
            name: str = cls.__name__
            return name
    return "SchedulerError"
