"""Users, their tokens and their quotas: pure logic, no I/O.

:class:`Accounts` answers three questions for the HTTP layer: who sent this token
(:meth:`~Accounts.authenticate`), may this user submit at this priority
(:meth:`~Accounts.check_priority`), and does this submit fit the quotas
(:meth:`~Accounts.check_quotas`). It learns of tasks starting and ending through
:meth:`~Accounts.active_changed`, which the server calls from the scheduler's transition
listener, so a task recovered from the journal after a restart counts like any other.

Time comes from the scheduler's :class:`~logosq_os_scheduler.Clock`, so a test drives the
shots window with a :class:`~logosq_os_scheduler.ManualClock`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
from collections import deque
from collections.abc import Mapping

from .._clock import Clock
from .._errors import (
    AuthenticationError,
    InvalidTaskError,
    PermissionDeniedError,
    QuotaExceededError,
)
from .._task import TaskPriority
from ._config import GroupSettings, Quotas, ServiceConfig, UserSettings

__all__ = ["DAY", "Accounts", "Usage", "hash_token", "share_weights"]

DAY = 86_400.0


def hash_token(token: str) -> str:
    """The SHA-256 hex of a token: what the config stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """What a user (or group) holds now: active tasks and the shots of the last 24 hours."""

    active: int
    shots_today: int


class _Window:
    """Shots accepted in the last 24 hours, oldest first.

    Invariant: ``total == sum(shots for _, shots in entries)``, and every entry is younger
    than a day once :meth:`trim` has run.
    """

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def trim(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now - DAY:
            self.total -= entries.popleft()[1]

    def add(self, now: float, shots: int) -> None:
        self.entries.append((now, shots))
        self.total += shots

    def wait_for(self, now: float, needed: int, limit: int) -> float:
        """Seconds until ``needed`` more shots fit under ``limit`` (0 if they fit now)."""
        excess = self.total + needed - limit
        if excess <= 0:
            return 0.0
        for when, shots in self.entries:
            excess -= shots
            if excess <= 0:
                return when + DAY - now
        return DAY


class _Holder:
    """A user's or group's counters."""

    __slots__ = ("active", "window")

    def __init__(self) -> None:
        # Invariant: active == tasks of this holder admitted to the scheduler and not ended.
        self.active = 0
        self.window = _Window()


class Accounts:
    """The server's users, tokens and quota accounting.

    Args:
        config: The server's config (users and groups).
        clock: Where time comes from (the scheduler's clock).
    """

    def __init__(self, config: ServiceConfig, clock: Clock) -> None:
        self._clock = clock
        self._users: Mapping[str, UserSettings] = config.users
        self._groups: Mapping[str, GroupSettings] = config.groups
        self._by_hash = [(bytes.fromhex(u.token_sha256), u) for u in config.users.values()]
        self._holders: dict[tuple[str, str], _Holder] = {}
        # Each user's holders that count a task of theirs: their own, then their groups'.
        self._active_holders: dict[str, tuple[_Holder, ...]] = {}

    def user(self, name: str) -> UserSettings | None:
        """The user of that name, or None."""
        return self._users.get(name)

    @property
    def users(self) -> Mapping[str, UserSettings]:
        """Every user, by name."""
        return self._users

    def authenticate(self, token: str | None) -> UserSettings:
        """The user whose token this is.

        Every known hash is compared, in constant time each, so the time taken does not
        say which user (if any) came close.

        Raises:
            AuthenticationError: If there is no token or no user has it.
        """
        if not token:
            raise AuthenticationError(
                "this request needs an API token: send 'Authorization: Bearer <token>' "
                "(logosq token makes one and the config line for it)"
            )
        digest = hashlib.sha256(token.encode()).digest()
        found: UserSettings | None = None
        for stored, user in self._by_hash:
            if hmac.compare_digest(stored, digest):
                found = user
        if found is None:
            raise AuthenticationError(
                "the API token is not one this server knows: check it, or ask an admin to "
                "add its token_sha256 to the server's config"
            )
        return found

    def check_priority(self, user: UserSettings, priority: TaskPriority) -> None:
        """Raise if ``priority`` is above the user's ceiling.

        Raises:
            PermissionDeniedError: Naming the ceiling.
        """
        if priority > user.priority_ceiling:
            only = (
                " (only an admin may submit CRITICAL)" if priority is TaskPriority.CRITICAL else ""
            )
            raise PermissionDeniedError(
                f"user {user.name!r} may submit at most priority "
                f"{user.priority_ceiling.name.lower()}, this task asks for "
                f"{priority.name.lower()}{only}"
            )

    def check_quotas(self, user: UserSettings, tasks: int, shots: int) -> None:
        """Check that ``tasks`` more active tasks and ``shots`` more shots fit the quotas of
        the user and of each of their groups.

        Nothing is counted here: the active tasks are counted when the scheduler admits them
        (:meth:`active_changed`), the shots by :meth:`charge` once the tasks are submitted.
        The caller checks, submits and charges in one synchronous stretch, so no other
        submit can come in between.

        Raises:
            QuotaExceededError: Naming the first quota that does not fit.
            InvalidTaskError: If ``shots`` is more than a daily shots quota allows at all.
        """
        now = self._clock.now()
        scopes = self._scopes(user)
        for scope, quotas, holder in scopes:
            holder.window.trim(now)
            limit = quotas.max_active
            if limit is not None and holder.active + tasks > limit:
                raise QuotaExceededError(
                    f"{scope} has {holder.active} tasks queued or running and a quota of "
                    f"max_active = {limit}; {tasks} more do not fit: wait for some to finish",
                    limit="max_active",
                    scope=scope,
                    retry_after=1.0,
                )
            limit = quotas.shots_per_day
            if limit is not None and shots:
                if shots > limit:
                    raise InvalidTaskError(
                        "shots",
                        f"{shots} shots are more than the {limit} a day that {scope} may use "
                        "at all: ask for fewer",
                    )
                wait = holder.window.wait_for(now, shots, limit)
                if wait > 0:
                    raise QuotaExceededError(
                        f"{scope} has used {holder.window.total} of {limit} shots in the last "
                        f"24 hours; these {shots} do not fit now, and will in "
                        f"{math.ceil(wait)} s (as shots used earlier leave the window)",
                        limit="shots_per_day",
                        scope=scope,
                        retry_after=wait,
                    )

    def charge(self, user: UserSettings, shots: int) -> None:
        """Count ``shots`` accepted now against the user's and their groups' daily windows."""
        if shots:
            now = self._clock.now()
            for _scope, _quotas, holder in self._scopes(user):
                holder.window.add(now, shots)

    def active_changed(self, user: str, delta: int) -> None:
        """A task of ``user`` was admitted (+1) or ended (-1)."""
        holders = self._active_holders.get(user)
        if holders is None:
            settings = self._users.get(user)
            groups = () if settings is None else settings.groups
            holders = self._active_holders[user] = (
                self._holder("user", user),
                *(self._holder("group", g) for g in groups),
            )
        for holder in holders:
            holder.active += delta

    def usage(self, name: str, *, group: bool = False) -> Usage:
        """What a user (or, with ``group``, a group) holds now."""
        holder = self._holders.get(("group" if group else "user", name))
        if holder is None:
            return Usage(0, 0)
        holder.window.trim(self._clock.now())
        return Usage(holder.active, holder.window.total)

    def _scopes(self, user: UserSettings) -> list[tuple[str, Quotas, _Holder]]:
        out = [(f"user {user.name!r}", user.quotas, self._holder("user", user.name))]
        for group in user.groups:
            out.append(
                (f"group {group!r}", self._groups[group].quotas, self._holder("group", group))
            )
        return out

    def _holder(self, kind: str, name: str) -> _Holder:
        holder = self._holders.get((kind, name))
        if holder is None:
            holder = self._holders[(kind, name)] = _Holder()
        return holder


def share_weights(config: ServiceConfig) -> dict[str, float]:
    """Each user's fair-share weight: their own, times the weight of each of their groups
    divided among its members (a group's weight is what its members share)."""
    members: dict[str, int] = {}
    for user in config.users.values():
        for group in user.groups:
            members[group] = members.get(group, 0) + 1
    out: dict[str, float] = {}
    for user in config.users.values():
        weight = user.weight
        for group in user.groups:
            weight *= config.groups[group].weight / members[group]
        out[user.name] = weight
    return out
