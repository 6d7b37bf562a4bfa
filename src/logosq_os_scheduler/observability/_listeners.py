"""Several observers on the core's one transition hook.

:class:`~logosq_os_scheduler.core.SchedulerCore` calls a single ``listener(task, old, new, now)``
after every status change. Recorders, progress bars and loggers each want to see those changes,
so they attach through :func:`add_listener`, which chains whatever is already there, and leave
through :func:`remove_listener`, which takes out only their own.

A chain is an immutable tuple replaced on every change, so a change made while the core is
inside a call never alters the call in progress. With one observer no chain is built: the core
calls it directly, which keeps the hot path at one call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._task import Task, TaskStatus
from ..core import SchedulerCore

if TYPE_CHECKING:
    from .._protocols import CoreOwner
    from ..core._core import TransitionListener

__all__ = ["ListenerChain", "add_listener", "core_of", "remove_listener"]


class ListenerChain:
    """Calls several transition listeners in the order they were added.

    Args:
        listeners: The listeners, first called first.
    """

    __slots__ = ("listeners",)

    def __init__(self, listeners: tuple[TransitionListener, ...]) -> None:
        self.listeners = listeners

    def __call__(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        for listener in self.listeners:
            listener(task, old, new, now)

    def __repr__(self) -> str:
        return f"<ListenerChain of {len(self.listeners)}>"


def core_of(target: CoreOwner | SchedulerCore) -> SchedulerCore:
    """The scheduling core of a scheduler (or the core itself).

    Raises:
        TypeError: If ``target`` is neither.
    """
    if isinstance(target, SchedulerCore):
        return target
    core = getattr(target, "_core", None)
    if not isinstance(core, SchedulerCore):
        raise TypeError(
            f"expected a QuantumScheduler or a SchedulerCore, got {type(target).__name__}; "
            "for a BlockingScheduler pass its .scheduler"
        )
    return core


def add_listener(target: CoreOwner | SchedulerCore, listener: TransitionListener) -> None:
    """Make ``listener`` see every status change, after the listeners already attached.

    Call it on the scheduler's event-loop thread (or before the scheduler starts).
    """
    core = core_of(target)
    current = core.listener
    if current is None:
        core.listener = listener
    elif isinstance(current, ListenerChain):
        core.listener = ListenerChain((*current.listeners, listener))
    else:
        core.listener = ListenerChain((current, listener))


def remove_listener(target: CoreOwner | SchedulerCore, listener: TransitionListener) -> bool:
    """Stop ``listener`` seeing status changes; the other listeners stay.

    Returns:
        True if it was attached (and now is not), False if it was not attached.
    """
    core = core_of(target)
    current = core.listener
    if current is None:
        return False
    if isinstance(current, ListenerChain):
        # Bound methods compare equal when they bind the same function to the same object.
        rest = tuple(fn for fn in current.listeners if fn != listener)
        if len(rest) == len(current.listeners):
            return False
        core.listener = None if not rest else rest[0] if len(rest) == 1 else ListenerChain(rest)
        return True
    if current == listener:
        core.listener = None
        return True
    return False
