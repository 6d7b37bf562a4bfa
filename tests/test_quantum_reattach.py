"""Jobs on backends that can reattach: the dispatcher sends them as submit_job + reattach and
tells its job listener of each (intent, acknowledged, done), and idempotency keys carry a
prefix a journal can set. In-process backends; the mock QPU service has its own tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import pytest

from _scripted import ScriptedBackend, all_zeros, spec
from logosq_os_scheduler import (
    BackendUnavailableError,
    InvalidConfigError,
    LoopClock,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskCancelledError,
    TaskStatus,
    TransientBackendError,
)
from logosq_os_scheduler.backends import CircuitJob, JobOutcome


def q(name: str, circuit: object) -> Any:
    return Task.quantum(name).with_circuit(circuit).with_shots(100)


def fast_config(**kw: object) -> SchedulerConfig:
    base: dict[str, object] = {"workers": 1, "batch_window": 0, "retry_backoff": 0}
    base.update(kw)
    return SchedulerConfig(**base)  # type: ignore[arg-type]


class ReattachBackend(ScriptedBackend):
    """A scripted backend with job IDs: submit_job keeps the job, reattach runs it."""

    def __init__(self, name: str, num_qubits: int = 5, **kw: Any) -> None:
        super().__init__(name, num_qubits, **kw)
        self._ids = itertools.count(1)
        self.submitted: dict[str, Sequence[CircuitJob]] = {}
        self.calls: list[str] = []
        self.submit_error: BaseException | None = None

    @property
    def supports_reattach(self) -> bool:
        return True

    async def submit_job(self, jobs: Sequence[CircuitJob]) -> str:
        self.calls.append("submit_job")
        if self.submit_error is not None:
            error, self.submit_error = self.submit_error, None
            raise error
        job_id = f"{self.name}-{next(self._ids)}"
        self.submitted[job_id] = list(jobs)
        return job_id

    async def reattach(self, job_id: str) -> Sequence[JobOutcome]:
        self.calls.append(f"reattach {job_id}")
        return await ScriptedBackend.run(self, self.submitted[job_id])

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        self.calls.append("run")
        return await self.submit_and_reattach(jobs)


class Recorder:
    """A JobListener that writes down what it hears, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def job_intent(self, backend: str, job_key: str, task_ids: Sequence[int]) -> None:
        self.events.append(("intent", backend, job_key, tuple(task_ids)))

    def job_acknowledged(self, job_key: str, job_id: str) -> None:
        self.events.append(("acknowledged", job_key, job_id))

    def job_done(self, job_key: str) -> None:
        self.events.append(("done", job_key))

    def by_job(self) -> dict[str, list[tuple[Any, ...]]]:
        jobs: dict[str, list[tuple[Any, ...]]] = {}
        for event in self.events:
            key = event[2] if event[0] == "intent" else event[1]
            jobs.setdefault(key, []).append(event)
        return jobs


async def test_jobs_go_out_as_submit_and_reattach_with_intent_ack_and_done_in_order() -> None:
    b = ReattachBackend("r", per_job=2)
    listener = Recorder()
    async with QuantumScheduler(config=fast_config()) as s:
        s._quantum.job_listener = listener
        await s.register_backend("r", b)
        handles = [s.submit_nowait(q(f"t{i}", spec(2))) for i in range(4)]
        results = [await h for h in handles]
    assert [r.value for r in results] == [{"00": 100}] * 4
    assert "run" not in b.calls
    jobs = listener.by_job()
    assert len(jobs) == len(b.batches) == 2
    for (key, events), batch, job_id in zip(jobs.items(), b.batches, b.submitted, strict=True):
        assert events == [
            ("intent", "r", key, tuple(batch)),
            ("acknowledged", key, job_id),
            ("done", key),
        ]
    # One intent before any acknowledgement of the same job, and every key its own.
    assert sorted(t for batch in b.batches for t in batch) == sorted(h.task_id for h in handles)
    prefix = s._quantum.idempotency_prefix
    assert all(k.startswith(f"{prefix}-job-") for k in jobs)


async def test_without_a_listener_the_job_still_goes_out_by_id() -> None:
    b = ReattachBackend("r")
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("r", b)
        r = await (await s.submit(q("t", spec(3))))
    assert r.value == {"000": 100}
    assert b.calls == ["submit_job", "reattach r-1"]


async def test_idempotency_keys_carry_the_prefix_a_journal_sets() -> None:
    b = ReattachBackend("r")
    async with QuantumScheduler(config=fast_config()) as s:
        default = s._quantum.idempotency_prefix
        assert isinstance(default, str) and len(default) == 12
        s._quantum.idempotency_prefix = "run-7"
        await s.register_backend("r", b)
        h = await s.submit(q("t", spec(2)))
        await h
        for bad in ("", None, 7):
            with pytest.raises(InvalidConfigError, match="idempotency_prefix"):
                s._quantum.idempotency_prefix = bad  # type: ignore[assignment]
    assert b.keys == [f"run-7-{h.task_id}"]


async def test_a_failed_submission_is_retried_as_a_new_job_with_the_same_keys() -> None:
    b = ReattachBackend("r")
    b.submit_error = TransientBackendError("r", "connection reset before the acknowledgement")
    listener = Recorder()
    async with QuantumScheduler(config=fast_config()) as s:
        s._quantum.job_listener = listener
        await s.register_backend("r", b)
        h = await s.submit(q("t", spec(2)))
        r = await h
    assert r.attempts == 2 and r.value == {"00": 100}
    first, second = listener.by_job().values()
    assert [e[0] for e in first] == ["intent", "done"]  # never acknowledged
    assert [e[0] for e in second] == ["intent", "acknowledged", "done"]
    assert first[0][2] != second[0][2]
    assert first[0][3] == second[0][3] == (h.task_id,)
    assert len(set(b.keys)) == 1


async def test_a_job_failing_as_a_whole_is_done_for_the_listener_and_retried() -> None:
    calls = {"n": 0}

    def flaky(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientBackendError("r", "the device recalibrated")
        return all_zeros(jobs)

    b = ReattachBackend("r", script=flaky)
    listener = Recorder()
    async with QuantumScheduler(config=fast_config()) as s:
        s._quantum.job_listener = listener
        await s.register_backend("r", b)
        r = await (await s.submit(q("t", spec(2))))
    assert r.attempts == 2
    assert [[e[0] for e in events] for events in listener.by_job().values()] == [
        ["intent", "acknowledged", "done"],
        ["intent", "acknowledged", "done"],
    ]


async def test_an_unavailable_backend_trips_its_breaker_and_the_task_moves_on() -> None:
    down = ReattachBackend("down")
    down.submit_error = BackendUnavailableError("down", "connection refused")
    up = ScriptedBackend("up", 5)
    async with QuantumScheduler(config=fast_config(breaker_threshold=1)) as s:
        await s.register_backend("down", down)
        await s.register_backend("up", up)
        r = await (await s.submit(q("t", spec(2))))
        health = s.metrics().backends["down"]
    assert r.backends_tried == ("down", "up") and r.value == {"00": 100}
    assert not health.healthy


@pytest.mark.virtual_time
async def test_a_reattach_that_hangs_past_job_timeout_is_retried_and_done() -> None:
    b = ReattachBackend("r")
    b.hold = asyncio.Event()  # the first job never ends: its reattach waits forever
    listener = Recorder()

    def release(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        return all_zeros(jobs)

    async with QuantumScheduler(config=fast_config(job_timeout=60.0), clock=LoopClock()) as s:
        s._quantum.job_listener = listener
        await s.register_backend("r", b)
        h = await s.submit(q("t", spec(2)))
        await b.started.wait()
        b.hold = None  # later jobs run at once
        b.script = release
        r = await h
    assert r.attempts == 2 and r.value == {"00": 100}
    assert [[e[0] for e in events] for events in listener.by_job().values()] == [
        ["intent", "acknowledged", "done"],
        ["intent", "acknowledged", "done"],
    ]


async def test_closing_with_a_job_in_flight_cancels_its_tasks_and_ends_the_job() -> None:
    b = ReattachBackend("r")
    b.hold = asyncio.Event()
    listener = Recorder()
    async with QuantumScheduler(config=fast_config()) as s:
        s._quantum.job_listener = listener
        await s.register_backend("r", b)
        h = await s.submit(q("t", spec(2)))
        await b.started.wait()
        await s.aclose(timeout=0)  # cancel what is unfinished
    with pytest.raises(TaskCancelledError):
        await h
    assert h.status is TaskStatus.CANCELLED
    assert [e[0] for e in listener.events] == ["intent", "acknowledged", "done"]


async def test_a_backend_that_prepares_circuits_submits_them_prepared() -> None:
    class Preparing(ReattachBackend):
        def prepare(self, circuit: Any) -> Any:
            return spec(circuit.num_qubits + 1)

    b = Preparing("r")
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("r", b)
        r = await (await s.submit(q("t", spec(2))))
    assert r.value == {"000": 100}
    assert b.calls == ["submit_job", "reattach r-1"]


async def test_a_listener_that_raises_fails_the_attempt_before_anything_is_sent() -> None:
    class Broken(Recorder):
        def job_intent(self, backend: str, job_key: str, task_ids: Sequence[int]) -> None:
            super().job_intent(backend, job_key, task_ids)
            if len(self.events) == 1:
                raise OSError("disk full")

    b = ReattachBackend("r")
    listener = Broken()
    async with QuantumScheduler(config=fast_config()) as s:
        s._quantum.job_listener = listener
        await s.register_backend("r", b)
        r = await (await s.submit(q("t", spec(2))))
    assert r.attempts == 2
    assert b.calls == ["submit_job", "reattach r-1"]  # the first attempt sent nothing


async def test_results_carry_the_job_id_the_backend_gave() -> None:
    b = ReattachBackend("r", per_job=2)
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("r", b)
        handles = [s.submit_nowait(q(f"t{i}", spec(2))) for i in range(4)]
        results = [await h for h in handles]
    by_task = {task_id: job_id for job_id, jobs in b.submitted.items() for task_id in b_ids(jobs)}
    assert [r.job_id for r in results] == [by_task[h.task_id] for h in handles]
    assert {r.job_id for r in results} == set(b.submitted) == {"r-1", "r-2"}


class IdsOnlyBackend(ReattachBackend):
    """Jobs with IDs that die with the process (a provider's local simulator)."""

    @property
    def supports_reattach(self) -> bool:
        return False

    @property
    def supports_job_ids(self) -> bool:
        return True


async def test_a_backend_with_job_ids_but_no_reattach_still_goes_out_by_id() -> None:
    b = IdsOnlyBackend("local")
    listener = Recorder()
    async with QuantumScheduler(config=fast_config()) as s:
        s._quantum.job_listener = listener
        await s.register_backend("local", b)
        result = await (await s.submit(q("t", spec(2))))
    assert result.job_id == "local-1"
    assert b.calls == ["submit_job", "reattach local-1"]
    assert [e[0] for e in listener.events] == ["intent", "acknowledged", "done"]


async def test_a_backend_without_job_ids_leaves_the_result_without_one() -> None:
    b = ScriptedBackend("plain", 5)
    assert not b.supports_job_ids
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("plain", b)
        result = await (await s.submit(q("t", spec(2))))
    assert result.job_id is None


def b_ids(jobs: Sequence[CircuitJob]) -> list[int]:
    return [j.task_id for j in jobs]
