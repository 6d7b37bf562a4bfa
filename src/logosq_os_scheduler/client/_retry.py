"""When a request is tried again, and after how long: the client's retry policy.

Sans-I/O: :class:`RetryPolicy` takes what happened (an attempt number, a status, the
server's ``Retry-After``) and answers with a decision; the client sleeps and resends. Every
request the client makes is safe to send twice (reads, cancels, and submits that carry a
client key), so a lost response or a passing server error is retried rather than reported.
"""

from __future__ import annotations

import dataclasses
import random

from .._errors import InvalidConfigError

__all__ = ["RetryPolicy", "is_retryable_status"]

# 502-504: a proxy or a restarting server; 500 is retried too, since a submit is idempotent
# and a server that failed once on a request may not fail again (a journal write).
_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    """Whether a response with this status is worth sending the same request again."""
    return status in _RETRYABLE_STATUS


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with full jitter, bounded by a number of retries.

    Attributes:
        retries: How many times a request is sent again after the first attempt (0: never).
        backoff: The first retry's upper bound, in seconds; it doubles per retry.
        max_backoff: The bound no delay passes, in seconds.
    """

    retries: int = 5
    backoff: float = 0.1
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise InvalidConfigError("retries", f"must be an integer >= 0, got {self.retries!r}")
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InvalidConfigError(name, f"must be a number of seconds >= 0, got {value!r}")

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float | None:
        """How long to wait before sending again after failed attempt ``attempt`` (0 for the
        first), or None when no retry is left. A server's ``Retry-After`` is honoured (up to
        ``max_backoff``)."""
        if attempt >= self.retries:
            return None
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        bound = min(self.backoff * 2.0**attempt, self.max_backoff)
        # Full jitter: clients that failed together do not come back together.
        return (rng or random).uniform(0.0, bound)
