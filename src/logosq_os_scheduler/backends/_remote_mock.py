"""RemoteMockBackend: a backend whose jobs run in the mock QPU service, outside this process.

The backend side of :class:`~logosq_os_scheduler.backends.MockQPUService` (its protocol is in
``_mock_qpu.py``): jobs have IDs that outlive the process that submitted them
(:attr:`~Backend.supports_reattach`), so a scheduler restarted after a crash can collect the
jobs its predecessor left running, and the service never executes an idempotency key twice
(:attr:`~Backend.supports_idempotency`). Each call opens its own connection to the service;
the backend holds nothing between calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any, TypeGuard

from .._errors import (
    BackendUnavailableError,
    InvalidConfigError,
    PermanentBackendError,
    TransientBackendError,
)
from ._base import Backend, CircuitJob, JobOutcome
from ._mock_qpu import DONE, ERROR, LINE_LIMIT, QUEUED, RUNNING

__all__ = ["RemoteMockBackend"]


class RemoteMockBackend(Backend):
    """A backend that runs its jobs in a :class:`MockQPUService`, by job ID.

    It takes any circuit with an int ``num_qubits`` (a :class:`CircuitSpec`, a Qiskit
    circuit) and sends the service only its width (its ``num_clbits``, when it has classical
    bits, else ``num_qubits``) and its shots; counts are uniform bitstrings of that width,
    the same every time for the same idempotency key. A circuit without an int width fails
    alone with :class:`PermanentBackendError`.

    Args:
        address: Where the service listens: ``(host, port)`` (``MockQPUService.address``) or
            ``"host:port"``.
        name: The backend's name.
        num_qubits: Qubits it declares.
        max_concurrent_jobs: Jobs the scheduler may have at the service at once.
        max_circuits_per_job: Circuits one job may carry.
        connect_timeout: Seconds to wait for a connection to the service.
        poll_timeout: Seconds one wait for a job may last at the service before it is asked
            again (a long poll: the answer comes as soon as the job ends).

    Raises:
        InvalidConfigError: If the address or a setting is malformed.
    """

    def __init__(
        self,
        address: tuple[str, int] | str,
        name: str = "remote-mock",
        *,
        num_qubits: int = 32,
        max_concurrent_jobs: int = 4,
        max_circuits_per_job: int = 100,
        connect_timeout: float = 5.0,
        poll_timeout: float = 10.0,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidConfigError("name", "a backend needs a non-empty name")
        self._host, self._port = _address(address)
        for setting, count in (
            ("num_qubits", num_qubits),
            ("max_concurrent_jobs", max_concurrent_jobs),
            ("max_circuits_per_job", max_circuits_per_job),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InvalidConfigError(setting, f"must be an int >= 1, got {count!r}")
        for setting, seconds in (
            ("connect_timeout", connect_timeout),
            ("poll_timeout", poll_timeout),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise InvalidConfigError(setting, f"must be > 0 seconds, got {seconds!r}")
        self._name = name
        self._num_qubits = num_qubits
        self._max_concurrent_jobs = max_concurrent_jobs
        self._max_circuits_per_job = max_circuits_per_job
        self._connect_timeout = float(connect_timeout)
        self._poll_timeout = float(poll_timeout)

    @property
    def name(self) -> str:
        """The backend's name."""
        return self._name

    @property
    def num_qubits(self) -> int:
        """Qubits it declares."""
        return self._num_qubits

    @property
    def max_concurrent_jobs(self) -> int:
        """Jobs it takes at once."""
        return self._max_concurrent_jobs

    @property
    def max_circuits_per_job(self) -> int:
        """Circuits one job may carry."""
        return self._max_circuits_per_job

    @property
    def supports_idempotency(self) -> bool:
        """True: the service never executes an idempotency key twice."""
        return True

    @property
    def supports_reattach(self) -> bool:
        """True: its jobs live in the service, and any process can collect them by ID."""
        return True

    @property
    def address(self) -> tuple[str, int]:
        """Where the service listens."""
        return (self._host, self._port)

    def properties(self) -> dict[str, Any]:
        """Facts worth recording with a result: the base ones and the service's address."""
        return {**super().properties(), "service": f"{self._host}:{self._port}"}

    async def submit_job(self, jobs: Sequence[CircuitJob]) -> str:
        """Send a job to the service; return its ID as soon as the service has it.

        A job whose idempotency keys are exactly those of one the service holds (sent again
        after a crash or a time-out) gets that job's ID back, and nothing runs twice.

        Raises:
            PermanentBackendError: If the job is empty or carries more than
                ``max_circuits_per_job`` circuits.
            BackendUnavailableError: If the service cannot be reached.
        """
        if not jobs or len(jobs) > self._max_circuits_per_job:
            raise PermanentBackendError(
                self._name,
                f"a job carries 1 to {self._max_circuits_per_job} circuits, got {len(jobs)}",
            )
        circuits = [_describe(job) for job in jobs]
        reply = await self._request({"op": "submit", "circuits": circuits})
        job_id = reply.get("job_id")
        if not isinstance(job_id, str):
            raise TransientBackendError(self._name, f"the service gave no job ID: {reply!r}")
        return job_id

    async def reattach(self, job_id: str) -> list[JobOutcome]:
        """Wait for the job ``job_id`` at the service (submitted by any process) and return
        one outcome per circuit.

        Raises:
            PermanentBackendError: If the service knows no job with this ID (it names it).
            TransientBackendError: If the job failed as a whole: send it again.
            BackendUnavailableError: If the service cannot be reached (the job may still be
                running there).
        """
        while True:
            reply = await self._request(
                {"op": "wait", "job_id": job_id, "timeout": self._poll_timeout},
                job_id=job_id,
            )
            status = reply.get("status")
            if status == DONE:
                return self._outcomes(job_id, reply.get("outcomes"))
            if status == ERROR:
                raise TransientBackendError(
                    self._name, f"job {job_id} failed: {reply.get('error')}"
                )
            if status not in (QUEUED, RUNNING):
                raise TransientBackendError(
                    self._name, f"job {job_id}: the service answered an unknown status {status!r}"
                )
            # Still queued or running when the long poll ended: ask again.

    async def job_status(self, job_id: str) -> str:
        """The job's status at the service now: ``"QUEUED"``, ``"RUNNING"``, ``"DONE"`` or
        ``"ERROR"`` (Qiskit's ``JobStatus`` names).

        Raises:
            PermanentBackendError: If the service knows no job with this ID.
            BackendUnavailableError: If the service cannot be reached.
        """
        reply = await self._request({"op": "wait", "job_id": job_id, "timeout": 0}, job_id=job_id)
        return str(reply.get("status"))

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        """Run one job: :meth:`submit_job`, then :meth:`reattach`."""
        return await self.submit_and_reattach(jobs)

    async def check_health(self) -> bool:
        """Whether the service answers."""
        try:
            await self._request({"op": "ping"})
        except BackendUnavailableError:
            return False
        return True

    async def _request(self, request: dict[str, Any], *, job_id: str | None = None) -> Any:
        """Send one request on a connection of its own; return the service's answer."""
        where = f"{self._host}:{self._port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port, limit=LINE_LIMIT),
                self._connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailableError(
                self._name, f"cannot reach the mock QPU service at {where}: {exc or 'timed out'}"
            ) from exc
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        except (OSError, ValueError) as exc:
            raise BackendUnavailableError(
                self._name, f"lost the connection to the mock QPU service at {where}: {exc}"
            ) from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not line:
            raise BackendUnavailableError(
                self._name, f"the mock QPU service at {where} closed the connection unanswered"
            )
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise TransientBackendError(self._name, f"unreadable answer: {line[:200]!r}") from exc
        if not isinstance(reply, dict):
            raise TransientBackendError(self._name, f"unreadable answer: {line[:200]!r}")
        if reply.get("ok") is not True:
            message = reply.get("message", reply)
            if reply.get("error") == "unknown-job":
                raise PermanentBackendError(
                    self._name, f"the mock QPU service at {where} knows no job with ID {job_id!r}"
                )
            raise PermanentBackendError(self._name, f"the service refused the request: {message}")
        return reply

    def _outcomes(self, job_id: str, raw: object) -> list[JobOutcome]:
        if not isinstance(raw, list):
            raise TransientBackendError(self._name, f"job {job_id}: no outcomes in the answer")
        out: list[JobOutcome] = []
        for item in raw:
            counts = item.get("counts") if isinstance(item, dict) else None
            if isinstance(counts, dict):
                out.append({str(k): int(v) for k, v in counts.items()})
            elif isinstance(item, dict) and item.get("error") == "permanent":
                out.append(PermanentBackendError(self._name, str(item.get("message"))))
            else:
                message = item.get("message") if isinstance(item, dict) else item
                out.append(TransientBackendError(self._name, str(message)))
        return out


def _describe(job: CircuitJob) -> dict[str, Any]:
    """What the service is told of a circuit: its width, shots and idempotency key."""
    circuit = job.circuit
    width = getattr(circuit, "num_qubits", None)
    clbits = getattr(circuit, "num_clbits", None)
    return {
        "num_qubits": width if _is_int(width) else None,
        "clbits": clbits if _is_int(clbits) and clbits > 0 else None,
        "shots": job.shots,
        "key": job.idempotency_key,
    }


def _address(address: object) -> tuple[str, int]:
    host, port = "", 0
    if isinstance(address, str):
        host, _, text = address.rpartition(":")
        port = int(text) if text.isdigit() else 0
    elif isinstance(address, tuple) and len(address) == 2:
        first, second = address
        if isinstance(first, str) and isinstance(second, int) and not isinstance(second, bool):
            host, port = first, second
    if not host or not 0 < port < 65536:
        raise InvalidConfigError(
            "address", f"expected (host, port) or 'host:port', got {address!r}"
        )
    return host, port


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
