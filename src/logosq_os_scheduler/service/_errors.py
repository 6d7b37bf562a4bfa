"""The errors only the service raises, under the package's one root.

::

    SchedulerError
     ├── AuthenticationError      no token, or one the config does not know        (401)
     ├── PermissionDeniedError    the user may not do this (a priority above their
     │                            ceiling, listing another user's tasks, metrics)   (403)
     ├── QuotaExceededError       a quota is used up; names it and when to retry    (429)
     ├── RequestTooLargeError     the body is over server.max_body_bytes            (413)
     └── ServiceUnavailableError  the server is shutting down                       (503)

The scheduler's own errors keep their classes (InvalidTaskError is a 422, UnknownTaskError a
404, QueueFullError a 429): see ``_problems`` for the whole mapping.
"""

from __future__ import annotations

from .._errors import SchedulerError

__all__ = [
    "AuthenticationError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
]


class AuthenticationError(SchedulerError):
    """The request carries no API token, or one that no user of the server has."""


class PermissionDeniedError(SchedulerError):
    """The user is known but may not do what the request asks."""


class QuotaExceededError(SchedulerError):
    """A submit would take a user (or one of their groups) past a quota.

    Attributes:
        limit: The quota's name as the config spells it (``"max_active"``,
            ``"shots_per_day"``).
        scope: Whose quota: ``"user alice"`` or ``"group lab"``.
        retry_after: Seconds after which the same submit may pass (at least 1).
    """

    def __init__(self, limit: str, scope: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.scope = scope
        self.retry_after = retry_after


class RequestTooLargeError(SchedulerError):
    """A request body is larger than the server accepts."""


class ServiceUnavailableError(SchedulerError):
    """The server is shutting down and accepts no new work."""
