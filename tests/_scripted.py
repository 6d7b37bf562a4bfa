"""A scripted Backend for testing scheduling policy against the Backend contract.

Like httpx's MockTransport: the test says what each job returns (or raises), can hold jobs
until it releases them, and reads back what the scheduler sent. It simulates nothing; tests
of real simulation use Aer and the Qiskit device models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from logosq_os_scheduler.backends import Backend, CircuitJob, JobOutcome

Script = Callable[[Sequence[CircuitJob]], Sequence[JobOutcome]]


def all_zeros(jobs: Sequence[CircuitJob]) -> list[JobOutcome]:
    return [{"0" * j.circuit.num_qubits: j.shots} for j in jobs]


class ScriptedBackend(Backend):
    def __init__(
        self,
        name: str,
        num_qubits: int = 5,
        *,
        coupling: frozenset[tuple[int, int]] | None = None,
        jobs: int = 1,
        per_job: int = 1,
        script: Script = all_zeros,
        job_seconds: float = 0.001,
        error_rate: float | None = None,
        in_flight: list[int] | None = None,
    ) -> None:
        self._name = name
        self._n = num_qubits
        self._coupling = coupling
        self._jobs = jobs
        self._per_job = per_job
        self.script = script
        self.job_seconds = job_seconds
        self._error_rate = error_rate
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.batches: list[list[int]] = []
        self.keys: list[str] = []
        self.running = 0
        self.max_running = 0
        # Shared across backends: circuits in flight everywhere, and the most seen at once.
        self.in_flight = in_flight if in_flight is not None else [0, 0]
        self.healthy = True
        # Seconds each job really takes (what estimate_job_seconds does not know).
        self.delay = 0.0

    @property
    def name(self) -> str:
        return self._name

    @property
    def num_qubits(self) -> int:
        return self._n

    @property
    def coupling_map(self) -> frozenset[tuple[int, int]] | None:
        return self._coupling

    @property
    def max_concurrent_jobs(self) -> int:
        return self._jobs

    @property
    def max_circuits_per_job(self) -> int:
        return self._per_job

    @property
    def error_rate(self) -> float | None:
        return self._error_rate

    def estimate_job_seconds(self, circuits: int, shots: int) -> float:
        return self.job_seconds

    async def check_health(self) -> bool:
        return self.healthy

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        self.batches.append([j.task_id for j in jobs])
        self.keys.extend(j.idempotency_key for j in jobs)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.in_flight[0] += len(jobs)
        self.in_flight[1] = max(self.in_flight[1], self.in_flight[0])
        self.started.set()
        try:
            if self.hold is not None:
                await self.hold.wait()
            else:
                await asyncio.sleep(self.delay)
            return self.script(jobs)
        finally:
            self.running -= 1
            self.in_flight[0] -= len(jobs)


def spec(n: int, *pairs: tuple[int, int]) -> Any:
    from logosq_os_scheduler.backends import CircuitSpec

    return CircuitSpec(n, tuple(pairs))
