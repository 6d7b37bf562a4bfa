"""The state machine of a task: which moves are allowed.

Every status change of a submitted task goes through :meth:`SchedulerCore.transition`, which
checks the move against :data:`ALLOWED` and raises :class:`InternalError` on an illegal one.

::

    PENDING ──admit──▶ QUEUED ──start──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED | TIMED_OUT
                         ▲  │                │  │
                         │  └─▶ CANCELLED,   │  └─preempt─▶ PREEMPTED ──resume──▶ RUNNING
                         │      TIMED_OUT,   │                 │
                         │      FAILED       │                 └─▶ QUEUED, or a terminal state
                         └────retry / requeue┘
"""

from __future__ import annotations

from .._task import TERMINAL, TaskStatus

__all__ = ["ALLOWED", "TERMINAL"]

_S = TaskStatus


ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    _S.PENDING: frozenset({_S.QUEUED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED, _S.TIMED_OUT, _S.FAILED}),
    _S.RUNNING: frozenset({_S.QUEUED, _S.PREEMPTED} | TERMINAL),
    _S.PREEMPTED: frozenset({_S.RUNNING, _S.QUEUED} | TERMINAL),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.TIMED_OUT: frozenset(),
}
