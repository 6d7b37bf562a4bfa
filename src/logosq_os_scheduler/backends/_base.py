"""The Backend contract: what the scheduler needs from anything that runs circuits.

A backend runs *jobs*: batches of circuits, each with its own shots, and returns one outcome
per circuit (its counts, or the exception that circuit raised), so one bad circuit never fails
its neighbours. Everything about capacity (how many jobs at once, how many circuits per job),
shape (qubits, coupling map) and quality (error rate, cost) is declared here, so the
scheduler's routing and batching can decide without running anything.

A backend may also keep a queue of its own (a cloud service queues jobs before it runs them,
as Qiskit Runtime's jobs sit ``QUEUED`` until the device takes them). Such a backend may offer
:meth:`Backend.withdraw`: a submitted job that has not started is taken back and never runs,
which lets the scheduler's PREEMPTIVE strategy give the place to more urgent work.

A backend whose jobs have IDs that outlive this process (a cloud service's job IDs, as
Qiskit Runtime's ``job.job_id()``) declares :attr:`Backend.supports_reattach` and splits a job
in two: :meth:`Backend.submit_job` sends it and returns the job ID the moment the backend has
acknowledged it, and :meth:`Backend.reattach` waits for the job with that ID, whichever
process submitted it, and returns its outcomes as :meth:`Backend.run` would. For such a
backend ``run(jobs)`` is ``reattach(await submit_job(jobs))``. The scheduler then calls the
two halves itself, and tells a journal the job ID in between, so that a scheduler restarted
after a crash collects the jobs its predecessor left running instead of sending them again.
A backend that cannot (a local simulator, whose jobs die with the process: ``MockBackend``,
``QiskitBackend``) keeps the defaults, which raise :class:`PermanentBackendError` saying so.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import BackendError, PermanentBackendError, TransientBackendError
from ..core._capabilities import BackendCapabilities, CircuitRequirements, JobCost
from ..core._overhead import RoutingOverhead

__all__ = [
    "Backend",
    "BackendCapabilities",
    "CircuitJob",
    "CircuitRequirements",
    "Counts",
    "JobCost",
    "JobOutcome",
    "JobWithdrawnError",
    "prepare_all",
]

Counts = dict[str, int]
"""Measurement counts: bitstring (Qiskit's order, qubit 0 rightmost) to number of shots."""

JobOutcome = Counts | BaseException
"""What one circuit of a job produced: its counts, or the error that circuit alone raised."""


# True while the scheduler awaits a job's prepare_and_run() with no other task of its own
# unfinished: no task of the scheduler waits for its event loop then, so a backend may
# prepare a small job's circuits on the loop rather than hand them to a thread (the hand-off
# is a thread wake-up, which is slow on a virtual machine). A hint only.
sole_job: contextvars.ContextVar[bool] = contextvars.ContextVar("sole_job", default=False)


class JobWithdrawnError(BackendError):
    """The job was withdrawn from the backend's queue before it started: no circuit of it ran.

    :meth:`Backend.run` raises it for a job that :meth:`Backend.withdraw` took back. The
    scheduler requeues the job's tasks itself; a job withdrawn by anyone else is worth sending
    again, since nothing of it ran.
    """

    retryable = True


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitJob:
    """One circuit within a backend job.

    Attributes:
        circuit: The circuit as the backend takes it: what its :meth:`Backend.prepare`
            returned (a ``PreparedCircuit`` for Qiskit backends; anything with
            ``num_qubits`` for mocks).
        shots: How many shots to take.
        task_id: The scheduler task it belongs to.
        idempotency_key: Unique per task and attempt-independent: a backend that remembers
            keys must not run the same key twice, and returns the first run's outcome.
        options: Run options (``seed_simulator``, ...), passed through.
    """

    circuit: Any
    shots: int
    task_id: int
    idempotency_key: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Backend(abc.ABC):
    """Something that runs batches of quantum circuits (the seed's ``Backend`` trait).

    Subclasses provide :attr:`name`, :attr:`num_qubits` and :meth:`run`; the rest have
    defaults. :meth:`run` is called from the scheduler's event loop and must not block it:
    heavy work belongs in a thread or a process.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The backend's own name (the scheduler registers it under a name of its choice)."""

    @property
    @abc.abstractmethod
    def num_qubits(self) -> int:
        """How many qubits it has."""

    @property
    def coupling_map(self) -> frozenset[tuple[int, int]] | None:
        """Pairs of physical qubits a two-qubit gate may join (both directions), or None for
        all-to-all connectivity."""
        return None

    @property
    def all_to_all(self) -> bool:
        """Whether any two qubits may share a gate directly."""
        return self.coupling_map is None

    @property
    def max_concurrent_jobs(self) -> int:
        """How many jobs it runs at once."""
        return 1

    @property
    def max_circuits_per_job(self) -> int:
        """How many circuits one job may carry."""
        return 1

    @property
    def error_rate(self) -> float | None:
        """A typical two-qubit error rate, if known (lower is better)."""
        return None

    @property
    def cost_per_shot(self) -> float | None:
        """Price of one shot, if it costs money."""
        return None

    @property
    def supports_idempotency(self) -> bool:
        """Whether it remembers idempotency keys and never runs one twice."""
        return False

    @property
    def supports_withdrawal(self) -> bool:
        """Whether :meth:`withdraw` can take back a submitted job that has not started."""
        return False

    @property
    def supports_reattach(self) -> bool:
        """Whether its jobs have IDs that outlive this process, so that :meth:`reattach`
        can collect a job submitted by an earlier process (see :meth:`submit_job`)."""
        return False

    @property
    def supports_job_ids(self) -> bool:
        """Whether :meth:`submit_job` gives each job an ID of the backend's own (a cloud
        provider's job or task ID), even where the job dies with this process.

        The scheduler then sends its jobs as :meth:`submit_job` then :meth:`reattach`, tells a
        journal the ID, and puts it on each result (``TaskResult.job_id``); only
        :attr:`supports_reattach` lets a restarted scheduler collect a job by it. Defaults to
        :attr:`supports_reattach`. A provider's local simulator (Qiskit Runtime's local testing
        mode, Braket's ``LocalSimulator``) has IDs but no jobs that outlive the process.
        """
        return self.supports_reattach

    async def submit_job(self, jobs: Sequence[CircuitJob]) -> str:
        """Send one job (as :meth:`run` takes it) and return its ID, without waiting for it.

        Returns as soon as the backend has acknowledged the job: from then on the job runs
        whether or not this process lives, and :meth:`reattach` collects it by that ID. Only
        backends with :attr:`supports_reattach` implement it.

        Returns:
            The backend's ID for the job.

        Raises:
            PermanentBackendError: By default: this backend has no job IDs to give (its
                :attr:`supports_reattach` is False; call :meth:`run`). A backend that
                implements it raises what :meth:`run` raises for a job refused at submission.
            BackendUnavailableError: The backend could not be reached; nothing was sent.
        """
        raise PermanentBackendError(
            self.name,
            "cannot submit a job by ID: its jobs do not outlive this process "
            "(supports_reattach is False); run jobs with run()",
        )

    async def reattach(self, job_id: str) -> Sequence[JobOutcome]:
        """Wait for the job with ID ``job_id`` and return its outcomes.

        The job may have been submitted by :meth:`submit_job` in this process or in an
        earlier one that has since died. Cancelling the wait leaves the job running at the
        backend; reattaching again later collects it.

        Returns:
            One outcome per circuit of the job, in order, as :meth:`run` returns them.

        Raises:
            PermanentBackendError: The backend knows no job with this ID (the message names
                it); or, by default, this backend cannot reattach (its
                :attr:`supports_reattach` is False).
            TransientBackendError: The job failed as a whole for a passing reason; submit it
                again (with the same idempotency keys).
            BackendUnavailableError: The backend could not be reached; the job may still be
                running there, and reattaching later may collect it.
        """
        raise PermanentBackendError(
            self.name,
            f"cannot reattach to job {job_id!r}: this backend's jobs do not outlive the "
            "process that ran them (supports_reattach is False)",
        )

    def withdraw(self, jobs: Sequence[CircuitJob]) -> bool:
        """Take back a job submitted with :meth:`run` that has not started executing.

        ``jobs`` is the very sequence (the same :class:`CircuitJob` objects) passed to the
        :meth:`run` call that is waiting. Called on the event loop; must not block. A job
        withdrawn never runs any of its circuits, and its :meth:`run` call raises
        :class:`JobWithdrawnError`. A job that has started (or ended, or is unknown) cannot
        be withdrawn: it runs on and its :meth:`run` returns as usual.

        Returns:
            True if the job was withdrawn; False otherwise (the default: no queue to take
            jobs back from).
        """
        return False

    def estimate_job_seconds(self, circuits: int, shots: int) -> float:
        """Expected wall time of a job of ``circuits`` circuits with ``shots`` shots in total.

        Used to balance load by expected completion time. The default is :meth:`job_cost`'s
        line: a guess of 1 ms per job plus 1 microsecond per shot unless a backend knows
        better (override :meth:`job_cost`, or this method).
        """
        return self.job_cost().seconds(circuits, shots)

    def job_cost(self) -> JobCost:
        """The backend's expected job time as a line in circuits and shots.

        The scheduler's policy decides on this (in :meth:`capabilities`), not on live calls.
        A backend that overrides only :meth:`estimate_job_seconds` gets the line through
        three of its estimates (exact when its estimate is linear).
        """
        if type(self).estimate_job_seconds is Backend.estimate_job_seconds:
            return JobCost()
        one = self.estimate_job_seconds(1, 0)
        per_circuit = self.estimate_job_seconds(2, 0) - one
        per_shot = (self.estimate_job_seconds(1, 1000) - one) / 1000
        return JobCost(fixed=one - per_circuit, per_circuit=per_circuit, per_shot=per_shot)

    def capabilities(self) -> BackendCapabilities:
        """A frozen snapshot of what routing, batching and work stealing need to know."""
        return BackendCapabilities(
            name=self.name,
            num_qubits=self.num_qubits,
            all_to_all=self.all_to_all,
            max_concurrent_jobs=self.max_concurrent_jobs,
            max_circuits_per_job=self.max_circuits_per_job,
            error_rate=self.error_rate,
            cost=self.job_cost(),
            pending_jobs=self.pending_jobs(),
        )

    def pending_jobs(self) -> int:
        """Jobs waiting at the backend itself, outside this scheduler (0 if unknown)."""
        return 0

    def properties(self) -> Mapping[str, Any]:
        """Facts about the backend worth recording with a result (and signing)."""
        return {
            "name": self.name,
            "num_qubits": self.num_qubits,
            "all_to_all": self.all_to_all,
        }

    def check_requirements(self, req: CircuitRequirements) -> str | None:
        """Why this backend cannot run a circuit with these needs, or None if it can."""
        return self.capabilities().check_requirements(req)

    def estimate_fidelity(self, circuit: Any) -> float | None:
        """This circuit's expected success probability here, or None if unknown (default).

        What the fidelity routing rules decide on (``route_to_highest_fidelity``,
        ``route_by_score``, ``when_fidelity_below``): the scheduler asks each backend that
        could run the circuit at submit, only when such a rule is set. Called on the event
        loop with the circuit as submitted (normalised): it must be quick for a circuit it
        has seen before, and must not do I/O. ``QiskitBackend`` answers from its Target's
        calibration data (docs/fidelity.md); a backend without calibration keeps the default.
        """
        return None

    def prepare(self, circuit: Any) -> Any:
        """Turn a submitted circuit into what :meth:`run` takes (transpile, ...).

        Called once per task and backend before it is queued there: what it returns belongs
        to this backend, so a task moved to another backend is prepared again from its
        original circuit. May raise ``PermanentBackendError`` if the circuit can never run
        on this backend. The default returns the circuit unchanged.
        Neither this nor :meth:`run` may change a circuit it is given: the scheduler sends the
        same one again on a retry, and tasks that submitted the same OpenQASM text share it.
        """
        return circuit

    def prepare_many(self, circuits: Sequence[Any]) -> list[Any]:
        """:meth:`prepare` for the circuits of one job; the scheduler calls it in a thread.

        Returns one entry per circuit: what :meth:`prepare` makes of it, or the exception
        preparing it raised (such a circuit fails alone). The default prepares them one at a
        time; a backend that prepares many at once faster (one transpiler call) overrides it.
        """
        out: list[Any] = []
        for circuit in circuits:
            try:
                out.append(self.prepare(circuit))
            except Exception as exc:
                out.append(exc)
        return out

    async def aprepare(self, circuit: Any) -> Any:
        """:meth:`prepare` for callers on the event loop.

        Backends whose preparation can take long (transpiling a large circuit) override it to
        do the work off the loop. The default calls :meth:`prepare` inline.
        """
        return self.prepare(circuit)

    def routing_overhead(self, prepared: Any) -> RoutingOverhead | None:
        """What fitting a circuit to this backend's coupling map added to it.

        ``prepared`` is what :meth:`prepare` returned. The scheduler records the answer on
        the task's routing decision (``RoutingDecision.overhead``) once the circuit ran.
        The default, for backends that run circuits as given, is None.
        """
        return None

    async def start(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Start what the backend runs on (worker processes, connections) ahead of the
        first job. Optional: :meth:`run` starts them lazily otherwise."""

    @abc.abstractmethod
    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        """Run one job: every circuit in ``jobs`` (at most ``max_circuits_per_job``).

        A backend with :attr:`supports_reattach` runs a job as
        ``await self.reattach(await self.submit_job(jobs))`` (:meth:`submit_and_reattach`);
        the scheduler then calls the two halves itself rather than :meth:`run`.

        Returns:
            One outcome per circuit, in order: its counts (summing to its shots), or the
            exception that circuit alone raised.

        Raises:
            TransientBackendError: The whole job failed for a passing reason; retry.
            BackendUnavailableError: The backend is down; reroute.
            PermanentBackendError: The whole job is invalid; do not retry.
        """

    async def submit_and_reattach(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        """:meth:`run` for a backend with :attr:`supports_reattach`: :meth:`submit_job`, then
        :meth:`reattach` with the ID it returned. Such a backend's :meth:`run` may return
        this."""
        return await self.reattach(await self.submit_job(jobs))

    async def prepare_and_run(
        self, jobs: Sequence[CircuitJob]
    ) -> tuple[list[Any], list[JobOutcome]]:
        """Prepare the circuits of a job (as submitted) and run those that could be prepared.

        What the scheduler calls for a job on a backend that prepares circuits (one that
        overrides :meth:`prepare` or :meth:`prepare_many`) that takes no jobs back
        (:attr:`supports_withdrawal` is False) and has no job IDs (:attr:`supports_reattach`
        is False). The default prepares them all with
        :func:`prepare_all` in a worker thread, then calls :meth:`run` with those that could
        be prepared: two hand-offs from the event loop. A backend that does both in one
        hand-off to its worker overrides it, which saves a thread round trip per job.

        Returns:
            The circuits as prepared (None for one that could not be), and one outcome per
            circuit as :meth:`run` returns them (a circuit that could not be prepared gets
            the error that says why).

        Raises:
            What :meth:`run` raises when the job fails as a whole.
        """
        jobs = list(jobs)
        prepared, errors = await asyncio.to_thread(prepare_all, self, [j.circuit for j in jobs])
        live = [i for i in range(len(jobs)) if i not in errors]
        outcomes: dict[int, JobOutcome] = dict(errors)
        if live:
            ran = await self.run([dataclasses.replace(jobs[i], circuit=prepared[i]) for i in live])
            if len(ran) != len(live):
                raise TransientBackendError(
                    self.name, f"returned {len(ran)} outcomes for {len(live)} circuits"
                )
            for i, outcome in zip(live, ran, strict=True):
                outcomes[i] = outcome
        return prepared, [outcomes[i] for i in range(len(jobs))]

    async def check_health(self) -> bool:
        """Probe the backend; True if it can take work (used to close a tripped breaker)."""
        return True

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release what the backend holds (processes, connections)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.num_qubits} qubits>"


def prepare_all(
    backend: Backend, circuits: Sequence[Any]
) -> tuple[list[Any], dict[int, BaseException]]:
    """Prepare every circuit of a job for ``backend`` with :meth:`Backend.prepare_many`.

    Blocking: call it in a worker thread. A circuit that cannot be prepared fails alone.

    Returns:
        The prepared circuits (None where preparing failed) and, by index, the errors of
        those that failed: a ``BackendError`` as raised, anything else wrapped in a
        ``PermanentBackendError`` that says the circuit could not be prepared.
    """
    try:
        out = backend.prepare_many(circuits)
        if len(out) != len(circuits):
            raise TypeError(f"prepare_many returned {len(out)} entries for {len(circuits)}")
    except Exception as exc:
        failure = PermanentBackendError(backend.name, f"cannot prepare the job: {exc}")
        failure.__cause__ = exc
        return [None] * len(circuits), dict.fromkeys(range(len(circuits)), failure)
    errors: dict[int, BaseException] = {}
    for i, prepared in enumerate(out):
        if isinstance(prepared, BaseException):
            out[i] = None
            if isinstance(prepared, BackendError):
                errors[i] = prepared
            else:
                errors[i] = PermanentBackendError(
                    backend.name, f"cannot prepare circuit: {prepared}"
                )
                errors[i].__cause__ = prepared
    return out, errors
