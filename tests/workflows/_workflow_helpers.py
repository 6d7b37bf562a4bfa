"""Shared pieces of the workflow tests that use Qiskit: Aer behind the scheduler's Qiskit
adapter, and a backend that records the jobs it is given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from logosq_os_scheduler.backends import Backend, CircuitJob, JobOutcome


def aer_backend(name: str = "aer", seed: int = 1234) -> Backend:
    """Aer behind the scheduler's Qiskit adapter: one simulator thread (the test machine is
    small and shared) and in-process, so that no worker process has to start."""
    adapter = pytest.importorskip(
        "logosq_os_scheduler.backends._qiskit",
        reason="needs the scheduler's Qiskit adapter",
    )
    from qiskit_aer import AerSimulator

    backend: Backend = adapter.QiskitBackend(
        AerSimulator(), name=name, isolation="thread", simulator_threads=1, seed=seed
    )
    return backend


class Recording(Backend):
    """A real backend with a log: passes every job to ``inner`` and notes its size."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.jobs: list[int] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def num_qubits(self) -> int:
        return self.inner.num_qubits

    @property
    def max_circuits_per_job(self) -> int:
        return self.inner.max_circuits_per_job

    def prepare(self, circuit: Any) -> Any:
        return self.inner.prepare(circuit)

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        self.jobs.append(len(jobs))
        return await self.inner.run(jobs)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def runs_hybrid_algorithms() -> bool:
    """Whether this scheduler runs ``Task.hybrid(...).with_algorithm(...)`` tasks."""
    from logosq_os_scheduler import InvalidTaskError, QuantumScheduler, Task
    from logosq_os_scheduler.workflows import AlgorithmResult

    class Nothing:
        async def run(self, scheduler: Any, **_: Any) -> AlgorithmResult:
            return AlgorithmResult(0.0, (), (), 0, 0, (), 0.0, True)

    async with QuantumScheduler(1) as s:
        try:
            await (await s.submit(Task.hybrid("probe").with_algorithm(Nothing())))
        except InvalidTaskError as exc:
            if exc.field == "algorithm":
                return False
            raise
    return True
