"""A scheduler on a provider's backend in its own process, for the providers' restart tests.

python _provider_child.py ibm JOURNAL
    One Bell task (key "bell") on IBMRuntimeBackend(FakeManilaV2()) in qiskit-ibm-runtime's
    local testing mode. The job is submitted for real; collecting it never ends, so the
    child is still waiting for it when the test kills it.
python _provider_child.py braket JOURNAL
    The same on BraketBackend() (Braket's local state-vector simulator).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from logosq_os_scheduler import QuantumScheduler, Task


def bell() -> Any:
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


async def held(mode: str, journal: str) -> None:
    if mode == "ibm":
        from qiskit_ibm_runtime.fake_provider import FakeManilaV2

        from logosq_os_scheduler.backends import IBMRuntimeBackend

        class HeldIBM(IBMRuntimeBackend):
            async def reattach(self, job_id: str) -> Sequence[Any]:
                await asyncio.Event().wait()  # the job ran; this process never collects it
                raise AssertionError("unreachable")

        backend: Any = HeldIBM(FakeManilaV2(), name="ibm")
    else:
        from logosq_os_scheduler.backends import BraketBackend

        class HeldBraket(BraketBackend):
            async def reattach(self, job_id: str) -> Sequence[Any]:
                await asyncio.Event().wait()
                raise AssertionError("unreachable")

        backend = HeldBraket(name="braket")
    async with QuantumScheduler(1, journal=journal) as scheduler:
        await scheduler.register_backend(backend.name, backend)
        handle = await scheduler.submit(
            Task.quantum("bell").with_circuit(bell()).with_shots(200).with_key("bell")
        )
        await handle


def main() -> None:
    asyncio.run(held(sys.argv[1], sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
