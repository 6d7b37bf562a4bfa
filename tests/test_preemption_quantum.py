"""PREEMPTIVE withdrawal of quantum jobs waiting unstarted at a backend, through the scheduler.

The backend is a MockBackend with a queue of its own: it takes two jobs from the scheduler and
executes one at a time, so the second waits there, sent but not started. Jobs execute only
when the test lets them (:class:`_turns.Turns`), a ManualClock gives exact times, a
transition listener records every status change, and the mock records each job it was sent
and each withdrawal question it was asked. Nothing sleeps to wait for something to happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from _turns import Turns
from logosq_os_scheduler import (
    ManualClock,
    PreemptionStrategy,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskCancelledError,
    TaskHandle,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler.backends import CircuitJob, CircuitSpec, JobOutcome, MockBackend
from logosq_os_scheduler.observability._listeners import add_listener

P = TaskPriority
S = TaskStatus
PRE = PreemptionStrategy.PREEMPTIVE
_BOUND = 10.0  # seconds: a bound on each wait, not a pause


class Qpu(MockBackend):
    """The mock, also recording what the scheduler asked it to withdraw and the answer."""

    def __init__(self, turns: Turns, **kw: Any) -> None:
        super().__init__(
            "qpu",
            num_qubits=8,
            max_concurrent_jobs=kw.pop("max_concurrent_jobs", 2),
            max_running_jobs=kw.pop("max_running_jobs", 1),
            max_circuits_per_job=kw.pop("max_circuits_per_job", 1),
            seed=5,
            sampling=kw.pop("sampling", "uniform"),
            clock=turns.clock,
            sleep=turns.sleep,
        )
        self.asked: list[tuple[list[int], bool]] = []
        self._asked = asyncio.Event()
        self.received: list[int] = []
        self._received = asyncio.Event()

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        self.received.extend(j.task_id for j in jobs)
        self._received.set()
        return await super().run(jobs)

    async def wait_received(self, task_id: int) -> None:
        """Wait until a job carrying the task has reached the backend."""
        async with asyncio.timeout(_BOUND):
            while task_id not in self.received:
                self._received.clear()
                await self._received.wait()

    def withdraw(self, jobs: Sequence[CircuitJob]) -> bool:
        answer = super().withdraw(jobs)
        self.asked.append(([j.task_id for j in jobs], answer))
        self._asked.set()
        return answer

    async def wait_asked(self, n: int) -> None:
        async with asyncio.timeout(_BOUND):
            while len(self.asked) < n:
                self._asked.clear()
                await self._asked.wait()


class Transitions:
    """Every status change, in order, as (task name, new status)."""

    def __init__(self, scheduler: QuantumScheduler) -> None:
        self.log: list[tuple[str, TaskStatus]] = []
        self._changed = asyncio.Event()
        add_listener(scheduler, self)

    def __call__(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        self.log.append((task.name, new))
        self._changed.set()

    async def reached(self, name: str, status: TaskStatus) -> None:
        async with asyncio.timeout(_BOUND):
            while (name, status) not in self.log:
                self._changed.clear()
                await self._changed.wait()

    def of(self, name: str) -> list[TaskStatus]:
        return [status for n, status in self.log if n == name]


class Rig:
    """A scheduler with one queued backend, and the instruments above."""

    def __init__(self, strategy: PreemptionStrategy = PRE, **backend: Any) -> None:
        self.clock = ManualClock()
        self.turns = Turns(self.clock)
        self.qpu = Qpu(self.turns, **backend)
        config = SchedulerConfig(
            workers=1,
            batch_window=0,
            retry_backoff=0,
            aging_threshold=None,
            preemption=strategy,
        )
        self.s = QuantumScheduler(config=config, clock=self.clock)
        self.log = Transitions(self.s)

    async def __aenter__(self) -> Rig:
        await self.s.__aenter__()
        await self.s.register_backend("qpu", self.qpu)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.s.__aexit__(*exc)

    async def submit(
        self, name: str, priority: TaskPriority, qubits: int, *, preemptible: bool = True
    ) -> TaskHandle[Any]:
        """A task whose result is recognisable: ``qubits``-bit keys, ``100 + qubits`` shots."""
        builder = (
            Task.quantum(name)
            .with_circuit(CircuitSpec(qubits))
            .with_shots(100 + qubits)
            .with_priority(priority)
            .with_preemptible(preemptible)
        )
        return await self.s.submit(builder)

    async def sent(self, handle: TaskHandle[Any]) -> None:
        """Wait until the scheduler has sent a job carrying the task to the backend."""
        await self.qpu.wait_received(handle.task_id)


async def _check(handle: TaskHandle[Any], qubits: int, attempts: int = 1) -> None:
    """The task completed once, with a result of its own circuit."""
    result = await handle
    assert result.status is S.COMPLETED and result.attempts == attempts
    assert sum(result.value.values()) == 100 + qubits
    assert {len(key) for key in result.value} == {qubits}
    assert result.backends_tried == ("qpu",)


def _executed(qpu: MockBackend) -> list[tuple[str, int]]:
    """The mock's jobs in the order they ended, with the shots each executed."""
    return [(r.outcome, r.shots) for r in qpu.records]


async def test_a_critical_task_withdraws_the_waiting_low_job_and_runs_before_it() -> None:
    async with Rig() as rig:
        q1 = await rig.submit("q1", P.LOW, 1)
        await rig.turns.wait_begun(1)  # q1's job executes at the backend
        q2 = await rig.submit("q2", P.LOW, 2)
        await rig.sent(q2)  # q2's job waits there, not started
        q3 = await rig.submit("q3", P.LOW, 3)  # the scheduler's slots are full: q3 waits here
        assert rig.qpu.statistics().queued_jobs == 1 and q3.status is S.QUEUED

        crit = await rig.submit("crit", P.CRITICAL, 4)
        await rig.sent(crit)
        # The waiting LOW job was taken back (the newest first, so q2's), and the CRITICAL
        # task sent in its place. Every job that might wait before it is asked: the executing
        # one refused (it had started), and is never asked again.
        assert rig.qpu.asked == [([q2.task_id], True), ([q1.task_id], False)]
        assert (q1.status, q2.status, q3.status) == (S.RUNNING, S.PREEMPTED, S.QUEUED)
        stats = rig.qpu.statistics()
        assert (stats.jobs, stats.queued_jobs, stats.withdrawn_jobs) == (1, 1, 1)
        m = rig.s.metrics()
        assert (m.preempted, m.preemptions, m.backends["qpu"].withdrawn_jobs) == (1, 1, 1)

        for n in range(2, 5):  # each job ends; the backend starts the next one waiting
            rig.turns.finish()
            await rig.turns.wait_begun(n)
        rig.turns.finish()
        await _check(q1, 1)
        await _check(crit, 4)
        await _check(q3, 3)
        await _check(q2, 2)
        m = rig.s.metrics()

    # The CRITICAL task executed second, straight after the job already executing; the
    # withdrawn task ran once, last, behind q3, which waited at its priority before it.
    assert _executed(rig.qpu) == [
        ("withdrawn", 0),
        ("completed", 101),
        ("completed", 104),
        ("completed", 103),
        ("completed", 102),
    ]
    assert rig.qpu.statistics().circuits_run == 4
    assert rig.log.of("q2") == [S.QUEUED, S.RUNNING, S.PREEMPTED, S.RUNNING, S.COMPLETED]
    # Withdrawn at t=0, sent again when the CRITICAL job ended at t=2.
    assert (m.completed, m.preemptions, m.preempted_seconds) == (4, 1, 2.0)


async def test_a_started_job_is_never_withdrawn() -> None:
    # The backend executes both jobs it holds: nothing waits there to be withdrawn.
    async with Rig(max_running_jobs=2) as rig:
        q1 = await rig.submit("q1", P.LOW, 1)
        q2 = await rig.submit("q2", P.LOW, 2)
        await rig.turns.wait_begun(2)
        crit = await rig.submit("crit", P.CRITICAL, 3)
        # Asked about each job, newest first; both had started, so both stay.
        await rig.qpu.wait_asked(2)
        assert rig.qpu.asked == [([q2.task_id], False), ([q1.task_id], False)]
        assert (q1.status, q2.status, crit.status) == (S.RUNNING, S.RUNNING, S.QUEUED)
        # A job known to have started is not asked again for the next urgent task.
        high = await rig.submit("high", P.HIGH, 4)
        rig.turns.finish()
        await _check(q1, 1)
        await rig.sent(crit)
        assert len(rig.qpu.asked) == 2 and high.status is S.QUEUED
        await rig.turns.wait_begun(3)
        rig.turns.finish()
        rig.turns.finish()
        await _check(q2, 2)
        await _check(crit, 3)
        await rig.turns.wait_begun(4)
        rig.turns.finish()
        await _check(high, 4)
        m = rig.s.metrics()
    assert rig.qpu.statistics().withdrawn_jobs == 0 and m.preemptions == 0
    assert "withdrawn" not in {outcome for outcome, _ in _executed(rig.qpu)}


async def test_non_preemptible_work_is_never_withdrawn() -> None:
    async with Rig() as rig:
        q1 = await rig.submit("q1", P.LOW, 1)
        await rig.turns.wait_begun(1)
        pinned = await rig.submit("pinned", P.LOW, 2, preemptible=False)
        await rig.sent(pinned)
        crit = await rig.submit("crit", P.CRITICAL, 3)
        # Only the executing job was a candidate, and it had started.
        await rig.qpu.wait_asked(1)
        assert rig.qpu.asked == [([q1.task_id], False)]
        assert (pinned.status, crit.status) == (S.RUNNING, S.QUEUED)
        rig.turns.finish()
        await rig.turns.wait_begun(2)
        rig.turns.finish()
        await rig.turns.wait_begun(3)
        rig.turns.finish()
        for handle, qubits in ((q1, 1), (pinned, 2), (crit, 3)):
            await _check(handle, qubits)
        m = rig.s.metrics()
    assert _executed(rig.qpu) == [("completed", 101), ("completed", 102), ("completed", 103)]
    assert S.PREEMPTED not in rig.log.of("pinned") and m.preemptions == 0


async def test_equal_priority_never_withdraws_but_a_higher_one_does() -> None:
    async with Rig() as rig:
        q1 = await rig.submit("q1", P.LOW, 1)
        await rig.turns.wait_begun(1)
        h2 = await rig.submit("h2", P.HIGH, 2)
        await rig.sent(h2)
        h3 = await rig.submit("h3", P.HIGH, 3)
        # The waiting HIGH job is no candidate for a HIGH task; the LOW one had started.
        await rig.qpu.wait_asked(1)
        assert rig.qpu.asked == [([q1.task_id], False)]
        assert (h2.status, h3.status) == (S.RUNNING, S.QUEUED)

        crit = await rig.submit("crit", P.CRITICAL, 4)
        await rig.sent(crit)
        assert rig.qpu.asked[1:] == [([h2.task_id], True)]
        assert h2.status is S.PREEMPTED
        for n in range(2, 5):
            rig.turns.finish()
            await rig.turns.wait_begun(n)
        rig.turns.finish()
        for handle, qubits in ((q1, 1), (crit, 4), (h3, 3), (h2, 2)):
            await _check(handle, qubits)
        m = rig.s.metrics()
    assert [shots for outcome, shots in _executed(rig.qpu) if outcome == "completed"] == [
        101,
        104,
        103,
        102,
    ]
    assert (m.preemptions, m.backends["qpu"].withdrawn_jobs) == (1, 1)


@pytest.mark.parametrize("strategy", [PreemptionStrategy.NONE, PreemptionStrategy.COOPERATIVE])
async def test_none_and_cooperative_never_withdraw(strategy: PreemptionStrategy) -> None:
    async with Rig(strategy) as rig:
        q1 = await rig.submit("q1", P.LOW, 1)
        await rig.turns.wait_begun(1)
        q2 = await rig.submit("q2", P.LOW, 2)
        await rig.sent(q2)
        crit = await rig.submit("crit", P.CRITICAL, 3)
        for n in range(2, 4):
            rig.turns.finish()
            await rig.turns.wait_begun(n)
        rig.turns.finish()
        for handle, qubits in ((q1, 1), (q2, 2), (crit, 3)):
            await _check(handle, qubits)
        m = rig.s.metrics()
    # The CRITICAL task waited for the job sent before it: nobody was asked to withdraw.
    assert rig.qpu.asked == []
    assert _executed(rig.qpu) == [("completed", 101), ("completed", 102), ("completed", 103)]
    assert m.preemptions == 0 and m.backends["qpu"].withdrawn_jobs == 0


async def test_a_withdrawn_batch_requeues_every_task_and_a_cancelled_one_ends_cleanly() -> None:
    # Two circuits per job: the waiting job carries two LOW tasks.
    async with Rig(max_circuits_per_job=2) as rig:
        q1 = await rig.submit("q1", P.LOW, 1)
        await rig.turns.wait_begun(1)
        a, b = await rig.submit("a", P.LOW, 2), await rig.submit("b", P.LOW, 3)
        await rig.sent(b)
        crit = await rig.submit("crit", P.CRITICAL, 4)
        await rig.sent(crit)
        assert rig.qpu.asked == [([a.task_id, b.task_id], True), ([q1.task_id], False)]
        # The CRITICAL task leads the next job, which also carries the first of them (jobs
        # take tasks in queue order); the other waits PREEMPTED in the scheduler's queue.
        assert (a.status, b.status) == (S.RUNNING, S.PREEMPTED)
        assert b.cancel() is True
        with pytest.raises(TaskCancelledError):
            await b
        rig.turns.finish()
        await rig.turns.wait_begun(2)
        rig.turns.finish()
        await _check(q1, 1)
        await _check(crit, 4)
        await _check(a, 2)
        m = rig.s.metrics()
        rig.s._core.check_invariants()
    assert _executed(rig.qpu) == [("withdrawn", 0), ("completed", 101), ("completed", 206)]
    assert (m.preemptions, m.cancelled, m.completed, m.queue_depth) == (2, 1, 3, 0)
    assert rig.log.of("b") == [S.QUEUED, S.RUNNING, S.PREEMPTED, S.CANCELLED]


@pytest.mark.observability
async def test_withdrawals_are_exported_to_prometheus() -> None:
    pytest.importorskip("prometheus_client")
    from logosq_os_scheduler.observability import PrometheusExporter

    async with Rig() as rig:
        exporter = PrometheusExporter(rig.s)
        low = await rig.submit("low", P.LOW, 1)
        await rig.turns.wait_begun(1)
        waiting = await rig.submit("waiting", P.LOW, 2)
        await rig.sent(waiting)
        assert 'logosq_backend_withdrawn_jobs_total{backend="qpu"} 0.0' in exporter.exposition()
        high = await rig.submit("high", P.HIGH, 3)
        await rig.sent(high)
        text = exporter.exposition()
        for n in range(2, 4):
            rig.turns.finish()
            await rig.turns.wait_begun(n)
        rig.turns.finish()
        for handle, qubits in ((low, 1), (high, 3), (waiting, 2)):
            await _check(handle, qubits)
    assert 'logosq_backend_withdrawn_jobs_total{backend="qpu"} 1.0' in text
    assert "logosq_preemptions_total 1.0" in text


@pytest.mark.qiskit
async def test_each_withdrawn_task_gets_its_own_circuit_outcome_exactly() -> None:
    qiskit = pytest.importorskip("qiskit")

    def basis(bits: str) -> Any:
        """A circuit that measures ``bits`` with certainty (qubit 0 is the rightmost bit)."""
        qc = qiskit.QuantumCircuit(len(bits))
        for i, bit in enumerate(reversed(bits)):
            if bit == "1":
                qc.x(i)
        qc.measure_all()
        return qc

    async with Rig(sampling="exact", max_circuits_per_job=2) as rig:
        patterns = {"low": "001", "a": "010", "b": "011", "crit": "100"}
        priorities = {"low": P.LOW, "a": P.LOW, "b": P.LOW, "crit": P.CRITICAL}

        async def submit(name: str) -> TaskHandle[Any]:
            return await rig.s.submit(
                Task.quantum(name)
                .with_circuit(basis(patterns[name]))
                .with_shots(64)
                .with_priority(priorities[name])
            )

        low = await submit("low")
        await rig.turns.wait_begun(1)
        a, b = await submit("a"), await submit("b")
        await rig.sent(b)
        crit = await submit("crit")
        await rig.sent(crit)
        assert rig.qpu.asked == [([a.task_id, b.task_id], True), ([low.task_id], False)]
        # The next job carries the CRITICAL task and a; b waits for a later one.
        for n in range(2, 4):
            rig.turns.finish()
            await rig.turns.wait_begun(n)
        rig.turns.finish()
        results = {name: await h for name, h in (("low", low), ("a", a), ("b", b), ("crit", crit))}
    assert {name: r.value for name, r in results.items()} == {
        name: {bits: 64} for name, bits in patterns.items()
    }
    assert {r.attempts for r in results.values()} == {1}
    assert rig.qpu.statistics().circuits_run == 4


async def test_a_critical_task_withdraws_every_waiting_job_that_would_run_before_it() -> None:
    """Three LOW jobs wait unstarted at the backend behind one executing: all three are taken
    back, so the CRITICAL job runs right after the executing one, and they after it."""
    async with Rig(max_concurrent_jobs=4) as rig:
        first = await rig.submit("first", P.LOW, 1)
        await rig.turns.wait_begun(1)
        waiting = [await rig.submit(f"w{q}", P.LOW, q) for q in (2, 3, 5)]
        await rig.sent(waiting[-1])
        assert rig.qpu.statistics().queued_jobs == 3
        crit = await rig.submit("crit", P.CRITICAL, 4)
        await rig.sent(crit)
        assert sorted(ok for _, ok in rig.qpu.asked) == [False, True, True, True]
        assert S.PREEMPTED in {h.status for h in waiting}  # back in the queue, behind crit
        for n in range(2, 6):
            rig.turns.finish()
            await rig.turns.wait_begun(n)
        rig.turns.finish()
        await _check(first, 1)
        await _check(crit, 4)
        for handle, qubits in zip(waiting, (2, 3, 5), strict=True):
            await _check(handle, qubits)
    # The executing job, then the CRITICAL one, then the three in the order they came.
    completed = [shots for outcome, shots in _executed(rig.qpu) if outcome == "completed"]
    assert completed == [101, 104, 102, 103, 105]
