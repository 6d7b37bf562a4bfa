"""A scheduler with a journal in its own process, for the journal's kill -9 tests.

python _journal_child.py crash JOURNAL ACKS N
    Recover JOURNAL, submit tasks t0..t{N-1} (idempotent by key; restartable squares),
    append each index to ACKS once its submit has returned, wait for all, print "done".
python _journal_child.py workflow JOURNAL
    The same for a HybridWorkflow of 40 iterations run as a hybrid task.
python _journal_child.py quantum JOURNAL
    Three quantum tasks in one job on a backend "qpu" whose jobs take an hour; print
    "ready" once they are running and written so, then wait to be killed.
python _journal_child.py remote JOURNAL HOST PORT
    Four quantum tasks on the mock QPU service at HOST:PORT (jobs by ID), then wait.
python _journal_child.py mixed JOURNAL ACKS HOST PORT N
    The crash test's workload: the VQE, then N tasks (classical squares with keys, every
    third a quantum task on the mock QPU service at HOST:PORT), each key appended to ACKS
    once its submit returned; wait for all, print "done".
python _journal_child.py hold JOURNAL
    One worker: a blocking task, then tasks of several priorities queued behind it;
    print "ready" once they are written, then wait to be killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import _journal_tasks as tasks
from logosq_os_scheduler import QuantumScheduler, Task, TaskPriority, TaskStatus


async def crash(journal: str, acks: str, n: int) -> None:
    async with QuantumScheduler(2, journal=journal) as scheduler:
        handles = []
        with open(acks, "a") as out:  # noqa: ASYNC230 - a test's log, written line by line
            for i in range(n):
                builder = (
                    Task.classical(f"square-{i}")
                    .with_function(tasks.square, i)
                    .with_key(f"t{i}")
                    .with_restartable()
                )
                handles.append(await scheduler.submit(builder))
                out.write(f"{i}\n")
                out.flush()
        for h in handles:
            await h
    print("done", flush=True)


async def hold(journal: str) -> None:
    scheduler = QuantumScheduler(1, journal=journal)
    async with scheduler:
        scheduler.submit_nowait(
            Task.classical("blocker").with_function(tasks.block, 60.0).with_key("blocker")
        )
        plan = [
            ("low-1", TaskPriority.LOW),
            ("normal-1", TaskPriority.NORMAL),
            ("high-1", TaskPriority.HIGH),
            ("normal-2", TaskPriority.NORMAL),
            ("critical-1", TaskPriority.CRITICAL),
            ("high-2", TaskPriority.HIGH),
        ]
        for tag, priority in plan:
            scheduler.submit_nowait(
                Task.classical(tag)
                .with_function(tasks.record, tag)
                .with_priority(priority)
                .with_key(tag)
            )
        await scheduler.persisted()
        print("ready", flush=True)
        await asyncio.sleep(3600)


def vqe_task() -> Task[Any]:
    from qiskit.circuit.library import real_amplitudes

    from logosq_os_scheduler.workflows import VQE, Adam, h2_hamiltonian

    algorithm = VQE(h2_hamiltonian(), real_amplitudes(2, reps=1), shots=None, seed=1)
    return (
        Task.hybrid("vqe")
        .with_algorithm(algorithm)
        .with_optimizer(Adam(maxiter=80, lr=0.1))
        .with_key("vqe")
        .build()
    )


def vqe_summary(result: Any) -> dict[str, Any]:
    value = result.value
    return {
        "energy": value.energy,
        "parameters": list(value.parameters),
        "history": list(value.history),
        "iterations": value.iterations,
        "evaluations": value.evaluations,
        "recovery": result.recovery,
    }


async def vqe(journal: str) -> None:
    async with QuantumScheduler(2, journal=journal) as scheduler:
        handle = await scheduler.submit(vqe_task())
        print(json.dumps(vqe_summary(await handle)), flush=True)


def workflow_task() -> Task[Any]:
    from logosq_os_scheduler import HybridWorkflow, WorkflowStep

    workflow = (
        HybridWorkflow("chain")
        .add_step(WorkflowStep.classical("start", tasks.wf_start, once=True))
        .add_step(WorkflowStep.classical("step", tasks.wf_step))
        .with_iterations(40)
    )
    return Task.hybrid("chain").with_algorithm(workflow).with_key("chain").build()


async def workflow(journal: str) -> None:
    async with QuantumScheduler(2, journal=journal) as scheduler:
        result = await (await scheduler.submit(workflow_task()))
        outputs = [r.output for r in result.value.history]
        summary = {"value": result.value.value, "outputs": outputs, "recovery": result.recovery}
        print(json.dumps(summary), flush=True)


async def quantum(journal: str) -> None:
    from logosq_os_scheduler import CircuitSpec, MockBackend

    async with QuantumScheduler(1, journal=journal) as scheduler:
        await scheduler.register_backend("qpu", MockBackend("qpu", latency=3600.0))
        handles = [
            scheduler.submit_nowait(
                Task.quantum(f"q{i}").with_circuit(CircuitSpec(2)).with_key(f"q{i}")
            )
            for i in range(3)
        ]
        # Until their one job is sent: a short poll in this test program.
        while any(h.status is not TaskStatus.RUNNING for h in handles):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        await scheduler.persisted()
        print("ready", flush=True)
        await asyncio.sleep(3600)


async def remote(journal: str, host: str, port: str) -> None:
    from logosq_os_scheduler import CircuitSpec, RemoteMockBackend

    async with QuantumScheduler(1, journal=journal) as scheduler:
        backend = RemoteMockBackend((host, int(port)), name="qpu", max_concurrent_jobs=1)
        await scheduler.register_backend("qpu", backend)
        handles = [
            scheduler.submit_nowait(
                Task.quantum(f"r{i}").with_circuit(CircuitSpec(3)).with_shots(100).with_key(f"r{i}")
            )
            for i in range(4)
        ]
        await scheduler.persisted()
        print("submitted", flush=True)
        for h in handles:
            await h
        print("done", flush=True)


async def mixed(journal: str, acks: str, host: str, port: str, n: int) -> None:
    """Classical tasks with keys, quantum tasks on the mock QPU service, and a VQE."""
    from logosq_os_scheduler import CircuitSpec, RemoteMockBackend, SchedulerConfig

    config = SchedulerConfig(workers=2, max_retries=50, retry_backoff=0.001, journal=journal)
    async with QuantumScheduler(config=config) as scheduler:
        backend = RemoteMockBackend((host, int(port)), name="qpu", max_concurrent_jobs=2)
        await scheduler.register_backend("qpu", backend)
        handles = []
        with open(acks, "a") as out:  # noqa: ASYNC230 - a test's log, written line by line
            handles.append(await scheduler.submit(vqe_task()))
            out.write("vqe\n")
            out.flush()
            for i in range(n):
                if i % 3 == 2:
                    key = f"q{i}"
                    builder = Task.quantum(key).with_circuit(CircuitSpec(3)).with_shots(64)
                else:
                    key = f"c{i}"
                    builder = Task.classical(key).with_function(tasks.square, i).with_restartable()
                handles.append(await scheduler.submit(builder.with_key(key)))
                out.write(f"{key}\n")
                out.flush()
        for h in handles:
            await h
    print("done", flush=True)


def main() -> None:
    mode = sys.argv[1]
    if mode == "crash":
        asyncio.run(crash(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif mode == "workflow":
        asyncio.run(workflow(sys.argv[2]))
    elif mode == "vqe":
        asyncio.run(vqe(sys.argv[2]))
    elif mode == "quantum":
        asyncio.run(quantum(sys.argv[2]))
    elif mode == "remote":
        asyncio.run(remote(sys.argv[2], sys.argv[3], sys.argv[4]))
    elif mode == "mixed":
        asyncio.run(mixed(*sys.argv[2:6], int(sys.argv[6])))
    elif mode == "hold":
        asyncio.run(hold(sys.argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
