"""BraketBackend: Amazon Braket devices, local or in the cloud, through amazon-braket-sdk.

Circuits go to Braket as OpenQASM 3 programs (``braket.ir.openqasm.Program``): each circuit
is transpiled by Qiskit to gates Braket knows, written out with Braket's own gate names
(``cnot``, ``si``, ``phaseshift``, ...; Braket's simulators read no ``stdgates.inc``) and
run as one Braket quantum task, whose ID is kept as the job's ID. The program measures the
qubits the circuit measures, each into a bit of its own, and the counts are read back onto
the circuit's classical bits, so a circuit's measurements must come last (no gate on a
measured qubit, no qubit measured twice, no classical control).

Two places it runs, told apart by the device it is given:

* **Braket's local simulators**: ``braket.devices.LocalSimulator`` (``"braket_sv"`` state
  vector by default, ``"braket_dm"`` density matrix), in this process. Tasks have IDs but die
  with the process, and cannot be found by ID later: :attr:`~Backend.supports_reattach` is
  False, and after a restart the tasks run again.
* **Amazon Braket in the cloud**: ``braket.aws.AwsDevice(arn)`` (a QPU or a managed
  simulator), with the account's AWS credentials. Tasks live at Braket, so
  :attr:`~Backend.supports_reattach` is True: a restarted scheduler collects them by ARN
  through ``braket.aws.AwsQuantumTask(arn)``.

Imports amazon-braket-sdk (and Qiskit) only when a :class:`BraketBackend` is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

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
from ._provider_counts import join_job_ids, split_job_id

__all__ = ["BraketBackend", "BraketProgram"]

# Qiskit gate name -> Braket's OpenQASM gate name, for the gates a circuit is transpiled to.
_GATES: Mapping[str, str] = {
    "id": "i",
    "x": "x",
    "y": "y",
    "z": "z",
    "h": "h",
    "s": "s",
    "sdg": "si",
    "t": "t",
    "tdg": "ti",
    "sx": "v",
    "sxdg": "vi",
    "rx": "rx",
    "ry": "ry",
    "rz": "rz",
    "p": "phaseshift",
    "cx": "cnot",
    "cy": "cy",
    "cz": "cz",
    "cp": "cphaseshift",
    "swap": "swap",
    "iswap": "iswap",
    "ecr": "ecr",
    "rxx": "xx",
    "ryy": "yy",
    "rzz": "zz",
    "ccx": "ccnot",
    "cswap": "cswap",
}
# Braket's task states after which a task changes no more.
_FAILED = frozenset({"FAILED", "CANCELLED"})
_TERMINAL = _FAILED | {"COMPLETED"}


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class BraketProgram:
    """A circuit as a :class:`BraketBackend` runs it, as :meth:`BraketBackend.prepare`
    returns it.

    Attributes:
        qasm: The OpenQASM 3 program Braket runs (Braket's gate names, then one
            ``b[i] = measure q[j];`` per measured qubit).
        registers: For each classical register of the circuit, in order, the program qubit
            each of its bits measures, in bit order (None for a bit nothing measures).
        num_qubits: Qubits of the program (the circuit's qubits that something acts on).
        source: The circuit as submitted (after :func:`normalize_circuit`).
        backend_token: Identifies the backend that prepared it.
    """

    qasm: str
    registers: tuple[tuple[int | None, ...], ...]
    num_qubits: int
    source: Any
    backend_token: object


class BraketBackend(Backend):
    """An Amazon Braket device: a local simulator, or a cloud device by its ARN.

    Register it like any backend: ``await scheduler.register_backend("braket",
    BraketBackend())``. Each result carries the Braket task's ID (``TaskResult.job_id``).

    Args:
        device: ``None`` (default) or a local simulator's name (``"braket_sv"``,
            ``"braket_dm"``): a ``LocalSimulator``; a device ARN (``"arn:aws:braket:..."``):
            an ``AwsDevice`` (needs AWS credentials; its properties are fetched now); or a
            ``braket.devices.Device`` built already.
        name: The name to report (default: the device's).
        num_qubits: Qubits to declare (default: the device's ``qubitCount``).
        max_concurrent_jobs: Jobs the scheduler keeps at the device at once.
        max_circuits_per_job: Circuits per job. Each circuit is one Braket task; with the
            default 1 a job's ID is its task's ID, with more it is their IDs joined by ``,``.
        optimization_level: The Qiskit preset pass manager's level (0 to 3) for translating
            circuits to Braket's gates.
        s3_destination_folder: ``(bucket, prefix)`` for a cloud device's results (default:
            the SDK's default bucket). Not used by local simulators.
        poll_interval: Seconds between state queries while waiting for a cloud task.

    Raises:
        MissingExtraError: If amazon-braket-sdk or Qiskit is not installed (the ``braket``
            extra).
        InvalidConfigError: If a setting is out of range or the device is not a Braket
            device.
    """

    def __init__(
        self,
        device: Any = None,
        *,
        name: str | None = None,
        num_qubits: int | None = None,
        max_concurrent_jobs: int = 1,
        max_circuits_per_job: int = 1,
        optimization_level: int = 1,
        s3_destination_folder: tuple[str, str] | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        try:
            from braket.aws import AwsDevice
            from braket.devices import Device, LocalSimulator
            from qiskit.transpiler import generate_preset_pass_manager
        except ImportError as exc:
            raise MissingExtraError("braket", "BraketBackend") from exc
        for setting, count in (
            ("max_concurrent_jobs", max_concurrent_jobs),
            ("max_circuits_per_job", max_circuits_per_job),
            ("num_qubits", num_qubits),
        ):
            if count is not None and (
                isinstance(count, bool) or not isinstance(count, int) or count < 1
            ):
                raise InvalidConfigError(setting, f"must be an int >= 1, got {count!r}")
        if optimization_level not in (0, 1, 2, 3):
            raise InvalidConfigError(
                "optimization_level", f"must be 0, 1, 2 or 3, got {optimization_level!r}"
            )
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)):
            raise InvalidConfigError("poll_interval", f"must be > 0 seconds, got {poll_interval!r}")
        if not 0 < poll_interval < math.inf:
            raise InvalidConfigError("poll_interval", f"must be > 0 seconds, got {poll_interval!r}")
        if device is None:
            device = LocalSimulator()
        elif isinstance(device, str):
            device = AwsDevice(device) if device.startswith("arn:") else LocalSimulator(device)
        if not isinstance(device, Device):
            raise InvalidConfigError(
                "device",
                "expected a Braket device (LocalSimulator(), AwsDevice(arn)), a local "
                f"simulator's name or a device ARN, got {type(device).__name__}",
            )
        self._device = device
        self._cloud = isinstance(device, AwsDevice)
        self._name = name or str(device.name)
        declared = num_qubits or _qubit_count(device)
        if not declared:
            raise InvalidConfigError(
                "num_qubits", f"{self._name} declares no qubit count: pass num_qubits=N"
            )
        self._num_qubits = int(declared)
        self._max_concurrent_jobs = max_concurrent_jobs
        self._max_circuits_per_job = max_circuits_per_job
        self._optimization_level = optimization_level
        self._s3 = s3_destination_folder
        self._poll_interval = float(poll_interval)
        self._token = object()
        # Braket compiles (and routes) a program for its device itself: Qiskit only
        # translates to gates Braket names.
        self._pass_manager = generate_preset_pass_manager(
            optimization_level=optimization_level, basis_gates=list(_GATES)
        )
        self._transpile_lock = threading.Lock()
        # Tasks this process submitted and has not collected: job ID -> (tasks, programs).
        self._jobs: dict[str, tuple[list[Any], list[BraketProgram]]] = {}

    # --- shape, capacity --------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The backend's name."""
        return self._name

    @property
    def num_qubits(self) -> int:
        """Qubits of the device."""
        return self._num_qubits

    @property
    def max_concurrent_jobs(self) -> int:
        """Jobs it takes at once."""
        return self._max_concurrent_jobs

    @property
    def max_circuits_per_job(self) -> int:
        """Circuits per job (one Braket task each)."""
        return self._max_circuits_per_job

    @property
    def supports_job_ids(self) -> bool:
        """True: every job has its Braket task's ID."""
        return True

    @property
    def supports_reattach(self) -> bool:
        """True for a cloud device, whose tasks outlive this process; False for a local
        simulator, whose tasks die with it and cannot be found by ID."""
        return self._cloud

    @property
    def device(self) -> Any:
        """The Braket device."""
        return self._device

    def properties(self) -> Mapping[str, Any]:
        """Facts about the backend worth recording (and signing) with a result."""
        from braket._sdk import __version__ as sdk_version

        return {
            **super().properties(),
            "provider": "amazon-braket",
            "device": str(self._device.name),
            "device_arn": str(self._device.arn) if self._cloud else None,
            "local": not self._cloud,
            "optimization_level": self._optimization_level,
            "amazon_braket_sdk_version": sdk_version,
        }

    # --- preparing --------------------------------------------------------------------------

    def prepare(self, circuit: Any) -> BraketProgram:
        """Translate a circuit to a Braket OpenQASM 3 program.

        Accepts a ``QuantumCircuit``, OpenQASM text, or a :class:`BraketProgram` (returned as
        is if this backend prepared it, prepared again from its source otherwise).

        Raises:
            InvalidTaskError: If OpenQASM text is malformed.
            PermanentBackendError: If the circuit is not a Qiskit circuit, measures nothing,
                has measurements that do not come last, or an operation Braket cannot run.
        """
        if isinstance(circuit, BraketProgram):
            if circuit.backend_token is self._token:
                return circuit
            circuit = circuit.source
        qc = measured_circuit(self._name, circuit)
        try:
            with self._transpile_lock:
                translated = self._pass_manager.run(qc)
        except Exception as exc:
            raise PermanentBackendError(
                self._name, f"cannot translate the circuit to Braket's gates: {exc}"
            ) from exc
        program = _to_openqasm(translated, self._name)
        if program.num_qubits > self._num_qubits:
            raise PermanentBackendError(
                self._name,
                f"the circuit acts on {program.num_qubits} qubits; {self._name} has "
                f"{self._num_qubits}",
            )
        return dataclasses.replace(program, source=qc, backend_token=self._token)

    # --- running ----------------------------------------------------------------------------

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        """Run one job: :meth:`submit_job`, then :meth:`reattach`."""
        return await self.submit_and_reattach(jobs)

    async def submit_job(self, jobs: Sequence[CircuitJob]) -> str:
        """Send each circuit of the job as a Braket task; return the task's ID (the tasks'
        IDs joined by ``,`` for a job of several).

        A local simulator has run the tasks by the time this returns (its ``run`` is
        synchronous); a cloud device has queued them.

        Raises:
            PermanentBackendError: The job is empty or too large, a circuit cannot be
                prepared, or Braket refused a task.
            BackendUnavailableError: Braket could not be reached.
            TransientBackendError: Submitting failed otherwise.
        """
        if not jobs or len(jobs) > self._max_circuits_per_job:
            raise PermanentBackendError(
                self._name,
                f"a job carries 1 to {self._max_circuits_per_job} circuits, got {len(jobs)}",
            )
        job_id, tasks, programs = await asyncio.to_thread(self._submit, list(jobs))
        self._jobs[job_id] = (tasks, programs)
        return job_id

    def _submit(self, jobs: list[CircuitJob]) -> tuple[str, list[Any], list[BraketProgram]]:
        from braket.ir.openqasm import Program

        programs = [self.prepare(job.circuit) for job in jobs]
        tasks: list[Any] = []
        for job, program in zip(jobs, programs, strict=True):
            options: dict[str, Any] = {"shots": job.shots}
            if self._cloud and self._s3 is not None:
                options["s3_destination_folder"] = self._s3
            try:
                tasks.append(self._device.run(Program(source=program.qasm), **options))
            except Exception as exc:
                # The job failed as a whole: its tasks sent already are never collected.
                for task in tasks:
                    with contextlib.suppress(Exception):
                        task.cancel()
                raise self._failure(exc, "submitting a task") from exc
        return join_job_ids(str(task.id) for task in tasks), tasks, programs

    async def reattach(self, job_id: str) -> list[JobOutcome]:
        """Wait for the task(s) of ``job_id`` and return one outcome (counts) per circuit.

        A job this process submitted is collected directly. For a cloud device, any other
        job is found by its task ARNs, so a job submitted by a process that has since died
        is collected. Its counts are read onto the circuit's classical registers when this
        process still knows the circuit; otherwise their keys hold the measured bits alone,
        the highest first (the same for a circuit with one register, all of it measured).

        Raises:
            PermanentBackendError: No job with this ID is known (for a local simulator: not
                submitted by this process), or Braket refused it.
            TransientBackendError: A task failed or was cancelled; send the job again.
            BackendUnavailableError: Braket could not be reached.
        """
        try:
            known = self._jobs.get(job_id)
            if known is None:
                tasks, programs = await self._retrieve(job_id), None
            else:
                tasks, programs = known
            outcomes: list[JobOutcome] = []
            for i, task in enumerate(tasks):
                result = await self._result(task)
                outcomes.append(
                    _counts_of(result, None if programs is None else programs[i].registers)
                )
        except asyncio.CancelledError:
            raise  # the tasks run on, and reattaching again collects them
        except BaseException:
            self._jobs.pop(job_id, None)
            raise
        self._jobs.pop(job_id, None)
        return outcomes

    async def _retrieve(self, job_id: str) -> list[Any]:
        arns = split_job_id(job_id)
        if not self._cloud or not arns:
            raise PermanentBackendError(
                self._name,
                f"knows no job {job_id!r}: a Braket local simulator's task lives only in the "
                "process that ran it, and cannot be retrieved by ID",
            )

        def retrieve() -> list[Any]:
            from braket.aws import AwsQuantumTask

            try:
                return [AwsQuantumTask(arn) for arn in arns]
            except Exception as exc:
                raise self._failure(exc, f"retrieving job {job_id!r}") from exc

        return await asyncio.to_thread(retrieve)

    async def _result(self, task: Any) -> Any:
        """One task's result: a cloud task's state polled until it is final (cancelling the
        wait leaves the task at Braket)."""
        if self._cloud:
            while True:
                try:
                    state = str(await asyncio.to_thread(task.state))
                except Exception as exc:
                    raise self._failure(exc, f"task {task.id}") from exc
                if state in _TERMINAL:
                    break
                await asyncio.sleep(self._poll_interval)
            if state in _FAILED:
                reason = (await asyncio.to_thread(task.metadata)).get("failureReason", "")
                raise TransientBackendError(
                    self._name, f"task {task.id} ended {state}: {reason or 'no reason given'}"
                )
        try:
            return await asyncio.to_thread(task.result)
        except SchedulerError:
            raise
        except Exception as exc:
            raise self._failure(exc, f"task {task.id}") from exc

    def _failure(self, exc: BaseException, what: str) -> SchedulerError:
        """The scheduler's error for a provider's exception."""
        message = f"{what} failed: {type(exc).__name__}: {exc}"
        response = getattr(exc, "response", None)  # botocore's ClientError carries one
        error = response.get("Error") if isinstance(response, dict) else None
        code = str(error.get("Code", "")) if isinstance(error, dict) else ""
        if code in ("ValidationException", "AccessDeniedException", "ResourceNotFoundException"):
            return PermanentBackendError(self._name, message)
        if isinstance(exc, (ValueError, TypeError, NotImplementedError)):
            return PermanentBackendError(self._name, message)
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or type(exc).__name__ in (
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "NoCredentialsError",
        ):
            return BackendUnavailableError(self._name, message)
        return TransientBackendError(self._name, message)

    async def check_health(self) -> bool:
        """Local: True. Cloud: whether the device's status is ``ONLINE``."""
        if not self._cloud:
            return True
        try:
            await asyncio.to_thread(self._device.refresh_metadata)
        except Exception:
            return False
        return str(self._device.status) == "ONLINE"


def _qubit_count(device: Any) -> int | None:
    paradigm = getattr(device.properties, "paradigm", None)
    count = getattr(paradigm, "qubitCount", None)
    return int(count) if isinstance(count, int) else None


def _to_openqasm(qc: Any, backend: str) -> BraketProgram:
    """``qc`` (already in the gates of ``_GATES``) as a Braket OpenQASM 3 program on the
    qubits it uses, and where its classical bits are measured.

    Raises:
        PermanentBackendError: An operation Braket cannot run here, an unbound parameter,
            or a measurement that does not come last.
    """
    index = {bit: i for i, bit in enumerate(qc.qubits)}
    clindex = {bit: i for i, bit in enumerate(qc.clbits)}
    used = sorted({index[q] for instruction in qc.data for q in instruction.qubits})
    program_qubit = {q: i for i, q in enumerate(used)}
    measured: dict[int, int] = {}  # classical bit -> program qubit
    done: set[int] = set()  # program qubits measured already
    body: list[str] = []
    for instruction in qc.data:
        name = instruction.operation.name
        if name == "barrier":
            continue
        qubits = [program_qubit[index[q]] for q in instruction.qubits]
        if name == "measure":
            clbit = clindex[instruction.clbits[0]]
            if qubits[0] in done or clbit in measured:
                raise PermanentBackendError(
                    backend,
                    "measures a qubit or a classical bit twice: a Braket program's "
                    "measurements come last, once per qubit",
                )
            measured[clbit] = qubits[0]
            done.add(qubits[0])
            continue
        braket_name = _GATES.get(name)
        if braket_name is None or instruction.clbits:
            raise PermanentBackendError(
                backend,
                f"cannot run the operation {name!r} on Braket (it runs gates and final "
                "measurements; no classical control, reset or mid-circuit measurement)",
            )
        if done.intersection(qubits):
            raise PermanentBackendError(
                backend,
                f"applies {name!r} to a qubit after measuring it: a Braket program's "
                "measurements come last",
            )
        try:
            params = [repr(float(p)) for p in instruction.operation.params]
        except TypeError as exc:
            raise PermanentBackendError(
                backend, f"the gate {name!r} has an unbound parameter: bind it first"
            ) from exc
        angle = f"({', '.join(params)})" if params else ""
        body.append(f"{braket_name}{angle} {', '.join(f'q[{q}]' for q in qubits)};")
    if not measured:
        raise PermanentBackendError(
            backend,
            "the circuit measures nothing, so it has no counts: add measurements "
            "(for example qc.measure_all())",
        )
    # Explicit measurements: a program without them has Braket measure only the qubits its
    # gates touch, renumbered from 0, which would lose which qubit is which.
    order = sorted(measured.items(), key=lambda item: item[0])
    body.append(f"bit[{len(order)}] b;")
    body.extend(f"b[{i}] = measure q[{q}];" for i, (_, q) in enumerate(order))
    registers = tuple(
        tuple(measured.get(clindex[bit]) for bit in register) for register in qc.cregs
    ) or (tuple(measured.get(i) for i in range(qc.num_clbits)),)  # loose bits: one register
    qasm = "\n".join(["OPENQASM 3.0;", f"qubit[{len(used)}] q;", *body, ""])
    return BraketProgram(qasm, registers, len(used), None, None)


def _counts_of(result: Any, registers: tuple[tuple[int | None, ...], ...] | None) -> dict[str, int]:
    """Counts from a Braket result: onto the circuit's classical registers when known (as
    Aer writes them), else the measured bits, highest first (Braket writes the program's
    bits in measurement order, which is bit order, lowest first)."""
    if registers is None:
        return {str(k)[::-1]: int(v) for k, v in result.measurement_counts.items()}
    import numpy as np

    measurements = np.asarray(result.measurements)
    column = {int(q): i for i, q in enumerate(result.measured_qubits)}
    shots = measurements.shape[0]
    zeros = np.zeros(shots, dtype=measurements.dtype)
    # Bits left to right: the last register first, each register's highest bit first.
    layout = [list(reversed(register)) for register in reversed(registers)]
    picked = [
        measurements[:, column[q]] if q is not None and q in column else zeros
        for register in layout
        for q in register
    ]
    rows, counts = np.unique(np.stack(picked, axis=1), axis=0, return_counts=True)
    out: dict[str, int] = {}
    for row, count in zip(rows.tolist(), counts.tolist(), strict=True):
        bits = "".join(str(int(b)) for b in row)
        parts, start = [], 0
        for register in layout:
            parts.append(bits[start : start + len(register)])
            start += len(register)
        out[" ".join(parts)] = int(count)
    return out
