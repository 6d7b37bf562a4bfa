"""Fair share on the running scheduler: a user at their cap waits while others run, and
their work starts again, in whatever pool it waits, as soon as their running work ends."""

from __future__ import annotations

import asyncio

import pytest

from logosq_os_scheduler import (
    CircuitSpec,
    FairShare,
    InvalidConfigError,
    MockBackend,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskStatus,
)

BELL = CircuitSpec(2, ((0, 1),))


async def test_a_capped_users_circuit_starts_when_their_classical_work_ends() -> None:
    config = SchedulerConfig(workers=2, fair_share=FairShare(max_running={"user_a": 1}))
    async with QuantumScheduler(config=config) as scheduler:
        await scheduler.register_backend("sim", MockBackend("sim", seed=1))
        started, release = asyncio.Event(), asyncio.Event()

        async def hold() -> str:
            started.set()
            await release.wait()
            return "held"

        holding = Task.classical("hold").with_function(hold).with_user("user_a")
        first = await scheduler.submit(holding)
        await asyncio.wait_for(started.wait(), 10)
        circuit = Task.quantum("bell").with_circuit(BELL).with_shots(16)
        alices = await scheduler.submit(circuit.with_user("user_a"))
        bobs = await scheduler.submit(Task.quantum("bell").with_circuit(BELL).with_user("user_b"))
        # user_b's circuit runs on the idle backend; user_a's waits there for her cap.
        assert sum((await asyncio.wait_for(bobs, 10)).counts.values()) == 1024
        assert alices.status is TaskStatus.QUEUED
        # Her classical task ends: her circuit, in another pool, starts without a new submit.
        release.set()
        assert (await first).value == "held"
        assert sum((await asyncio.wait_for(alices, 10)).counts.values()) == 16
        metrics = scheduler.metrics()
        assert metrics.completed == 3
        user_a, user_b = metrics.users["user_a"], metrics.users["user_b"]
        assert (user_a.started, user_a.running, user_a.waiting) == (2, 0, 0)
        assert (user_b.started, user_b.weight) == (1, 1.0)
        assert metrics.as_dict()["users"]["user_a"]["started"] == 2  # type: ignore[index]


async def test_fair_share_cannot_be_switched_on_a_running_scheduler() -> None:
    async with QuantumScheduler(1) as scheduler:
        with pytest.raises(InvalidConfigError, match=r"SchedulerConfig\(fair_share=FairShare"):
            scheduler.configure(fair_share=FairShare())
    config = SchedulerConfig(fair_share=FairShare(weights={"user_a": 1.0}))
    async with QuantumScheduler(config=config) as scheduler:
        scheduler.configure(fair_share=FairShare(weights={"user_a": 4.0}))  # new weights: fine
        assert scheduler.config.fair_share == FairShare(weights={"user_a": 4.0})
