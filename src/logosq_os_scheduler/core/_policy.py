"""The quantum half of the policy: batching, work stealing, retries, breakers, withdrawal.

Plain objects over the core's state (:class:`SchedulerCore`, :class:`BackendState`) and the
time they are given. Each method answers one question the runtime would otherwise answer
itself (which job to form next or how long to hold one, whether a failed task retries, moves
or fails, which queued work moves to an idle backend, which job to withdraw for an urgent
task); the runtime carries the answer out. The virtual-time simulator drives the same
object, so what it reports is what the scheduler does.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._config import PreemptionStrategy
from .._errors import (
    BackendError,
    BackendUnavailableError,
    NoRouteError,
    RetriesExhaustedError,
    SchedulerError,
    SimulationTooCostlyError,
)
from .._task import Task, TaskPriority, TaskStatus
from ._backends import BackendState, Flight
from ._core import SchedulerCore
from ._preemption import may_be_preempted
from ._routing import RoutingDecision

__all__ = [
    "FailureKind",
    "Hold",
    "Evacuation",
    "Launch",
    "QuantumPolicy",
    "Retry",
    "RetryAction",
    "RetryMove",
    "Steal",
    "StuckMove",
    "backend_lost",
    "classify_failure",
    "retry_move",
    "when_stuck",
]

_HIGH = TaskPriority.HIGH
_RUNNING = TaskStatus.RUNNING
_PREEMPTIVE = PreemptionStrategy.PREEMPTIVE


class FailureKind(enum.Enum):
    """How a failed job or circuit is treated.

    PERMANENT: not worth retrying (a non-retryable backend error, or the scheduler's own
    refusal); the task fails at once and the backend's breaker does not count it.
    TRANSIENT: retried with back-off; counts against the breaker when the whole job failed.
    UNAVAILABLE: the backend said it is down; it leaves rotation at once and the task moves.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    UNAVAILABLE = "unavailable"


def classify_failure(error: BaseException) -> FailureKind:
    """The :class:`FailureKind` of an error a job or one of its circuits raised."""
    if isinstance(error, BackendUnavailableError):
        return FailureKind.UNAVAILABLE
    if isinstance(error, BackendError):
        return FailureKind.TRANSIENT if error.retryable else FailureKind.PERMANENT
    # Our own refusals (invalid circuits and the like) are never worth retrying; anything
    # else unexpected is.
    return FailureKind.PERMANENT if isinstance(error, SchedulerError) else FailureKind.TRANSIENT


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    """Start a job of up to ``limit`` tasks on ``backend`` now."""

    backend: BackendState
    limit: int


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """Let ``backend``'s partial batch wait for more circuits until ``until``."""

    backend: BackendState
    until: float


@dataclasses.dataclass(frozen=True, slots=True)
class Steal:
    """Move ``tasks`` (queued at ``donor``) to the idle ``thief``."""

    thief: BackendState
    donor: BackendState
    tasks: tuple[Task[Any], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Evacuation:
    """Where the tasks waiting for a backend go when it leaves rotation or is unregistered.

    Attributes:
        moves: Tasks with the routing decision that sends each elsewhere.
        failures: Tasks no other backend can run, when the backend is leaving for good,
            each with the NoRouteError it ends with.
        staying: Tasks that wait for the backend to come back (pinned to it, or no other
            backend can run them while it is only out of rotation).
    """

    moves: tuple[tuple[Task[Any], RoutingDecision], ...]
    failures: tuple[tuple[Task[Any], NoRouteError], ...]
    staying: tuple[Task[Any], ...]


class RetryAction(enum.Enum):
    """FAIL: the task ends FAILED with :attr:`Retry.error`. RETRY: it runs again, on another
    backend first if :attr:`Retry.reroute` finds one, after :attr:`Retry.delay` seconds."""

    FAIL = "fail"
    RETRY = "retry"


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """What becomes of a task whose attempt failed.

    Attributes:
        action: Fail or retry.
        error: For FAIL, the error the task ends with.
        reroute: For RETRY, try another backend first (the task is not pinned and this one
            failed it twice, is out of rotation, is leaving, or is down or hung).
        delay: For RETRY on the same backend, seconds to wait first (jittered back-off).
        elsewhere_only: For RETRY, only on another backend, none it was tried on: this one
            refused the circuit itself (too costly to simulate here), so it ends with
            ``error`` when routing finds no other.
    """

    action: RetryAction
    error: BaseException | None = None
    reroute: bool = False
    delay: float = 0.0
    elsewhere_only: bool = False


class RetryMove(enum.Enum):
    """Where a task that will retry goes, once routing has looked elsewhere (see
    :func:`retry_move`)."""

    ELSEWHERE = "elsewhere"
    """To the queue of the backend routing chose instead (a reroute)."""
    NOW = "now"
    """Back to its backend's queue at once."""
    BACK_OFF = "back_off"
    """Back to its backend's queue once :attr:`Retry.delay` has passed."""
    FAIL_NO_ROUTE = "fail_no_route"
    """Nowhere: its backend was unregistered and no other backend can run it."""
    GIVE_UP = "give_up"
    """Nowhere: only another backend would do (:attr:`Retry.elsewhere_only`) and routing
    found none; it ends with :attr:`Retry.error`."""


def retry_move(
    delay: float, *, routed_elsewhere: bool, backend_removed: bool, elsewhere_only: bool = False
) -> RetryMove:
    """Where a retrying task goes: to the backend routing chose elsewhere if it chose one;
    nowhere if only another backend would do, or if its own backend is gone; else back to its
    backend, after ``delay`` if any.

    Also what happens when a back-off ends (``delay`` 0): the backend may have been
    unregistered meanwhile, and routing is asked again."""
    if routed_elsewhere:
        return RetryMove.ELSEWHERE
    if elsewhere_only:
        return RetryMove.GIVE_UP
    if backend_removed:
        return RetryMove.FAIL_NO_ROUTE
    return RetryMove.BACK_OFF if delay > 0 else RetryMove.NOW


class StuckMove(enum.Enum):
    """What the dispatcher tries when no job can start (see :func:`when_stuck`)."""

    STEAL = "steal"
    """Move queued work to an idle backend (:meth:`QuantumPolicy.plan_steal`)."""
    WITHDRAW = "withdraw"
    """Take back a job waiting unstarted at a backend for an urgent task
    (:meth:`QuantumPolicy.withdrawal_order`)."""


_STUCK_AT_CAP = (StuckMove.WITHDRAW,)
_STUCK = (StuckMove.STEAL, StuckMove.WITHDRAW)


def when_stuck(*, at_cap: bool) -> tuple[StuckMove, ...]:
    """What to try, in order, when no job can start; the dispatcher forms jobs again after
    the first that changes anything.

    At the global cap (``max_concurrent_quantum``) no job can start anywhere, so moving work
    to an idle backend would start nothing: only withdrawing a waiting job for an urgent task
    helps. Otherwise an idle backend takes queued work first (it can start now), and a
    withdrawal comes last (it costs a job its place).
    """
    return _STUCK_AT_CAP if at_cap else _STUCK


def backend_lost(error: BaseException, *, hung: bool) -> bool:
    """Whether a whole job's failure means its tasks should look elsewhere first: the job
    hung (its backend stopped answering), or the backend said it is unavailable."""
    return hung or classify_failure(error) is FailureKind.UNAVAILABLE


class QuantumPolicy:
    """The decisions about quantum work, over one core's state.

    Args:
        core: The core whose settings, counters and pools it reads and updates.
        rng: Where back-off jitter comes from (seed it for reproducible runs).
    """

    __slots__ = ("core", "rng", "flushed_at")

    def __init__(self, core: SchedulerCore, rng: random.Random | None = None) -> None:
        self.core = core
        self.rng = rng if rng is not None else random.Random()
        # Partial batches whose first task was queued at or before this time are not held
        # for the batch window (see flush).
        self.flushed_at = -math.inf

    # -- batching ----------------------------------------------------------------------------

    def room(self) -> float:
        """How many more quantum tasks may be in flight under ``max_concurrent_quantum``."""
        cap = self.core.config.max_concurrent_quantum
        return math.inf if cap is None else cap - self.core.quantum_in_flight

    def flush(self, now: float) -> None:
        """Partial batches queued so far go without waiting out the batch window."""
        self.flushed_at = now

    def next_job(
        self, backends: Iterable[BackendState], now: float, held: set[str]
    ) -> Launch | Hold | None:
        """The next job to form: on the backend whose most urgent waiting task is the most
        urgent of all (ties by arrival), among backends in rotation with a free slot and not
        in ``held``; or how long that backend's partial batch should wait for more circuits.

        A batch is partial when fewer tasks wait than one job carries (or the global cap
        allows). It waits up to ``batch_window`` after its head was queued, unless the head
        is HIGH or CRITICAL, or it was queued before the last :meth:`flush`.

        Returns:
            :class:`Launch`, :class:`Hold`, or None when no backend can start a job (none
            waits, every slot is taken, or the global cap is reached).
        """
        room = self.room()
        if room <= 0:
            return None
        best: BackendState | None = None
        best_key: tuple[int, int] = (99, 0)
        best_head: Task[Any] | None = None
        for state in backends:
            pool = state.pool
            if (
                state.name in held
                or not pool.queue
                or pool.busy >= pool.capacity
                or not state.in_rotation(now)
            ):
                continue
            head = pool.queue.peek(now)
            if head is None:
                continue
            key = (4 - int(head.priority), head.seq)
            if best is None or key < best_key:
                best, best_key, best_head = state, key, head
        if best is None or best_head is None:
            return None
        limit = int(min(best.caps.max_circuits_per_job, room))
        window = self.core.config.batch_window
        if (
            len(best.pool.queue) < limit
            and window > 0
            and best_head.priority < _HIGH
            and now < best_head.enqueued_at + window  # the same sum Hold waits until
            and best_head.enqueued_at > self.flushed_at
        ):
            return Hold(best, best_head.enqueued_at + window)
        return Launch(best, limit)

    # -- work stealing -----------------------------------------------------------------------

    def plan_steal(self, backends: Sequence[BackendState], now: float) -> Steal | None:
        """Queued work an idle backend would finish sooner than the backend it waits for.

        Routing spreads tasks when they arrive; this keeps them spread when backends run at
        different speeds, leave rotation and come back. Each idle backend in turn looks for
        work at the others (:meth:`steal_for`).

        Returns:
            The first move found (one thief, one donor), or None.
        """
        for thief in backends:
            plan = self.steal_for(thief, backends, now)
            if plan is not None:
                return plan
        return None

    def steal_for(
        self, thief: BackendState, donors: Iterable[BackendState], now: float
    ) -> Steal | None:
        """Queued work that the idle ``thief`` would finish sooner than a backend in ``donors``.

        A task moves only if the thief can run it, it is not pinned, the rule that routed it
        allows the thief (a rule naming a backend is kept), it was not tried there before (a
        task rerouted away from a backend is not taken back to it), and its expected
        completion there (one job from now) beats its expected completion where it waits (the
        rounds of jobs ahead of it). Tasks are taken from the back of the queue, where waiting
        is longest.

        Returns:
            The move from the first donor that has such work, or None (also when the thief is
            not idle: it has queued work, no free slot, or is out of rotation).
        """
        tpool = thief.pool
        if tpool.queue or tpool.busy >= tpool.capacity or not thief.in_rotation(now):
            return None
        t_caps = thief.caps
        t_per_job = t_caps.max_circuits_per_job
        want = t_per_job * (tpool.capacity - tpool.busy)
        k = min(want, t_per_job)
        for donor in donors:
            dpool = donor.pool
            n = len(dpool.queue)
            if donor is thief or n < 2:
                continue
            d_per_round = donor.caps.max_circuits_per_job * dpool.capacity
            busy_round = 1 if dpool.busy >= dpool.capacity else 0
            take: list[Task[Any]] = []
            for back, task in enumerate(reversed(dpool.queue)):
                if len(take) >= want:
                    break
                position = n - 1 - back
                shots = task.shots
                rounds = math.ceil((position + 1) / d_per_round) + busy_round
                donor_eta = rounds * donor.job_seconds(t_per_job, shots * t_per_job)
                thief_eta = thief.job_seconds(k, shots * k)
                if thief_eta >= donor_eta:
                    break  # tasks further forward finish sooner where they are
                req = task.requirements
                routing = task.routing
                allowed = routing.allowed if isinstance(routing, RoutingDecision) else None
                tried = task.backends_tried
                if (
                    task.backend is None
                    and (allowed is None or thief.name in allowed)
                    and (req is None or t_caps.check_requirements(req) is None)
                    and (not tried or thief.name not in tried)
                ):
                    take.append(task)
            if take:
                return Steal(thief, donor, tuple(take))
        return None

    def steal(self, plan: Steal) -> None:
        """Carry a :class:`Steal` out in the core: the tasks move, keeping their wait, and
        their routing decisions say why."""
        core = self.core
        thief, donor = plan.thief, plan.donor
        for task in plan.tasks:
            core.move(task, thief.pool, reroute=False)
            routing = task.routing
            if isinstance(routing, RoutingDecision):
                task.routing = dataclasses.replace(
                    routing,
                    backend=thief.name,
                    reason=f"{routing.reason}; moved from busy {donor.name!r} to "
                    f"idle {thief.name!r}, expected to finish sooner (work stealing)",
                )

    # -- evacuation --------------------------------------------------------------------------

    def plan_evacuation(
        self, state: BackendState, route: Callable[[Task[Any]], RoutingDecision]
    ) -> Evacuation:
        """Where the tasks waiting for ``state`` go (it left rotation, or is unregistered when
        ``state.removed``); ``route`` decides a task's backend with ``state`` excluded and
        raises NoRouteError when none can run it. A task pinned to a backend that is only
        out of rotation waits for it."""
        moves: list[tuple[Task[Any], RoutingDecision]] = []
        failures: list[tuple[Task[Any], NoRouteError]] = []
        staying: list[Task[Any]] = []
        for task in list(state.pool.queue):
            if task.backend is not None and not state.removed:
                staying.append(task)
                continue
            try:
                moves.append((task, route(task)))
            except NoRouteError as exc:
                if state.removed:
                    failures.append((task, exc))
                else:
                    staying.append(task)
        return Evacuation(tuple(moves), tuple(failures), tuple(staying))

    # -- failures ----------------------------------------------------------------------------

    def job_failed(self, state: BackendState, error: BaseException, now: float) -> bool | None:
        """A whole job failed on ``state``: count it against the backend's breaker.

        An UNAVAILABLE backend leaves rotation at once; a TRANSIENT failure counts towards
        the breaker's threshold; a PERMANENT one (the job was refused, not the backend
        broken) does not count.

        Returns:
            True if the breaker opened now (a new trip), False if it was open already and
            stays open (the backend is still unavailable), None if it did not open.
        """
        state.failed_attempts += 1
        kind = classify_failure(error)
        if kind is FailureKind.UNAVAILABLE:
            tripped = state.breaker.force_open(now)
            if tripped:
                self.core.breaker_trips += 1
            return tripped
        if kind is FailureKind.TRANSIENT and state.breaker.record_failure(now):
            self.core.breaker_trips += 1
            return True
        return None

    def decide_retry(
        self,
        task: Task[Any],
        state: BackendState,
        error: BaseException,
        now: float,
        *,
        moved: bool = False,
    ) -> Retry:
        """What becomes of ``task`` after its attempt on ``state`` raised ``error``.

        A circuit a backend refused as too costly to simulate there goes to another backend
        that can run it, if the task is not pinned (``elsewhere_only``). Other PERMANENT
        errors fail the task. A task past its retry budget (its own, or
        ``max_retries``) fails with :class:`RetriesExhaustedError`. Otherwise it retries:
        elsewhere first if it is not pinned and ``moved`` (the backend is down or the job
        hung), it failed twice on this backend, or this backend is out of rotation; after a
        back-off drawn uniformly from ``[0, min(retry_backoff_max, retry_backoff * 2**(n-1))]``
        for its ``n``-th failure (full jitter) when it stays.
        """
        if isinstance(error, SimulationTooCostlyError) and task.backend is None:
            # This backend's verdict on the circuit, not the circuit's own fault: another
            # backend that can run it may simulate it cheaper (or is a device). Tried once
            # each, at once; it is placement, not a retry, so the budget does not apply.
            return Retry(RetryAction.RETRY, error, reroute=True, elsewhere_only=True)
        if classify_failure(error) is FailureKind.PERMANENT:
            return Retry(RetryAction.FAIL, error)
        cfg = self.core.config
        budget = task.max_retries if task.max_retries is not None else cfg.max_retries
        if task.attempts > budget:
            exhausted = RetriesExhaustedError(
                task.task_id,
                f"task {task.task_id} ({task.name!r}) failed {task.attempts} attempts "
                f"(retry budget {budget}); last on {state.name!r}: {error}",
            )
            exhausted.__cause__ = error
            return Retry(RetryAction.FAIL, exhausted)
        self.core.retries += 1
        tried = task.backends_tried or ()
        same_backend_failures = sum(1 for b in tried if b == state.name)
        reroute = task.backend is None and (
            moved or same_backend_failures >= 2 or not state.in_rotation(now)
        )
        retry = task.attempts  # 1 after the first failure
        delay = self.rng.uniform(
            0, min(cfg.retry_backoff_max, cfg.retry_backoff * 2 ** (retry - 1))
        )
        return Retry(RetryAction.RETRY, reroute=reroute, delay=delay)

    # -- preemption: withdrawing jobs that wait unstarted at a backend ------------------------

    def withdrawal_order(
        self, backends: Iterable[BackendState], now: float
    ) -> list[tuple[BackendState, TaskPriority]]:
        """PREEMPTIVE: the backends where a HIGH or CRITICAL task waits with no slot free (or
        no room under ``max_concurrent_quantum``) and a job of theirs is under way, most
        urgent first, each with the priority of its waiting task. Empty under other
        strategies."""
        cfg = self.core.config
        if cfg.preemption is not _PREEMPTIVE:
            return []
        room = self.room() > 0
        waiting: list[tuple[int, int, BackendState, TaskPriority]] = []
        for state in backends:
            pool = state.pool
            if (
                not state.flights
                or not pool.queue
                or (room and pool.busy < pool.capacity)
                or not state.in_rotation(now)
            ):
                continue
            head = pool.queue.peek(now)
            if head is not None and head.priority >= _HIGH:
                waiting.append((-int(head.priority), head.seq, state, head.priority))
        waiting.sort(key=lambda w: (w[0], w[1]))
        return [(state, prio) for _, _, state, prio in waiting]

    def withdrawal_candidates(self, state: BackendState, urgent: TaskPriority) -> list[Flight]:
        """The jobs of ``state`` an ``urgent`` task may take the place of, in the order to try.

        Candidates are jobs not known to have started whose tasks still running are all
        preemptible, below ``urgent`` (equal or higher priority never yields) and under
        ``max_preemptions``. The least urgent job (by its most urgent task) comes first, and
        among equals the one sent last, which has waited least.
        """
        limit = self.core.config.max_preemptions
        candidates: list[tuple[int, int, Flight]] = []
        for order, flight in enumerate(state.flights):
            if flight.started:
                continue
            live = [t for t in flight.batch if t.status is _RUNNING]
            if all(t.priority < urgent and may_be_preempted(t, limit) for t in live):
                top = max((int(t.priority) for t in live), default=-1)
                candidates.append((top, -order, flight))
        candidates.sort(key=lambda c: (c[0], c[1]))
        return [flight for _, _, flight in candidates]
