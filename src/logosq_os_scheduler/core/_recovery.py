"""What a restarted scheduler does with each task its journal says was unfinished.

A pure decision, like the rest of ``core/``: it takes what the journal recorded of a task and
returns what to do. The runtime carries it out.

====================================  ========================  ==========================
Recorded                              Decision                  The result says
====================================  ========================  ==========================
queued (never started)                REQUEUE, same priority,   None: it runs once, as
                                      order and age             if nothing had happened
running, classical, restartable       RERUN from the start      ``recovery="rerun"``
running, classical, not restartable   FAIL with                 (the error says why)
                                      InterruptedByRestartError
running, hybrid algorithm (VQE,       RESUME from the state it  ``recovery="resumed"``
QAOA) with a saved state              saved last (an iteration)
running, hybrid algorithm, no state   RERUN from the start      ``recovery="rerun"``
running, quantum, job ID known,       REATTACH by job ID        ``recovery="reattached"``
backend can reattach, a slot free
running, quantum, intent written but  RESEND with the same      ``recovery="resent"``
no job ID, backend remembers keys     idempotency key
running, quantum, otherwise           RERUN (the job died with  ``recovery="rerun"``
                                      the process, or may have
                                      run: the result says so)
====================================  ========================  ==========================

A quantum task waits aside, admitted nowhere, while :func:`waits_for_backend` says so: until
a backend is registered at all, until the backend its job went to is back (its job's fate is
decided with that backend), and while no registered backend can run it.
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["RecoveryAction", "RecoveryFacts", "decide_recovery", "waits_for_backend"]


class RecoveryAction(enum.Enum):
    """What to do with a task that was unfinished when its scheduler died."""

    REQUEUE = "requeued"
    RERUN = "rerun"
    FAIL = "failed"
    REATTACH = "reattached"
    RESEND = "resent"
    RESUME = "resumed"


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryFacts:
    """What the journal recorded of one unfinished task, and what its backend can do.

    Attributes:
        running: Whether it had started (its status was running when the scheduler died).
        quantum: Whether it is a quantum task (its work was a backend job).
        restartable: Whether it was marked safe to run twice (``with_restartable``).
        job_id: The backend's ID of the job it was in, if the backend acknowledged one.
        job_intent: Whether a job with it was about to be sent (intent written).
        can_reattach: Whether that backend can collect a job by ID after a restart.
        remembers_keys: Whether that backend never runs an idempotency key twice.
        algorithm: Whether it is a hybrid algorithm's task (VQE, QAOA): work inside the
            scheduler, with no side effects outside it, so always safe to run again.
        saved_state: Whether its code saved a state to go on from (``save_state``).
        slot_free: Whether its job's backend has a slot free to collect the job in now
            (a reattached job holds one); without one the job is not collected.
    """

    running: bool
    quantum: bool
    restartable: bool = False
    job_id: str | None = None
    job_intent: bool = False
    can_reattach: bool = False
    remembers_keys: bool = False
    algorithm: bool = False
    saved_state: bool = False
    slot_free: bool = True


def decide_recovery(facts: RecoveryFacts) -> RecoveryAction:
    """The action for one unfinished task (see the module's table)."""
    if not facts.running:
        return RecoveryAction.REQUEUE
    if facts.saved_state:
        return RecoveryAction.RESUME
    if not facts.quantum:
        if facts.algorithm:
            return RecoveryAction.RERUN
        return RecoveryAction.RERUN if facts.restartable else RecoveryAction.FAIL
    if facts.job_id is not None and facts.can_reattach and facts.slot_free:
        return RecoveryAction.REATTACH
    if facts.job_intent and facts.remembers_keys:
        return RecoveryAction.RESEND
    return RecoveryAction.RERUN


def waits_for_backend(
    *,
    quantum: bool,
    backends_registered: bool,
    in_job: bool,
    job_backend_back: bool = False,
    routable: bool = True,
) -> bool:
    """Whether a recovered task waits aside for a backend rather than being admitted now.

    Args:
        quantum: Whether it is a quantum task (other tasks never wait for a backend).
        backends_registered: Whether any backend is registered. With none (as at a start) it
            waits for the program to register its own, rather than go to the default
            simulator a plain submit would start.
        in_job: Whether it was in a backend job when its scheduler stopped.
        job_backend_back: For such a task, whether that backend (by name) is registered now.
        routable: Whether routing found a backend for it (False: none registered can run it).
    """
    if not quantum:
        return False
    if in_job:
        return not job_backend_back
    return not backends_registered or not routable
