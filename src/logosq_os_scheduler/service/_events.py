"""Live updates: every status change of a task, fanned out to server-sent-event streams.

The hub is one more observer on the core's transition hook, attached with
:func:`~logosq_os_scheduler.observability._listeners.add_listener` beside the journal's and the
metrics' own: it sees every change on the scheduler's loop, in order. With no stream open it
returns at once, so a server nobody watches pays one call per change.

Each stream has a bounded queue; a client that reads too slowly loses the oldest task events
and is told how many with a ``lagged`` event (the stats event each second still reaches it),
so a slow reader can never hold the server's memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from .._task import Task, TaskStatus
from ._wire import owner_of

__all__ = ["EventHub", "Subscription"]

_QUEUE = 1024


class Subscription:
    """One open event stream: the task views waiting to be sent to it.

    Invariant: ``len(pending) <= _QUEUE``; ``dropped`` counts the views let go to keep it so.
    """

    __slots__ = ("admin", "dropped", "pending", "user", "wake")

    def __init__(self, user: str, admin: bool) -> None:
        self.user = user
        self.admin = admin
        self.pending: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self.wake = asyncio.Event()

    def push(self, view: dict[str, Any]) -> None:
        if len(self.pending) >= _QUEUE:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append(view)
        self.wake.set()


class EventHub:
    """Fans task status changes out to the open streams that may see them.

    Args:
        render: Makes a task's view (called once per change, only if someone watches).
    """

    def __init__(self, render: Callable[[Task[Any]], dict[str, Any]]) -> None:
        self._render = render
        self._subscriptions: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, user: str, admin: bool) -> Subscription:
        """Open a stream for ``user`` (an admin sees every task)."""
        sub = Subscription(user, admin)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Close a stream."""
        self._subscriptions.discard(sub)

    def wake_all(self) -> None:
        """Wake every stream (the server is closing: they end)."""
        for sub in self._subscriptions:
            sub.wake.set()

    def listener(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        """The transition listener (see ``observability._listeners``)."""
        if not self._subscriptions:
            return
        owner = owner_of(task)
        if owner is None:
            return  # not a task this server made (a VQE's own circuits)
        view: dict[str, Any] | None = None
        for sub in self._subscriptions:
            if sub.admin or sub.user == owner:
                if view is None:
                    view = self._render(task)
                sub.push(view)
