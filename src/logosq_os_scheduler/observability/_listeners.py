"""Several observers on the core's one transition hook.

:class:`~logosq_os_scheduler.core.SchedulerCore` calls a single ``listener(task, old, new, now)``
after every status change, and keeps a chain when several want it
(:meth:`~logosq_os_scheduler.core.SchedulerCore.add_listener`). A scheduler publishes that stream
as :meth:`~logosq_os_scheduler.QuantumScheduler.add_listener`; recorders, progress bars, loggers,
the journal and the service attach through :func:`add_listener`, which takes either, and leave
through :func:`remove_listener`, which takes out only their own. Observers see the scheduler
through the :class:`~logosq_os_scheduler._protocols.EventSource` protocol: the stream and the
clock, never the runtime's insides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core import ListenerChain

if TYPE_CHECKING:
    from .._protocols import EventSource
    from ..core._core import TransitionListener

__all__ = ["ListenerChain", "add_listener", "event_source", "remove_listener"]


def event_source(target: object) -> EventSource:
    """``target`` as an :class:`~logosq_os_scheduler._protocols.EventSource`.

    Raises:
        TypeError: If ``target`` is neither a scheduler nor a core.
    """
    if not (
        callable(getattr(target, "add_listener", None))
        and callable(getattr(target, "remove_listener", None))
        and hasattr(target, "clock")
        and hasattr(target, "started_at")
    ):
        raise TypeError(
            f"expected a QuantumScheduler or a SchedulerCore, got {type(target).__name__}; "
            "for a BlockingScheduler pass its .scheduler"
        )
    return target  # type: ignore[return-value]


def add_listener(target: EventSource, listener: TransitionListener) -> None:
    """Make ``listener`` see every status change of ``target`` (a scheduler or a core), after
    the listeners already attached.

    Call it on the scheduler's event-loop thread (or before the scheduler starts).

    Raises:
        TypeError: If ``target`` is neither a scheduler nor a core.
    """
    event_source(target).add_listener(listener)


def remove_listener(target: EventSource, listener: TransitionListener) -> bool:
    """Stop ``listener`` seeing status changes; the other listeners stay.

    Returns:
        True if it was attached (and now is not), False if it was not attached.
    """
    return event_source(target).remove_listener(listener)
