"""MockBackend: the seed's test double, a backend whose latency and faults are configurable.

It runs no gates by default: counts are sampled from a documented distribution with a seeded
random source, so a run is reproducible from its seed. It needs nothing beyond the standard
library (circuits as :class:`CircuitSpec`), and takes Qiskit circuits when Qiskit is there.

Faults, each reproducible from the seed:

* ``failure_rate``: the whole job raises :class:`TransientBackendError` after its latency.
* ``hang_rate``: the job never returns; it waits on an event nobody sets, until cancelled.
* ``circuit_failure_rate``: one circuit's outcome is a :class:`TransientBackendError`, its
  neighbours in the job still complete.
* :meth:`MockBackend.go_down` / :meth:`MockBackend.go_up`: while down, every job raises
  :class:`BackendUnavailableError`, and so does a job whose latency ends while down.

A backend-side queue, as a cloud service has: with ``max_running_jobs`` below
``max_concurrent_jobs`` the scheduler may send more jobs than the mock executes at once, and
the rest wait at the backend in arrival order, not started. :meth:`MockBackend.withdraw` takes
such a waiting job back (it never runs); a job that has started cannot be withdrawn.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from .._clock import Clock, MonotonicClock
from .._errors import (
    BackendUnavailableError,
    InvalidConfigError,
    PermanentBackendError,
    TransientBackendError,
)
from ._base import Backend, CircuitJob, Counts, JobOutcome, JobWithdrawnError
from ._circuits import CircuitSpec, _is_quantum_circuit, analyze_circuit, normalize_circuit
from ._sampling import multinomial_counts, uniform_counts

__all__ = ["MockBackend", "MockBackendStats", "MockJobRecord"]

Sampling = Literal["uniform", "exact"]

# Exact sampling keeps a 2**n statevector; past this many qubits that is no longer cheap.
_EXACT_MAX_QUBITS = 20


@dataclasses.dataclass(frozen=True, slots=True)
class MockJobRecord:
    """One job the mock was asked to run.

    Attributes:
        started: Clock time the job began.
        finished: Clock time it ended (or was cancelled).
        circuits: Circuits in the job.
        executed: Circuits it actually ran (the rest were idempotent replays).
        shots: Total shots over the executed circuits.
        outcome: ``"completed"``, ``"failed"`` (transient job failure), ``"unavailable"``
            (went down mid-job), ``"rejected"`` (too many circuits), ``"cancelled"``
            (includes every hang, which only ever ends by cancellation, and jobs cancelled
            while they waited at the backend), ``"withdrawn"`` (taken back by
            :meth:`MockBackend.withdraw` before it started; ``started`` is then when it was
            submitted) or ``"error"`` (anything else raised, such as an injected ``sleep``).
    """

    started: float
    finished: float
    circuits: int
    executed: int
    shots: int
    outcome: str


@dataclasses.dataclass(frozen=True, slots=True)
class MockBackendStats:
    """A snapshot of what a :class:`MockBackend` has done (from :meth:`MockBackend.statistics`).

    Attributes:
        jobs: ``run()`` calls that started (rejections while down not included).
        completed_jobs: Jobs that returned outcomes.
        failed_jobs: Jobs that raised an injected :class:`TransientBackendError`.
        hung_jobs: Jobs that hung (each stays hung until cancelled).
        cancelled_jobs: Jobs cancelled while running, hangs included.
        unavailable: ``run()`` calls refused or lost because the backend was down.
        circuits_run: Circuits executed (sampled or failed), replays excluded.
        circuit_failures: Circuits whose outcome was an injected or real per-circuit error.
        idempotent_replays: Circuits answered from a remembered idempotency key.
        active_jobs: Jobs running now.
        hanging_jobs: Jobs hung now.
        max_concurrent_observed: The most jobs that ever ran at once.
        queued_jobs: Jobs waiting at the backend now, submitted but not started.
        withdrawn_jobs: Jobs taken back by :meth:`MockBackend.withdraw` before they started.
    """

    jobs: int
    completed_jobs: int
    failed_jobs: int
    hung_jobs: int
    cancelled_jobs: int
    unavailable: int
    circuits_run: int
    circuit_failures: int
    idempotent_replays: int
    active_jobs: int
    hanging_jobs: int
    max_concurrent_observed: int
    queued_jobs: int
    withdrawn_jobs: int


@dataclasses.dataclass(eq=False, slots=True)
class _Waiting:
    """A job waiting at the backend: submitted by ``run()``, not started."""

    jobs: tuple[CircuitJob, ...]
    # Resolved (None) when the job is admitted to run; failed with JobWithdrawnError when
    # it is withdrawn.
    turn: asyncio.Future[None]
    submitted: float


class MockBackend(Backend):
    """A configurable, seeded stand-in for a quantum backend.

    Counts always sum to each circuit's shots. With ``sampling="uniform"`` (the default) every
    bitstring is equally likely; with ``"exact"`` a Qiskit circuit (Qiskit needed, up to 20
    qubits, measurements only at the end) is sampled from its exact statevector
    probabilities, so a Bell circuit gives only ``00`` and ``11``. Bitstrings have one bit
    per classical bit of a Qiskit circuit that has classical bits (Qiskit's key format,
    registers separated by spaces), and one bit per qubit otherwise (a :class:`CircuitSpec`).

    Everything random comes from ``random.Random(seed)``: each job draws its own generator
    from it when it starts, so results depend only on the seed and the order jobs start in.

    Idempotency: a key whose circuit completed is remembered (the newest
    ``idempotency_capacity`` keys) and never run again; a repeat returns the first counts.
    A key still running in another job is waited for, not run twice. A key whose circuit
    failed is not remembered, so a retry runs it.

    Args:
        name: The backend's name.
        num_qubits: Qubits it has.
        all_to_all: Whether any two qubits may interact. ``False`` without a coupling map
            means a line (qubit i coupled to i + 1).
        coupling_map: Coupled pairs of qubits (either direction); implies not all-to-all.
        latency: Seconds per job, or ``(fixed_per_job, per_circuit)`` seconds.
        failure_rate: Probability that a job fails as a whole (transiently).
        hang_rate: Probability that a job hangs until cancelled.
        circuit_failure_rate: Probability that one circuit fails (transiently) on its own.
        max_concurrent_jobs: Jobs it takes at once (declared for the scheduler; a mock asked
            to take more still takes them, and ``max_concurrent_observed`` shows it).
        max_running_jobs: Jobs it executes at once (default: ``max_concurrent_jobs``, no
            queue). Jobs taken beyond it wait at the backend in arrival order, not started,
            where :meth:`withdraw` can take them back.
        max_circuits_per_job: Circuits one job may carry; a larger job is refused with
            :class:`PermanentBackendError`.
        error_rate: A two-qubit error rate to declare (routing may prefer lower).
        cost_per_shot: A price per shot to declare.
        seed: Seed for every random choice; None draws one from the system.
        sampling: ``"uniform"`` or ``"exact"`` (see above).
        idempotency: Whether it remembers idempotency keys.
        idempotency_capacity: How many completed keys it remembers.
        history: How many :class:`MockJobRecord` it keeps (newest first dropped last).
        clock: Where job records take their times (default: the monotonic clock).
        sleep: Awaited with the job's latency (default :func:`asyncio.sleep`); a test passes
            one that advances a :class:`~logosq_os_scheduler.ManualClock` instead.

    Raises:
        InvalidConfigError: If a rate is outside [0, 1], a latency or capacity is out of
            range, or the coupling map names a qubit the backend lacks.
    """

    def __init__(
        self,
        name: str = "mock",
        *,
        num_qubits: int = 32,
        all_to_all: bool = True,
        coupling_map: Iterable[tuple[int, int]] | None = None,
        latency: float | tuple[float, float] = 0.0,
        failure_rate: float = 0.0,
        hang_rate: float = 0.0,
        circuit_failure_rate: float = 0.0,
        max_concurrent_jobs: int = 1,
        max_running_jobs: int | None = None,
        max_circuits_per_job: int = 100,
        error_rate: float | None = None,
        cost_per_shot: float | None = None,
        seed: int | None = None,
        sampling: Sampling = "uniform",
        idempotency: bool = True,
        idempotency_capacity: int = 100_000,
        history: int = 100_000,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if not name:
            raise InvalidConfigError("name", "a backend needs a non-empty name")
        _check_positive("num_qubits", num_qubits)
        _check_positive("max_concurrent_jobs", max_concurrent_jobs)
        if max_running_jobs is None:
            max_running_jobs = max_concurrent_jobs
        _check_positive("max_running_jobs", max_running_jobs)
        if max_running_jobs > max_concurrent_jobs:
            raise InvalidConfigError(
                "max_running_jobs",
                f"must be at most max_concurrent_jobs={max_concurrent_jobs} (the scheduler "
                f"never sends more), got {max_running_jobs}",
            )
        _check_positive("max_circuits_per_job", max_circuits_per_job)
        _check_positive("idempotency_capacity", idempotency_capacity)
        _check_positive("history", history)
        if history > 10_000_000 or idempotency_capacity > 10_000_000:
            raise InvalidConfigError(
                "history" if history > 10_000_000 else "idempotency_capacity",
                "must be at most 10,000,000",
            )
        for setting, rate in (
            ("failure_rate", failure_rate),
            ("hang_rate", hang_rate),
            ("circuit_failure_rate", circuit_failure_rate),
        ):
            if not _is_real(rate) or not 0.0 <= rate <= 1.0:
                raise InvalidConfigError(setting, f"must be a probability in [0, 1], got {rate!r}")
        if isinstance(latency, tuple) and len(latency) == 2:
            fixed, per_circuit = latency
        elif _is_real(latency):
            fixed, per_circuit = latency, 0.0
        else:
            raise InvalidConfigError(
                "latency", f"expected seconds or a (per_job, per_circuit) pair, got {latency!r}"
            )
        if not (_is_real(fixed) and _is_real(per_circuit)):
            raise InvalidConfigError("latency", f"must be numbers of seconds, got {latency!r}")
        try:
            finite = math.isfinite(fixed) and math.isfinite(per_circuit)
        except OverflowError:
            finite = False
        if not finite or min(fixed, per_circuit) < 0:
            raise InvalidConfigError("latency", f"must be finite and >= 0, got {latency!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidConfigError("seed", f"must be an integer or None, got {seed!r}")
        if sampling not in ("uniform", "exact"):
            raise InvalidConfigError("sampling", f"must be 'uniform' or 'exact', got {sampling!r}")

        self._name = name
        self._num_qubits = num_qubits
        self._coupling: frozenset[tuple[int, int]] | None
        if coupling_map is not None:
            self._coupling = _symmetric(coupling_map, num_qubits)
        elif not all_to_all:
            self._coupling = _symmetric(((i, i + 1) for i in range(num_qubits - 1)), num_qubits)
        else:
            self._coupling = None
        self._fixed_latency = float(fixed)
        self._per_circuit_latency = float(per_circuit)
        self._failure_rate = failure_rate
        self._hang_rate = hang_rate
        self._circuit_failure_rate = circuit_failure_rate
        self._max_concurrent_jobs = max_concurrent_jobs
        self._max_running_jobs = max_running_jobs
        self._max_circuits_per_job = max_circuits_per_job
        self._error_rate = error_rate
        self._cost_per_shot = cost_per_shot
        self._seed = seed
        self._rng = random.Random(seed)
        self._sampling: Sampling = sampling
        self._idempotency = idempotency
        self._idempotency_capacity = idempotency_capacity
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._sleep: Callable[[float], Awaitable[None]] = (
            sleep if sleep is not None else asyncio.sleep
        )

        self._down = False
        # Completed keys, oldest first; bounded by idempotency_capacity.
        self._remembered: collections.OrderedDict[str, Counts] = collections.OrderedDict()
        # Keys some running job has claimed: a key is in _inflight iff exactly one running
        # job is executing it; other jobs holding the same key await the future.
        self._inflight: dict[str, asyncio.Future[Counts]] = {}
        self._records: collections.deque[MockJobRecord] = collections.deque(maxlen=history)
        self._jobs = 0
        self._completed = 0
        self._failed = 0
        self._hung = 0
        self._cancelled = 0
        self._unavailable = 0
        self._circuits_run = 0
        self._circuit_failures = 0
        self._replays = 0
        # Invariant: _active counts run() calls between their start and their end;
        # _max_active is the largest value _active ever took.
        self._active = 0
        self._max_active = 0
        self._hanging = 0
        # Invariants: _running counts the jobs holding one of the max_running_jobs execution
        # turns, from admission to the end of their run() call, so it never exceeds that
        # limit. A job is in _queue iff it waits for a turn (its turn future not done); it
        # leaves when admitted (oldest first), withdrawn or cancelled. A job never waits
        # while a turn is free: admission happens whenever a turn is given back.
        self._running = 0
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._withdrawn = 0

    # --- declared shape and capacity --------------------------------------------------------

    @property
    def name(self) -> str:
        """The backend's name."""
        return self._name

    @property
    def num_qubits(self) -> int:
        """Qubits it has."""
        return self._num_qubits

    @property
    def coupling_map(self) -> frozenset[tuple[int, int]] | None:
        """Coupled pairs (both directions), or None when all-to-all."""
        return self._coupling

    @property
    def max_concurrent_jobs(self) -> int:
        """Jobs it runs at once."""
        return self._max_concurrent_jobs

    @property
    def max_circuits_per_job(self) -> int:
        """Circuits one job may carry."""
        return self._max_circuits_per_job

    @property
    def error_rate(self) -> float | None:
        """The declared two-qubit error rate."""
        return self._error_rate

    @property
    def cost_per_shot(self) -> float | None:
        """The declared price per shot."""
        return self._cost_per_shot

    @property
    def supports_idempotency(self) -> bool:
        """Whether it remembers idempotency keys."""
        return self._idempotency

    @property
    def is_down(self) -> bool:
        """Whether :meth:`go_down` is in effect."""
        return self._down

    @property
    def job_sizes(self) -> list[int]:
        """Circuits per job, for every job it was asked to run (oldest first, bounded)."""
        return [record.circuits for record in self._records]

    @property
    def records(self) -> list[MockJobRecord]:
        """Every job it was asked to run, oldest first (the newest ``history`` kept)."""
        return list(self._records)

    def estimate_job_seconds(self, circuits: int, shots: int) -> float:
        """Its configured latency for a job of ``circuits`` circuits."""
        return self._fixed_latency + self._per_circuit_latency * circuits

    def properties(self) -> Mapping[str, Any]:
        """Facts worth recording with a result: the base facts plus the mock's settings."""
        return {
            **super().properties(),
            "backend_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "sampling": self._sampling,
            "seed": self._seed,
        }

    def statistics(self) -> MockBackendStats:
        """A frozen snapshot of its counters."""
        return MockBackendStats(
            jobs=self._jobs,
            completed_jobs=self._completed,
            failed_jobs=self._failed,
            hung_jobs=self._hung,
            cancelled_jobs=self._cancelled,
            unavailable=self._unavailable,
            circuits_run=self._circuits_run,
            circuit_failures=self._circuit_failures,
            idempotent_replays=self._replays,
            active_jobs=self._active,
            hanging_jobs=self._hanging,
            max_concurrent_observed=self._max_active,
            queued_jobs=len(self._queue),
            withdrawn_jobs=self._withdrawn,
        )

    # --- health switch ----------------------------------------------------------------------

    def go_down(self) -> None:
        """Take the backend down: jobs are refused with :class:`BackendUnavailableError`."""
        self._down = True

    def go_up(self) -> None:
        """Bring the backend back up."""
        self._down = False

    async def check_health(self) -> bool:
        """True unless it is down."""
        return not self._down

    # --- running ----------------------------------------------------------------------------

    # prepare() is the base one (circuits run as given): a mock has nothing to compile, and
    # a scheduler can skip the call. run() checks each circuit against the backend instead.

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        """Run one job (see :meth:`Backend.run`), with the configured latency and faults.

        If ``max_running_jobs`` jobs are executing, the job first waits at the backend behind
        those that came before it. Each circuit is checked against the backend's qubits and
        connectivity; one that does not fit fails alone with :class:`PermanentBackendError`.

        Raises:
            BackendUnavailableError: If it is down, or went down while the job ran.
            TransientBackendError: If the job drew an injected failure.
            PermanentBackendError: If the job carries more than ``max_circuits_per_job``
                circuits.
            JobWithdrawnError: If :meth:`withdraw` took the job back before it started.
        """
        jobs = list(jobs)
        if self._down:
            self._unavailable += 1
            raise BackendUnavailableError(self._name, "is down; reroute the job")
        if not jobs:
            return []
        started = self._clock.now()
        if len(jobs) > self._max_circuits_per_job:
            self._record(started, len(jobs), 0, 0, "rejected")
            raise PermanentBackendError(
                self._name,
                f"a job of {len(jobs)} circuits exceeds max_circuits_per_job="
                f"{self._max_circuits_per_job}",
            )
        await self._take_turn(jobs)
        try:
            return await self._run_started(jobs)
        finally:
            self._running -= 1
            self._admit_next()

    @property
    def supports_withdrawal(self) -> bool:
        """True: a job waiting at the backend (see ``max_running_jobs``) can be withdrawn."""
        return True

    def withdraw(self, jobs: Sequence[CircuitJob]) -> bool:
        """Take back a job waiting at the backend, not started (see :meth:`Backend.withdraw`).

        Returns:
            True if the job was waiting: it leaves the queue, none of its circuits runs, and
            its ``run()`` raises :class:`JobWithdrawnError`. False if it has started or is
            not here.
        """
        for waiting in self._queue:
            if len(waiting.jobs) == len(jobs) and all(
                a is b for a, b in zip(waiting.jobs, jobs, strict=True)
            ):
                self._queue.remove(waiting)
                self._withdrawn += 1
                self._record(waiting.submitted, len(jobs), 0, 0, "withdrawn")
                waiting.turn.set_exception(
                    JobWithdrawnError(
                        self._name, f"job of {len(jobs)} circuits withdrawn before it started"
                    )
                )
                return True
        return False

    async def _take_turn(self, jobs: list[CircuitJob]) -> None:
        """Take an execution turn, waiting at the backend behind earlier jobs if none is
        free. Raises JobWithdrawnError if the job is withdrawn meanwhile."""
        if self._running < self._max_running_jobs and not self._queue:
            self._running += 1
            return
        waiting = _Waiting(
            tuple(jobs), asyncio.get_running_loop().create_future(), self._clock.now()
        )
        self._queue.append(waiting)
        try:
            await waiting.turn
        except asyncio.CancelledError:
            turn = waiting.turn
            if not turn.done() or turn.cancelled():
                # Cancelled while waiting: it leaves the queue, having run nothing.
                self._queue.remove(waiting)
                self._cancelled += 1
                self._record(waiting.submitted, len(jobs), 0, 0, "cancelled")
            elif turn.exception() is None:
                # Admitted just before the cancellation arrived: give the turn on.
                self._running -= 1
                self._admit_next()
            raise

    def _admit_next(self) -> None:
        """Give free execution turns to the jobs waiting longest."""
        queue = self._queue
        while queue and self._running < self._max_running_jobs:
            waiting = queue.popleft()
            self._running += 1
            waiting.turn.set_result(None)

    async def _run_started(self, jobs: list[CircuitJob]) -> Sequence[JobOutcome]:
        """Execute a job that holds an execution turn."""
        started = self._clock.now()
        self._jobs += 1
        # One generator per job, drawn when it starts: its faults and counts then depend
        # only on the seed and the order jobs started, not on how their awaits interleave.
        rng = random.Random(self._rng.getrandbits(64))
        hang = self._hang_rate > 0.0 and rng.random() < self._hang_rate
        fail = self._failure_rate > 0.0 and rng.random() < self._failure_rate

        outcomes: list[JobOutcome | None] = [None] * len(jobs)
        owned: dict[str, asyncio.Future[Counts]] = {}
        own: list[int] = []  # indices this job executes
        waits: list[tuple[int, asyncio.Future[Counts]]] = []
        self._claim(jobs, outcomes, owned, own, waits)
        if not own and not waits:
            self._completed += 1
            self._record(started, len(jobs), 0, 0, "completed")
            return [outcome for outcome in outcomes if outcome is not None]

        self._active += 1
        self._max_active = max(self._max_active, self._active)
        shots = sum(jobs[i].shots for i in own)
        status = "cancelled"
        try:
            if hang:
                self._hung += 1
                self._hanging += 1
                try:
                    await asyncio.Event().wait()  # nobody sets it: only cancellation ends this
                finally:
                    self._hanging -= 1
            await self._sleep(self._fixed_latency + self._per_circuit_latency * len(own))
            if self._down:
                status = "unavailable"
                self._unavailable += 1
                raise BackendUnavailableError(self._name, "went down while the job ran")
            if fail:
                status = "failed"
                self._failed += 1
                raise TransientBackendError(self._name, "injected transient job failure")
            for i in own:
                outcomes[i] = self._execute(jobs[i], rng)
            self._settle(jobs, own, outcomes, owned)
            for i, future in waits:
                outcomes[i] = await _outcome_of(future, self._name)
            status = "completed"
            self._completed += 1
        except BaseException as exc:
            if status == "cancelled":
                if isinstance(exc, asyncio.CancelledError):
                    self._cancelled += 1
                else:
                    status = "error"  # an injected sleep raised, or a bug: not a fault we drew
            self._abandon(owned, exc)
            raise
        finally:
            self._active -= 1
            self._record(started, len(jobs), len(own), shots, status)
        return [outcome for outcome in outcomes if outcome is not None]

    def _claim(
        self,
        jobs: list[CircuitJob],
        outcomes: list[JobOutcome | None],
        owned: dict[str, asyncio.Future[Counts]],
        own: list[int],
        waits: list[tuple[int, asyncio.Future[Counts]]],
    ) -> None:
        """Sort the job's circuits into replays, waits on other jobs, and its own work."""
        loop = asyncio.get_running_loop()
        for i, job in enumerate(jobs):
            key = job.idempotency_key
            if not self._idempotency or not key:
                own.append(i)
                continue
            remembered = self._remembered.get(key)
            if remembered is not None:
                outcomes[i] = dict(remembered)
                self._replays += 1
            elif key in owned:
                waits.append((i, owned[key]))  # the same key twice in one job runs once
                self._replays += 1
            elif key in self._inflight:
                waits.append((i, self._inflight[key]))
                self._replays += 1
            else:
                future: asyncio.Future[Counts] = loop.create_future()
                owned[key] = future
                self._inflight[key] = future
                own.append(i)

    def _execute(self, job: CircuitJob, rng: random.Random) -> JobOutcome:
        self._circuits_run += 1
        try:
            if job.shots < 1:
                raise PermanentBackendError(self._name, f"shots must be >= 1, got {job.shots}")
            circuit = job.circuit
            if self._coupling is None and (
                isinstance(circuit, CircuitSpec) or circuit.num_qubits <= self._num_qubits
            ):
                # All-to-all: only the width matters. A spec declares it; a circuit that fits
                # as declared fits (the qubits it uses are no more than those it declares).
                reason = None
                if circuit.num_qubits > self._num_qubits:
                    reason = f"has {self._num_qubits} qubits, circuit needs {circuit.num_qubits}"
            else:
                reason = self.check_requirements(analyze_circuit(circuit))
            if reason is not None:
                raise PermanentBackendError(self._name, f"cannot run this circuit: {reason}")
            if self._circuit_failure_rate > 0.0 and rng.random() < self._circuit_failure_rate:
                raise TransientBackendError(self._name, "injected transient circuit failure")
            return self._sample(job.circuit, job.shots, rng)
        except PermanentBackendError as exc:
            self._circuit_failures += 1
            return exc
        except TransientBackendError as exc:
            self._circuit_failures += 1
            return exc
        except Exception as exc:  # a circuit the sampler cannot read fails alone
            self._circuit_failures += 1
            error = PermanentBackendError(self._name, f"cannot sample this circuit: {exc}")
            error.__cause__ = exc
            return error

    def _settle(
        self,
        jobs: list[CircuitJob],
        own: list[int],
        outcomes: list[JobOutcome | None],
        owned: dict[str, asyncio.Future[Counts]],
    ) -> None:
        """Remember completed keys and hand every owned key's outcome to its waiters."""
        for i in own:
            key = jobs[i].idempotency_key
            future = owned.pop(key, None) if self._idempotency and key else None
            if future is None:
                continue
            self._inflight.pop(key, None)
            outcome = outcomes[i]
            if isinstance(outcome, dict):
                self._remember(key, outcome)
                future.set_result(dict(outcome))
            else:
                assert isinstance(outcome, BaseException)
                future.set_exception(outcome)
                future.exception()  # retrieved here, so an unawaited future logs nothing

    def _abandon(self, owned: dict[str, asyncio.Future[Counts]], exc: BaseException) -> None:
        """The job ended without outcomes: release its keys and fail whoever waits on them."""
        for key, future in owned.items():
            self._inflight.pop(key, None)
            if future.done():
                continue
            if isinstance(exc, Exception):
                future.set_exception(exc)
            else:
                future.set_exception(
                    TransientBackendError(
                        self._name, "the job running this idempotency key was cancelled"
                    )
                )
            future.exception()
        owned.clear()

    def _remember(self, key: str, counts: Counts) -> None:
        self._remembered[key] = dict(counts)
        if len(self._remembered) > self._idempotency_capacity:
            self._remembered.popitem(last=False)

    def _record(
        self, started: float, circuits: int, executed: int, shots: int, outcome: str
    ) -> None:
        self._records.append(
            MockJobRecord(
                started=started,
                finished=self._clock.now(),
                circuits=circuits,
                executed=executed,
                shots=shots,
                outcome=outcome,
            )
        )

    # --- sampling ---------------------------------------------------------------------------

    def _sample(self, circuit: object, shots: int, rng: random.Random) -> Counts:
        if _is_quantum_circuit(circuit):
            registers = [len(creg) for creg in circuit.cregs]  # type: ignore[attr-defined]
            num_clbits = circuit.num_clbits  # type: ignore[attr-defined]
            if not num_clbits or not _measures(circuit):
                # As a device (and Aer) refuses it: there is nothing to count.
                raise PermanentBackendError(
                    self._name,
                    "the circuit measures nothing, so it has no counts: add measurements "
                    "(for example qc.measure_all())",
                )
            if self._sampling == "exact":
                return _exact_counts(circuit, shots, rng, self._name)
            if sum(registers) == num_clbits:
                counts = uniform_counts(rng, num_clbits, shots)
                return {_split_registers(key, registers): n for key, n in counts.items()}
            return uniform_counts(rng, num_clbits, shots)
        width = getattr(circuit, "num_qubits", None)
        if isinstance(circuit, str) or not isinstance(width, int):
            normalized = normalize_circuit(circuit)
            if normalized is not circuit:
                return self._sample(normalized, shots, rng)
            raise TypeError(f"a {type(circuit).__name__} has no int num_qubits")
        return uniform_counts(rng, max(1, width), shots)


# Whether a circuit measures anything, by the circuit (kept, so that its id is not reused
# while it is here): the circuits of a batch are often one shared circuit.
_MEASURED: dict[int, tuple[Any, bool]] = {}
_MEASURED_MAX = 256


def _measures(circuit: Any) -> bool:
    """Whether the Qiskit circuit has a measurement (looked for from the end, where they
    usually are)."""
    known = _MEASURED.get(id(circuit))
    if known is not None and known[0] is circuit:
        return known[1]
    data = circuit.data
    found = any(data[k].operation.name == "measure" for k in range(len(data) - 1, -1, -1))
    if len(_MEASURED) >= _MEASURED_MAX:
        _MEASURED.pop(next(iter(_MEASURED)))
    _MEASURED[id(circuit)] = (circuit, found)
    return found


async def _outcome_of(future: asyncio.Future[Counts], backend: str) -> JobOutcome:
    """The outcome another job produced for a shared key (counts, or its error)."""
    try:
        return dict(await asyncio.shield(future))
    except asyncio.CancelledError:
        if future.cancelled():
            return TransientBackendError(backend, "the job running this key was cancelled")
        raise
    except Exception as exc:
        return exc


def _split_registers(key: str, sizes: list[int]) -> str:
    """Qiskit's counts key: classical registers separated by spaces, the first rightmost."""
    if len(sizes) <= 1:
        return key
    parts: list[str] = []
    end = len(key)
    for size in sizes:
        parts.append(key[end - size : end])
        end -= size
    return " ".join(reversed(parts))


def _exact_counts(circuit: Any, shots: int, rng: random.Random, backend: str) -> Counts:
    """Sample from the exact output distribution of a circuit that measures only at the end."""
    if circuit.num_qubits > _EXACT_MAX_QUBITS:
        raise PermanentBackendError(
            backend,
            f"exact sampling simulates at most {_EXACT_MAX_QUBITS} qubits, "
            f"the circuit has {circuit.num_qubits}",
        )
    from qiskit.quantum_info import Statevector

    qubit_index = {bit: i for i, bit in enumerate(circuit.qubits)}
    clbit_index = {bit: i for i, bit in enumerate(circuit.clbits)}
    unitary = circuit.copy_empty_like()
    measured: dict[int, int] = {}  # clbit -> qubit measured into it
    finished: set[int] = set()  # qubits already measured
    for instruction in circuit.data:
        op = instruction.operation
        qubits = [qubit_index[q] for q in instruction.qubits]
        if op.name == "barrier":
            continue
        if op.name == "measure":
            measured[clbit_index[instruction.clbits[0]]] = qubits[0]
            finished.add(qubits[0])
            continue
        control_flow = bool(getattr(op, "blocks", ()))
        if control_flow or op.name == "reset" or not finished.isdisjoint(qubits):
            raise PermanentBackendError(
                backend,
                "exact sampling needs a unitary circuit with measurements only at the end "
                f"(found {op.name!r} after a measurement, a reset or control flow)",
            )
        unitary.append(instruction)
    state = Statevector(unitary)
    sizes = [len(creg) for creg in circuit.cregs]
    if not measured:
        # Nothing measured: report the qubits themselves, as for a CircuitSpec.
        probabilities = state.probabilities_dict()
        outcomes = sorted(probabilities.items())
        return multinomial_counts(rng, outcomes, shots)
    qubits = sorted(set(measured.values()))
    position = {q: i for i, q in enumerate(qubits)}
    marginal = state.probabilities(qargs=qubits)
    width = circuit.num_clbits
    outcomes_list: list[tuple[str, float]] = []
    for value, probability in enumerate(marginal):
        if probability <= 1e-15:
            continue
        bits = ["0"] * width
        for clbit, qubit in measured.items():
            if (value >> position[qubit]) & 1:
                bits[width - 1 - clbit] = "1"
        key = _split_registers("".join(bits), sizes) if sum(sizes) == width else "".join(bits)
        outcomes_list.append((key, float(probability)))
    return multinomial_counts(rng, _merge(outcomes_list), shots)


def _merge(outcomes: list[tuple[str, float]]) -> list[tuple[str, float]]:
    merged: dict[str, float] = {}
    for key, probability in outcomes:
        merged[key] = merged.get(key, 0.0) + probability
    return sorted(merged.items())


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _symmetric(pairs: Iterable[tuple[int, int]], num_qubits: int) -> frozenset[tuple[int, int]]:
    result: set[tuple[int, int]] = set()
    try:
        items = list(pairs)
    except TypeError:
        raise InvalidConfigError(
            "coupling_map", f"expected pairs of qubits, got {pairs!r}"
        ) from None
    for pair in items:
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not all(isinstance(q, int) and not isinstance(q, bool) for q in pair)
        ):
            raise InvalidConfigError("coupling_map", f"{pair!r} is not a pair of qubit indices")
        a, b = pair
        if not (0 <= a < num_qubits and 0 <= b < num_qubits) or a == b:
            raise InvalidConfigError(
                "coupling_map",
                f"pair {(a, b)!r} must join two distinct qubits in range({num_qubits})",
            )
        result.add((a, b))
        result.add((b, a))
    return frozenset(result)


def _check_positive(setting: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidConfigError(setting, f"must be an int >= 1, got {value!r}")
