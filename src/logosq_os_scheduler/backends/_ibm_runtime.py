"""IBMRuntimeBackend: IBM Quantum through qiskit-ibm-runtime's Sampler primitive.

Circuits run as Qiskit Runtime Sampler jobs, in any of its three execution modes: ``"job"``
(each job on its own), ``"batch"`` (the jobs share a ``Batch``, which the service may run
side by side) or ``"session"`` (a ``Session``: exclusive, iterative access to the device).
Each scheduler job is one Sampler job, and its ID is the provider's job ID (see
:mod:`._provider_counts` for a job whose circuits differ in shots).

Two places it runs, told apart by the backend it is given:

* **The IBM Quantum service**: a backend from ``QiskitRuntimeService(...).backend(name)``
  (an ``IBMBackend``). Jobs live at the service, so :attr:`~Backend.supports_reattach` is
  True: a scheduler restarted after a crash collects them by ID through
  ``QiskitRuntimeService.job(job_id)``.
* **Local testing mode**: any other ``BackendV2``, such as the offline device models of
  ``qiskit_ibm_runtime.fake_provider`` (``FakeManilaV2``, ``FakeBrisbane``: noisy, from their
  calibration data) or an ``AerSimulator`` (ideal). The same Sampler, ``Batch`` and
  ``Session`` classes run the job in this process, on Aer. Local jobs have IDs but die with
  the process, and the local service has no way to find a job by ID (it has no ``job()``),
  so :attr:`~Backend.supports_reattach` is False: after a restart the tasks run again.

The Sampler is qiskit-ibm-runtime's current one, the client-side
``qiskit_ibm_runtime.executor_sampler.Sampler`` (0.50 and later deprecate ``SamplerV2``);
with an older qiskit-ibm-runtime, ``SamplerV2``.

Imports qiskit-ibm-runtime only when an :class:`IBMRuntimeBackend` is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .._errors import (
    BackendUnavailableError,
    InvalidConfigError,
    MissingExtraError,
    PermanentBackendError,
    SchedulerError,
    TransientBackendError,
)
from ._base import Backend, CircuitJob, JobOutcome
from ._circuits import measured_circuit
from ._provider_counts import join_job_ids, join_registers, runs_of_equal_shots, split_job_id

__all__ = ["Execution", "IBMRuntimeBackend", "IsaCircuit"]

Execution = Literal["job", "batch", "session"]

# Statuses of a service job after which it changes no more (RuntimeJobV2.JOB_FINAL_STATES).
_FINAL = frozenset({"DONE", "CANCELLED", "ERROR"})


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class IsaCircuit:
    """A circuit transpiled for one :class:`IBMRuntimeBackend`'s device (an ISA circuit, as
    the Sampler takes it), as :meth:`IBMRuntimeBackend.prepare` returns it.

    Attributes:
        circuit: The transpiled circuit, on the device's physical qubits.
        source: The circuit as submitted (after :func:`normalize_circuit`).
        backend_token: Identifies the backend that prepared it; another backend prepares
            ``source`` again.
    """

    circuit: Any
    source: Any
    backend_token: object

    @property
    def num_qubits(self) -> int:
        """Qubits of the transpiled circuit (the device's)."""
        return int(self.circuit.num_qubits)


class IBMRuntimeBackend(Backend):
    """An IBM Quantum device, or its offline model, run through qiskit-ibm-runtime's Sampler.

    Register it like any backend: ``await scheduler.register_backend("ibm",
    IBMRuntimeBackend(FakeManilaV2(), execution="batch"))``. Each result carries the Sampler
    job's ID (``TaskResult.job_id``).

    Args:
        backend: Where jobs run. An ``IBMBackend`` (``QiskitRuntimeService(...).backend(
            "ibm_brisbane")``) runs them at the service; any other ``BackendV2`` (a device
            model of ``qiskit_ibm_runtime.fake_provider``, an ``AerSimulator``) runs them in
            qiskit-ibm-runtime's local testing mode.
        execution: ``"job"`` (default), ``"batch"`` or ``"session"``: Qiskit Runtime's
            execution mode. The ``Batch`` or ``Session`` is opened on the first job and
            closed by :meth:`aclose` (call it when done: a scheduler closes only the backends
            it built); one that fails to take a job is dropped, and the next job opens a new
            one.
        name: The name to report (default: the device's).
        optimization_level: The preset pass manager's level (0 to 3) for transpiling
            circuits to the device's instruction set (ISA), done once per task in
            :meth:`prepare`. Default: 2 (Qiskit's own default) for a device with a coupling
            map, as :class:`QiskitBackend`; 1 without one.
        seed: Seeds the transpiler and, in local testing mode, the simulator (the Sampler's
            ``simulator.seed_simulator`` option), so that equal jobs give equal counts.
        sampler_options: Options for the Sampler (its ``options`` argument, as a mapping,
            such as ``{"twirling": {"enable_measure": False}}``); applied to every job.
        max_concurrent_jobs: Jobs the scheduler keeps at the backend at once (at the
            service, waiting jobs wait in IBM's queue).
        max_circuits_per_job: Circuits one Sampler job may carry (default: the device's
            ``max_circuits``, or 100).
        poll_interval: Seconds between status queries while waiting for a service job.
            Local jobs are awaited directly.

    Raises:
        MissingExtraError: If qiskit-ibm-runtime is not installed (the ``qiskit`` extra).
        InvalidConfigError: If a setting is out of range or the backend is not a
            ``BackendV2``.
    """

    def __init__(
        self,
        backend: Any,
        *,
        execution: Execution = "job",
        name: str | None = None,
        optimization_level: int | None = None,
        seed: int | None = None,
        sampler_options: Mapping[str, Any] | None = None,
        max_concurrent_jobs: int = 1,
        max_circuits_per_job: int | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        try:
            from qiskit.providers import BackendV2
            from qiskit.transpiler import generate_preset_pass_manager
            from qiskit_ibm_runtime import IBMBackend
        except ImportError as exc:
            raise MissingExtraError("qiskit", "IBMRuntimeBackend") from exc
        if not isinstance(backend, BackendV2):
            raise InvalidConfigError(
                "backend",
                f"expected a qiskit BackendV2 (QiskitRuntimeService().backend(name), or a "
                f"device model such as FakeManilaV2()), got {type(backend).__name__}",
            )
        if execution not in ("job", "batch", "session"):
            raise InvalidConfigError(
                "execution", f"must be 'job', 'batch' or 'session', got {execution!r}"
            )
        if optimization_level not in (None, 0, 1, 2, 3):
            raise InvalidConfigError(
                "optimization_level", f"must be 0, 1, 2 or 3, got {optimization_level!r}"
            )
        for setting, count in (
            ("max_concurrent_jobs", max_concurrent_jobs),
            ("max_circuits_per_job", max_circuits_per_job),
        ):
            if count is not None and (
                isinstance(count, bool) or not isinstance(count, int) or count < 1
            ):
                raise InvalidConfigError(setting, f"must be an int >= 1, got {count!r}")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)):
            raise InvalidConfigError("poll_interval", f"must be > 0 seconds, got {poll_interval!r}")
        if not 0 < poll_interval < math.inf:
            raise InvalidConfigError("poll_interval", f"must be > 0 seconds, got {poll_interval!r}")

        from ._qiskit._adapter import _coupling_of, _median_two_qubit_error

        self._backend = backend
        self._local = not isinstance(backend, IBMBackend)
        # The service that holds the jobs, to find one by ID after a restart (None: local).
        self._service = None if self._local else backend.service
        self._execution: Execution = execution
        self._name = name or str(backend.name)
        self._seed = seed
        self._sampler_options = dict(sampler_options or {})
        self._max_concurrent_jobs = max_concurrent_jobs
        self._max_circuits_per_job = (
            max_circuits_per_job or getattr(backend, "max_circuits", None) or 100
        )
        declared = backend.num_qubits or backend.target.num_qubits
        if not declared:
            raise InvalidConfigError("backend", f"{type(backend).__name__} declares no qubit count")
        self._num_qubits = int(declared)
        self._coupling = _coupling_of(backend)
        if optimization_level is None:
            optimization_level = 2 if self._coupling else 1
        self._optimization_level = optimization_level
        self._error_rate = _median_two_qubit_error(backend.target)
        self._poll_interval = float(poll_interval)
        self._token = object()
        self._pass_manager = generate_preset_pass_manager(
            optimization_level=optimization_level, backend=backend, seed_transpiler=seed
        )
        # The pass manager is not safe to run from two threads at once.
        self._transpile_lock = threading.Lock()
        # The open Batch or Session (execution "batch"/"session"), opened on the first job.
        self._mode: Any = None
        self._mode_lock = threading.Lock()
        # Jobs this process submitted and has not collected yet: job ID -> provider jobs, in
        # order. In local testing mode this is the only way back to a job.
        self._jobs: dict[str, list[Any]] = {}

    # --- shape, capacity, quality -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The backend's name."""
        return self._name

    @property
    def num_qubits(self) -> int:
        """Qubits of the device."""
        return self._num_qubits

    @property
    def coupling_map(self) -> frozenset[tuple[int, int]] | None:
        """The device's coupled qubit pairs (both directions), or None when unconstrained."""
        return self._coupling

    @property
    def max_concurrent_jobs(self) -> int:
        """Jobs it takes at once."""
        return self._max_concurrent_jobs

    @property
    def max_circuits_per_job(self) -> int:
        """Circuits one Sampler job may carry."""
        return self._max_circuits_per_job

    @property
    def error_rate(self) -> float | None:
        """Median two-qubit gate error from the device's Target, or None if it has none."""
        return self._error_rate

    @property
    def supports_job_ids(self) -> bool:
        """True: every job has the Sampler job's ID."""
        return True

    @property
    def supports_reattach(self) -> bool:
        """True at the IBM Quantum service, whose jobs outlive this process; False in local
        testing mode, whose jobs die with it and cannot be found by ID."""
        return not self._local

    @property
    def local(self) -> bool:
        """Whether jobs run in qiskit-ibm-runtime's local testing mode (in this process)."""
        return self._local

    @property
    def execution(self) -> Execution:
        """The execution mode: ``"job"``, ``"batch"`` or ``"session"``."""
        return self._execution

    @property
    def backend(self) -> Any:
        """The device (an ``IBMBackend``, or the ``BackendV2`` of local testing mode)."""
        return self._backend

    def properties(self) -> Mapping[str, Any]:
        """Facts about the backend worth recording (and signing) with a result."""
        import qiskit_ibm_runtime

        backend = self._backend
        return {
            **super().properties(),
            "provider": "ibm-quantum",
            "backend_name": str(backend.name),
            "backend_class": f"{type(backend).__module__}.{type(backend).__qualname__}",
            "execution": self._execution,
            "local_testing_mode": self._local,
            "error_rate": self._error_rate,
            "optimization_level": self._optimization_level,
            "seed": self._seed,
            "qiskit_ibm_runtime_version": qiskit_ibm_runtime.__version__,
        }

    # --- preparing --------------------------------------------------------------------------

    def prepare(self, circuit: Any) -> IsaCircuit:
        """Transpile a circuit to the device's instruction set, as the Sampler requires.

        Accepts a ``QuantumCircuit``, OpenQASM text, or an :class:`IsaCircuit` (returned as
        is if this backend prepared it, prepared again from its source otherwise).

        Raises:
            InvalidTaskError: If OpenQASM text is malformed.
            PermanentBackendError: If the circuit is not a Qiskit circuit, measures nothing,
                or cannot be transpiled for this device.
        """
        if isinstance(circuit, IsaCircuit):
            if circuit.backend_token is self._token:
                return circuit
            circuit = circuit.source
        qc = measured_circuit(self._name, circuit)
        try:
            with self._transpile_lock:
                isa = self._pass_manager.run(qc)
        except Exception as exc:
            raise PermanentBackendError(
                self._name, f"cannot transpile the circuit for {self._backend.name}: {exc}"
            ) from exc
        return IsaCircuit(isa, qc, self._token)

    # --- running ----------------------------------------------------------------------------

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        """Run one job: :meth:`submit_job`, then :meth:`reattach`."""
        return await self.submit_and_reattach(jobs)

    async def submit_job(self, jobs: Sequence[CircuitJob]) -> str:
        """Send the job to the Sampler; return the Sampler job's ID once it is submitted.

        Circuits not prepared by this backend are prepared first (one that cannot be fails
        the job: the scheduler prepares each task's circuit before it sends a job).

        Raises:
            PermanentBackendError: The job is empty or too large, a circuit cannot be
                prepared, or the Sampler refused the job's input.
            BackendUnavailableError: The service could not be reached.
            TransientBackendError: Submitting failed otherwise.
        """
        if not jobs or len(jobs) > self._max_circuits_per_job:
            raise PermanentBackendError(
                self._name,
                f"a job carries 1 to {self._max_circuits_per_job} circuits, got {len(jobs)}",
            )
        job_id, submitted = await asyncio.to_thread(self._submit, list(jobs))
        self._jobs[job_id] = submitted
        return job_id

    def _submit(self, jobs: list[CircuitJob]) -> tuple[str, list[Any]]:
        """Blocking: prepare, open the mode if needed, and submit one Sampler job per run of
        circuits with equal shots. Returns the job ID and the Sampler jobs."""
        circuits = [self.prepare(job.circuit).circuit for job in jobs]
        submitted: list[Any] = []
        try:
            sampler = self._sampler()
            for run in runs_of_equal_shots([job.shots for job in jobs]):
                pubs = [(circuits[i],) for i in run]
                submitted.append(sampler.run(pubs, shots=jobs[run.start].shots))
        except Exception as exc:
            _cancel_quietly(submitted)  # the job failed as a whole: none of it is collected
            if isinstance(exc, SchedulerError):
                raise
            if self._execution != "job":
                self._drop_mode()  # a closed or expired Batch/Session: open a new one next
            raise self._failure(exc, "submitting a job") from exc
        return join_job_ids(str(job.job_id()) for job in submitted), submitted

    def _sampler(self) -> Any:
        """A Sampler on this backend's mode (the device, or the open Batch/Session)."""
        sampler_class = _sampler_class()
        mode = self._backend if self._execution == "job" else self._open_mode()
        sampler = sampler_class(mode=mode, options=dict(self._sampler_options) or None)
        if self._local and self._seed is not None:
            sampler.options.simulator.seed_simulator = self._seed
        return sampler

    def _open_mode(self) -> Any:
        with self._mode_lock:
            if self._mode is None:
                from qiskit_ibm_runtime import Batch, Session

                cls = Batch if self._execution == "batch" else Session
                self._mode = cls(backend=self._backend)
            return self._mode

    def _drop_mode(self) -> None:
        with self._mode_lock:
            mode, self._mode = self._mode, None
        if mode is not None:
            # It is being replaced or closed for good; closing a failed one may fail too.
            with contextlib.suppress(Exception):
                mode.close()

    async def reattach(self, job_id: str) -> list[JobOutcome]:
        """Wait for the job ``job_id`` and return one outcome (counts) per circuit.

        A job this process submitted is awaited directly. At the service, any other job is
        found with ``QiskitRuntimeService.job``, so a job submitted by a process that has
        since died is collected. In local testing mode only this process's jobs can be.

        Raises:
            PermanentBackendError: No job with this ID is known (in local testing mode: not
                submitted by this process), or its input was refused.
            TransientBackendError: The job failed or was cancelled as a whole; send it again.
            BackendUnavailableError: The service could not be reached; the job may still
                run there, and reattaching later may collect it.
        """
        try:
            parts = self._jobs.get(job_id)
            if parts is None:
                parts = await self._retrieve(job_id)
            outcomes: list[JobOutcome] = []
            for job in parts:
                result = await self._result(job)
                outcomes.extend(_counts_of(pub) for pub in result)
        except asyncio.CancelledError:
            raise  # the job runs on, and reattaching again collects it
        except BaseException:
            self._jobs.pop(job_id, None)
            raise
        self._jobs.pop(job_id, None)
        return outcomes

    async def _retrieve(self, job_id: str) -> list[Any]:
        """The service's jobs behind ``job_id`` (one per part), found by ID."""
        ids = split_job_id(job_id)
        if self._service is None or not ids:
            raise PermanentBackendError(
                self._name,
                f"knows no job {job_id!r}: in qiskit-ibm-runtime's local testing mode a job "
                "lives only in the process that submitted it, and the local service cannot "
                "retrieve a job by ID",
            )
        service = self._service

        def retrieve() -> list[Any]:
            from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

            try:
                return [service.job(part) for part in ids]
            except RuntimeJobNotFound as exc:
                raise PermanentBackendError(
                    self._name, f"the IBM Quantum service knows no job {job_id!r}: {exc}"
                ) from exc
            except SchedulerError:
                raise
            except Exception as exc:
                raise self._failure(exc, f"retrieving job {job_id!r}") from exc

        return await asyncio.to_thread(retrieve)

    async def _result(self, job: Any) -> Any:
        """The result of one Sampler job: local jobs awaited in a thread, service jobs
        polled (cancelling the wait leaves the job at the service)."""
        if not self._local:
            while True:
                status = await asyncio.to_thread(_status_of, job)
                if status in _FINAL:
                    break
                await asyncio.sleep(self._poll_interval)
            if status == "CANCELLED":
                raise TransientBackendError(
                    self._name, f"job {job.job_id()} was cancelled at the service"
                )
        try:
            return await asyncio.to_thread(job.result)
        except SchedulerError:
            raise
        except Exception as exc:
            raise self._failure(exc, f"job {job.job_id()}") from exc

    def _failure(self, exc: BaseException, what: str) -> SchedulerError:
        """The scheduler's error for a provider's exception."""
        from qiskit_ibm_runtime.exceptions import (
            IBMInputValueError,
            IBMNotAuthorizedError,
            RuntimeJobFailureError,
        )

        message = f"{what} failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, (IBMInputValueError, IBMNotAuthorizedError, ValueError, TypeError)):
            return PermanentBackendError(self._name, message)
        if isinstance(exc, RuntimeJobFailureError):
            return TransientBackendError(self._name, message)
        if _is_connection_error(exc):
            return BackendUnavailableError(self._name, message)
        return TransientBackendError(self._name, message)

    async def check_health(self) -> bool:
        """Local: True. At the service: whether the device reports itself operational."""
        if self._local:
            return True
        try:
            status = await asyncio.to_thread(self._backend.status)
        except Exception:
            return False
        return bool(getattr(status, "operational", False))

    async def aclose(self) -> None:
        """Close the open Batch or Session, if any (its running jobs finish)."""
        if self._mode is not None:
            await asyncio.to_thread(self._drop_mode)


def _sampler_class() -> Any:
    """qiskit-ibm-runtime's current Sampler: the client-side one where it exists."""
    try:
        from qiskit_ibm_runtime.executor_sampler import Sampler
    except ImportError:  # before qiskit-ibm-runtime 0.50
        from qiskit_ibm_runtime import SamplerV2 as Sampler
    return Sampler


def _cancel_quietly(jobs: Sequence[Any]) -> None:
    """Cancel the parts of a job that were submitted before another part failed (best
    effort: a local job may have finished, a service may refuse)."""
    for job in jobs:
        with contextlib.suppress(Exception):
            job.cancel()


def _status_of(job: Any) -> str:
    """A job's status as a name (``"DONE"``...), whether it is given as a string (service
    jobs) or as Qiskit's ``JobStatus`` (local jobs)."""
    status = job.status()
    return str(getattr(status, "name", status))


def _counts_of(pub_result: Any) -> dict[str, int]:
    """Counts in the scheduler's convention from one Sampler pub result: its classical
    registers (the fields of its data, in the circuit's order) joined as Aer joins them."""
    data = pub_result.data
    return join_registers([data[name].get_bitstrings() for name in data])


def _is_connection_error(exc: BaseException) -> bool:
    """Whether an exception says the service could not be reached."""
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    return isinstance(exc, (ConnectionError, TimeoutError, OSError, RequestsApiError))
