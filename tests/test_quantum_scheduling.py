"""Quantum scheduling policy on the real runtime with scripted backends: routing with
reasons, batching, capacity, retries, rerouting, breakers and timeouts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _scripted import ScriptedBackend, all_zeros, spec
from logosq_os_scheduler import (
    BackendUnavailableError,
    LoopClock,
    NoRouteError,
    PermanentBackendError,
    QuantumScheduler,
    QueueFullError,
    RetriesExhaustedError,
    SchedulerConfig,
    Task,
    TaskFailedError,
    TaskPriority,
    TaskStatus,
    TaskTimeoutError,
    TransientBackendError,
)
from logosq_os_scheduler.backends import CircuitJob, JobOutcome
from logosq_os_scheduler.core._routing import RoutingRule

S = TaskStatus
LINE5 = frozenset({(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3)})


def q(name: str, circuit: object, priority: TaskPriority = TaskPriority.NORMAL) -> object:
    return Task.quantum(name).with_circuit(circuit).with_shots(100).with_priority(priority)


def fast_config(**kw: object) -> SchedulerConfig:
    base: dict[str, object] = {"workers": 1, "batch_window": 0, "retry_backoff": 0}
    base.update(kw)
    return SchedulerConfig(**base)  # type: ignore[arg-type]


async def test_rules_route_by_qubits_and_connectivity_and_record_why() -> None:
    big = ScriptedBackend("ibm_brisbane", 127, coupling=LINE5)
    ion = ScriptedBackend("ionq_aria", 25)
    small = ScriptedBackend("small", 5, coupling=LINE5)
    async with QuantumScheduler(config=fast_config()) as s:
        for name, b in (("ibm_brisbane", big), ("ionq_aria", ion), ("small", small)):
            await s.register_backend(name, b)
        s.set_routing_rules(
            [
                RoutingRule().when_qubit_count_exceeds(20).route_to("ibm_brisbane"),
                RoutingRule().when_requires_all_to_all().route_to("ionq_aria"),
                RoutingRule().default().route_to_shortest_queue(),
            ]
        )
        wide = await (await s.submit(q("wide", spec(30, (0, 1)))))
        star_spec = spec(5, (0, 1), (0, 2), (0, 3), (0, 4))
        star = await (await s.submit(q("star", star_spec).with_all_to_all()))
        # The same shape without the request: connectivity is a cost, the default rule routes.
        dense = await (await s.submit(q("dense", star_spec)))
        bell = await (await s.submit(q("bell", spec(2, (0, 1)))))
    assert wide.backend == "ibm_brisbane" and wide.routing.rule_index == 0
    assert wide.routing.considered["small"] == "has 5 qubits, circuit needs 30"
    assert wide.routing.considered["ionq_aria"] == "has 25 qubits, circuit needs 30"
    assert star.backend == "ionq_aria" and star.routing.rule_index == 1
    assert "needs all-to-all" in star.routing.rule
    assert dense.routing.rule_index == 2 and dense.routing.considered[dense.backend] == "chosen"
    assert bell.routing.rule_index == 2 and bell.routing.considered[bell.backend] == "chosen"
    assert wide.value == {"0" * 30: 100}


async def test_no_route_names_what_the_circuit_needs_and_what_each_backend_lacks() -> None:
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("small", ScriptedBackend("small", 5, coupling=LINE5))
        await s.register_backend("ion", ScriptedBackend("ion", 8))
        with pytest.raises(NoRouteError) as info:
            await s.submit(q("huge", spec(40)))
        assert "40 qubits" in str(info.value)
        assert info.value.reasons == {
            "small": "has 5 qubits, circuit needs 40",
            "ion": "has 8 qubits, circuit needs 40",
        }
        forced = Task.quantum("a2a").with_circuit(spec(3)).with_all_to_all(True)
        with pytest.raises(NoRouteError, match="all-to-all") as info2:
            await s.submit(forced.with_backend("small"))
        assert "coupling map" in info2.value.reasons["small"]
        with pytest.raises(NoRouteError, match="no backend is registered under this name"):
            await s.submit(q("x", spec(1)).with_backend("nowhere"))  # type: ignore[attr-defined]
        assert s.metrics().submitted == 0


async def test_pinned_task_goes_to_its_backend_whatever_the_rules() -> None:
    a, b = ScriptedBackend("a", 5), ScriptedBackend("b", 5)
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("a", a)
        await s.register_backend("b", b)
        s.set_routing_rules([RoutingRule().default().route_to("a")])
        r = await (await s.submit(q("p", spec(2)).with_backend("b")))  # type: ignore[attr-defined]
    assert r.backend == "b" and r.routing.rule == "pinned"


async def test_lowest_error_rate_and_custom_predicate_targets() -> None:
    noisy = ScriptedBackend("noisy", 5, error_rate=0.02)
    clean = ScriptedBackend("clean", 5, error_rate=0.001)
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("noisy", noisy)
        await s.register_backend("clean", clean)
        s.set_routing_rules(
            [
                RoutingRule()
                .when(lambda t, r: t.name.startswith("cal"), "calibration")
                .route_to("noisy"),
                RoutingRule().default().route_to_lowest_error_rate(),
            ]
        )
        cal = await (await s.submit(q("cal-1", spec(2))))
        job = await (await s.submit(q("job", spec(2))))
    assert (cal.backend, job.backend) == ("noisy", "clean")
    assert cal.routing.rule == "when calibration -> backend 'noisy'"


async def test_equivalent_backends_share_work_by_expected_completion() -> None:
    fast = ScriptedBackend("fast", 5, job_seconds=0.001)
    slow = ScriptedBackend("slow", 5, job_seconds=0.004)
    for b in (fast, slow):
        b.hold = asyncio.Event()
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("fast", fast)
        await s.register_backend("slow", slow)
        handles = [await s.submit(q(f"t{i}", spec(2))) for i in range(10)]
        fast.hold.set()
        slow.hold.set()
        results = [await h for h in handles]
    on_fast = sum(r.backend == "fast" for r in results)
    # Expected completion (jobs ahead + 1) * job time sends the fast backend about four tasks
    # for each one the slow backend gets: 8:2 at submit; once the held jobs are released, the
    # slow backend, idle again, may take one more from the back of the fast one's queue.
    assert on_fast in (7, 8) and len(slow.batches) == 10 - on_fast


async def test_batches_fill_up_to_the_backend_limit_in_priority_order() -> None:
    b = ScriptedBackend("b", 5, per_job=4)
    b.hold = asyncio.Event()
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("b", b)
        first = await s.submit(q("first", spec(2)))
        await b.started.wait()
        prios = [TaskPriority.LOW, TaskPriority.HIGH, TaskPriority.NORMAL] * 3
        handles = [await s.submit(q(f"t{i}", spec(2), p)) for i, p in enumerate(prios)]
        b.hold.set()
        await first
        for h in handles:
            await h
    ids = {h.task_id: h for h in handles}
    assert len(b.batches) == 4 and [len(x) for x in b.batches] == [1, 4, 4, 1]
    flat = [ids[t].priority for batch in b.batches[1:] for t in batch]
    assert flat == sorted(flat, reverse=True)


async def test_partial_batch_waits_for_the_window_but_high_priority_never_waits() -> None:
    b = ScriptedBackend("b", 5, per_job=8)
    async with QuantumScheduler(config=fast_config(batch_window=30.0)) as s:
        await s.register_backend("b", b)
        normals = [await s.submit(q(f"n{i}", spec(2))) for i in range(3)]
        await asyncio.sleep(0)
        assert b.batches == [] and all(h.status is S.QUEUED for h in normals)
        urgent = await s.submit(q("urgent", spec(2), TaskPriority.HIGH))
        await urgent
        for h in normals:
            await h
    assert b.batches == [[urgent.task_id] + [h.task_id for h in normals]]


async def test_flush_batches_sends_what_is_queued_and_holds_what_comes_later() -> None:
    b = ScriptedBackend("b", 5, per_job=8)
    async with QuantumScheduler(config=fast_config(batch_window=30.0)) as s:
        await s.register_backend("b", b)
        early = [await s.submit(q(f"n{i}", spec(2))) for i in range(3)]
        await asyncio.sleep(0)
        assert b.batches == []
        s.flush_batches()
        for h in early:
            await h
        late = await s.submit(q("late", spec(2)))
        await asyncio.sleep(0)
        assert late.status is S.QUEUED  # a flush covers only what was queued before it
        s.flush_batches()
        await late
    assert b.batches == [[h.task_id for h in early], [late.task_id]]


@pytest.mark.virtual_time
async def test_partial_batch_is_sent_when_the_window_passes() -> None:
    b = ScriptedBackend("b", 5, per_job=8)
    clock = LoopClock()
    async with QuantumScheduler(config=fast_config(batch_window=30.0), clock=clock) as s:
        await s.register_backend("b", b)
        handles = [await s.submit(q(f"n{i}", spec(2))) for i in range(3)]
        for h in handles:
            result = await h
            assert result.started_at == pytest.approx(30.0)  # the window, in virtual time
    assert b.batches == [[h.task_id for h in handles]]


async def test_transient_failure_is_retried_with_the_same_idempotency_key() -> None:
    calls = {"n": 0}

    def flaky(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientBackendError("b", "connection reset")
        return all_zeros(jobs)

    b = ScriptedBackend("b", 5, script=flaky)
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("b", b)
        r = await (await s.submit(q("t", spec(2))))
        m = s.metrics()
    assert r.attempts == 2 and r.backends_tried == ("b", "b")
    assert len(set(b.keys)) == 1 and len(b.keys) == 2
    assert m.retries == 1 and m.completed == 1


async def test_permanent_failure_is_not_retried() -> None:
    def bad(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        raise PermanentBackendError("b", "circuit uses an unsupported gate")

    b = ScriptedBackend("b", 5, script=bad)
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("b", b)
        h = await s.submit(q("t", spec(2)))
        with pytest.raises(TaskFailedError) as info:
            await h
    assert isinstance(info.value.__cause__, PermanentBackendError)
    assert h.attempts == 1 and len(b.batches) == 1


async def test_one_bad_circuit_does_not_fail_its_batch_neighbours() -> None:
    def one_bad(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        out = all_zeros(jobs)
        out[1] = PermanentBackendError("b", "bad circuit")
        return out

    b = ScriptedBackend("b", 5, per_job=3, script=one_bad)
    async with QuantumScheduler(config=fast_config(batch_window=30.0)) as s:
        await s.register_backend("b", b)
        hs = [await s.submit(q(f"t{i}", spec(2))) for i in range(3)]
        await s.join()
    assert [h.status for h in hs] == [S.COMPLETED, S.FAILED, S.COMPLETED]


async def test_a_preparing_backend_prepares_within_the_job_and_a_bad_circuit_fails_alone() -> None:
    """A backend that prepares circuits gets them prepared off the event loop, as part of
    the job (Backend.prepare_and_run); one that cannot be prepared fails alone."""

    class Prepared:
        def __init__(self, source: Any) -> None:
            self.source = source
            self.num_qubits = source.num_qubits

    class Preparing(ScriptedBackend):
        def __init__(self) -> None:
            super().__init__("b", 5, per_job=3)
            self.prepared_in: set[int] = set()
            self.ran: list[Any] = []

        def prepare(self, circuit: Any) -> Any:
            self.prepared_in.add(threading.get_ident())
            if circuit.num_qubits == 3:
                raise ValueError("three qubits are not allowed here")
            return Prepared(circuit)

        async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
            self.ran.extend(j.circuit for j in jobs)
            return await super().run(jobs)

    b = Preparing()
    async with QuantumScheduler(config=fast_config(batch_window=30.0)) as s:
        await s.register_backend("b", b)
        hs = [await s.submit(q(f"t{i}", spec(n))) for i, n in enumerate((2, 3, 4))]
        await s.join()
    assert [h.status for h in hs] == [S.COMPLETED, S.FAILED, S.COMPLETED]
    assert b.batches == [[hs[0].task_id, hs[2].task_id]]  # one job, the bad circuit left out
    assert [type(c) for c in b.ran] == [Prepared, Prepared]
    assert threading.get_ident() not in b.prepared_in
    with pytest.raises(TaskFailedError) as info:
        await hs[1]
    cause = info.value.__cause__
    assert isinstance(cause, PermanentBackendError)
    assert "cannot prepare circuit: three qubits are not allowed here" in str(cause)
    assert hs[1].attempts == 1  # a circuit that cannot be prepared is not retried


async def test_retry_budget_runs_out_and_says_so() -> None:
    def down(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        raise TransientBackendError("b", "busy")

    b = ScriptedBackend("b", 5, script=down)
    config = fast_config(max_retries=2, breaker_threshold=100)
    async with QuantumScheduler(config=config) as s:
        await s.register_backend("b", b)
        h = await s.submit(q("t", spec(2)))
        with pytest.raises(RetriesExhaustedError, match="3 attempts") as info:
            await h
    assert isinstance(info.value.__cause__, TransientBackendError)
    assert len(b.batches) == 3


async def test_unavailable_backend_is_taken_out_and_work_rerouted() -> None:
    def gone(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        raise BackendUnavailableError("a", "maintenance")

    a = ScriptedBackend("a", 5, script=gone, job_seconds=0.0001)
    b = ScriptedBackend("b", 5, job_seconds=0.01)
    async with QuantumScheduler(config=fast_config(breaker_cooldown=60)) as s:
        await s.register_backend("a", a)
        await s.register_backend("b", b)
        r = await (await s.submit(q("t", spec(2))))
        m = s.metrics()
        second = await (await s.submit(q("t2", spec(2))))
    assert r.backends_tried == ("a", "b") and r.backend == "b"
    assert m.reroutes == 1 and m.breaker_trips == 1
    assert m.backends["a"].breaker_state == "open" and not m.backends["a"].healthy
    assert second.backend == "b" and second.routing.considered["a"].startswith("out of rotation")


@pytest.mark.virtual_time
async def test_hung_job_counts_as_failed_and_is_rerouted() -> None:
    a = ScriptedBackend("a", 5, job_seconds=0.0001)
    a.hold = asyncio.Event()  # never set: every job on "a" hangs
    b = ScriptedBackend("b", 5, job_seconds=0.01)
    async with QuantumScheduler(config=fast_config(job_timeout=60.0), clock=LoopClock()) as s:
        await s.register_backend("a", a)
        await s.register_backend("b", b)
        r = await (await s.submit(q("t", spec(2))))
    assert r.backends_tried == ("a", "b") and r.value == {"00": 100}


@pytest.mark.virtual_time
async def test_quantum_task_times_out_while_its_job_hangs_and_neighbours_are_unaffected() -> None:
    b = ScriptedBackend("b", 5, per_job=2)
    b.hold = asyncio.Event()
    async with QuantumScheduler(config=fast_config(batch_window=30.0), clock=LoopClock()) as s:
        await s.register_backend("b", b)
        short = await s.submit(Task.quantum("short").with_circuit(spec(2)).with_timeout(45.0))
        other = await s.submit(q("other", spec(2)))
        with pytest.raises(TaskTimeoutError):
            await short
        b.hold.set()
        assert (await other).value == {"00": 100}
    assert b.batches == [[short.task_id, other.task_id]]


async def test_unregistering_a_backend_moves_its_queued_work() -> None:
    a = ScriptedBackend("a", 5)
    a.hold = asyncio.Event()
    b = ScriptedBackend("b", 5, job_seconds=10)
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("a", a)
        await s.register_backend("b", b)
        s.set_routing_rules([RoutingRule().default().route_to("a")])
        first = await s.submit(q("first", spec(2)))
        await a.started.wait()
        queued = [await s.submit(q(f"t{i}", spec(2))) for i in range(3)]
        removing = asyncio.ensure_future(s.unregister_backend("a"))
        await asyncio.sleep(0)
        a.hold.set()
        await removing
        results = [await h for h in queued]
        assert (await first).backend == "a"
    assert {r.backend for r in results} == {"b"}
    assert "a" not in s.backends


@settings(max_examples=25, deadline=None)
@given(
    caps=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4)), min_size=1, max_size=3),
    global_cap=st.one_of(st.none(), st.integers(1, 6)),
    n=st.integers(1, 40),
)
def test_capacity_and_global_quantum_limit_are_never_exceeded(
    caps: list[tuple[int, int]], global_cap: int | None, n: int
) -> None:
    async def scenario() -> None:
        shared = [0, 0]
        backends = [
            ScriptedBackend(f"b{i}", 5, jobs=j, per_job=c, in_flight=shared)
            for i, (j, c) in enumerate(caps)
        ]
        config = fast_config(max_concurrent_quantum=global_cap)
        async with QuantumScheduler(config=config) as s:
            for b in backends:
                await s.register_backend(b.name, b)
            handles = [await s.submit(q(f"t{i}", spec(2))) for i in range(n)]
            for h in handles:
                await h
            m = s.metrics()
        assert m.completed == n
        for b, (jobs, per_job) in zip(backends, caps, strict=True):
            assert b.max_running <= jobs
            assert all(len(batch) <= per_job for batch in b.batches)
        if global_cap is not None:
            assert shared[1] <= global_cap

    asyncio.run(scenario())


async def test_rerouting_after_a_failure_respects_the_circuits_needs() -> None:
    def gone(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        raise BackendUnavailableError("a", "down")

    a = ScriptedBackend("a", 5, script=gone, job_seconds=0.0001)
    tiny = ScriptedBackend("tiny", 2, job_seconds=0.00001)  # fastest, but too small
    c = ScriptedBackend("c", 5, job_seconds=0.01)
    async with QuantumScheduler(config=fast_config(breaker_cooldown=60)) as s:
        for b in (a, tiny, c):
            await s.register_backend(b.name, b)
        r = await (await s.submit(q("ghz4", spec(4, (0, 1), (1, 2), (2, 3)))))
    assert r.backends_tried == ("a", "c")
    assert r.routing.considered["tiny"] == "has 2 qubits, circuit needs 4"
    assert tiny.batches == []


@settings(max_examples=15, deadline=None)
@given(
    caps=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 5)), min_size=2, max_size=3),
    global_cap=st.one_of(st.none(), st.integers(1, 8)),
    n=st.integers(1, 60),
    seed=st.integers(0, 1000),
)
def test_mock_backends_capacity_and_global_limit_hold_under_faults(
    caps: list[tuple[int, int]], global_cap: int | None, n: int, seed: int
) -> None:
    from logosq_os_scheduler import MockBackend

    async def scenario() -> None:
        backends = [
            MockBackend(
                f"m{i}",
                num_qubits=4,
                latency=(0.0005, 0.0),
                failure_rate=0.2,
                max_concurrent_jobs=jobs,
                max_circuits_per_job=per_job,
                seed=seed + i,
            )
            for i, (jobs, per_job) in enumerate(caps)
        ]
        config = fast_config(max_concurrent_quantum=global_cap, max_retries=10)
        peak = 0
        async with QuantumScheduler(config=config) as s:
            core = s._core

            def watch(task: object, old: object, new: object, now: float) -> None:
                nonlocal peak
                peak = max(peak, core.quantum_in_flight)

            core.listener = watch
            for b in backends:
                await s.register_backend(b.name, b)
            handles = [await s.submit(q(f"t{i}", spec(2, (0, 1)))) for i in range(n)]
            for h in handles:
                await h
            m = s.metrics()
        # A MockBackend refuses a job larger than max_circuits_per_job, failing its tasks for
        # good: all n completing also says no batch was ever too large.
        assert m.completed == n
        for b, (jobs, _per_job) in zip(backends, caps, strict=True):
            st_ = b.statistics()
            assert st_.max_concurrent_observed <= jobs
        if global_cap is not None:
            assert peak <= global_cap

    asyncio.run(scenario())


@pytest.mark.virtual_time
async def test_routing_learns_a_backend_is_slower_than_it_declares() -> None:
    # Both declare 1 ms jobs; "a_sluggish" (first on a tie) really takes 30 s a job (in
    # virtual time). Once a job of each has been seen, expected completion sends new work to
    # the other one.
    quick = ScriptedBackend("b_quick", 5, job_seconds=0.001)
    sluggish = ScriptedBackend("a_sluggish", 5, job_seconds=0.001)
    sluggish.delay = 30.0
    async with QuantumScheduler(config=fast_config(), clock=LoopClock()) as s:
        await s.register_backend("b_quick", quick)
        await s.register_backend("a_sluggish", sluggish)
        first = [await s.submit(q(f"w{i}", spec(2))) for i in range(2)]
        assert {(await h).backend for h in first} == {"b_quick", "a_sluggish"}
        later = [await (await s.submit(q(f"t{i}", spec(2)))) for i in range(10)]
    assert [r.backend for r in later] == ["b_quick"] * 10


async def test_unregistering_fails_the_tasks_no_other_backend_can_run() -> None:
    a = ScriptedBackend("a", 5)
    a.hold = asyncio.Event()
    small = ScriptedBackend("small", 2)
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("a", a)
        await s.register_backend("small", small)
        first = await s.submit(q("first", spec(2)).with_backend("a"))  # type: ignore[attr-defined]
        await a.started.wait()
        wide = await s.submit(q("wide", spec(4, (0, 1), (2, 3))))
        pinned = await s.submit(q("pinned", spec(2)).with_backend("a"))  # type: ignore[attr-defined]
        removing = asyncio.ensure_future(s.unregister_backend("a"))
        await asyncio.sleep(0)
        a.hold.set()
        await removing
        for h in (wide, pinned):
            with pytest.raises(TaskFailedError) as info:
                await h
            assert isinstance(info.value.__cause__, NoRouteError)
        assert "being unregistered" in info.value.__cause__.reasons["a"]  # type: ignore[union-attr]
        assert (await first).backend == "a"
        assert s.metrics().failed == 2


async def test_a_batch_of_alike_tasks_is_routed_once_where_loads_cannot_change_the_choice() -> None:
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("wide", ScriptedBackend("wide", 5, per_job=10))
        await s.register_backend("narrow", ScriptedBackend("narrow", 1))
        # Separate circuit objects of one shape: their requirements are equal, not the same.
        handles = await s.submit_many([q(f"t{i}", spec(2, (0, 1))) for i in range(20)])
        results = [await h for h in handles]
        first = handles[0].task.routing
        assert all(h.task.routing is first for h in handles)
        assert first.considered["narrow"] == "has 1 qubits, circuit needs 2"
        assert {r.backend for r in results} == {"wide"}
        # Another shape in the same batch is routed on its own (and alike again after it).
        mixed = await s.submit_many(
            [q("a", spec(2, (0, 1))), q("b", spec(3, (0, 2))), q("c", spec(3, (0, 2)))]
        )
        assert mixed[1].task.routing is mixed[2].task.routing
        assert mixed[0].task.routing is not mixed[1].task.routing
        # Outside a batch every submit routes.
        one, two = s.submit_nowait(q("x", spec(2))), s.submit_nowait(q("y", spec(2)))
        assert one.task.routing is not two.task.routing
        await one, await two


async def test_a_batch_is_routed_task_by_task_where_loads_or_the_task_decide() -> None:
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("a", ScriptedBackend("a", 5))
        await s.register_backend("b", ScriptedBackend("b", 5))
        # Two backends can run it: each task sees the queue its predecessors left.
        handles = await s.submit_many([q(f"t{i}", spec(2, (0, 1))) for i in range(10)])
        results = [await h for h in handles]
        by_backend = [r.backend for r in results]
        assert by_backend.count("a") == by_backend.count("b") == 5
        # A predicate may read anything of a task: it is asked for every one.
        asked: list[str] = []

        def ask(task: Task[Any], req: object) -> bool:
            asked.append(task.name)
            return True

        s.set_routing_rules([RoutingRule().when(ask).route_to("b")])
        handles = await s.submit_many([q(f"p{i}", spec(2, (0, 1))) for i in range(4)])
        assert asked == ["p0", "p1", "p2", "p3"]
        assert {(await h).backend for h in handles} == {"b"}


async def test_rules_or_backends_changed_inside_a_batch_count_from_then_on() -> None:
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("a", ScriptedBackend("a", 5))
        with s.submitting_together():
            first = s.submit_nowait(q("first", spec(2, (0, 1))))
            s.set_routing_rules([RoutingRule().default().route_to("b")])
            s.register_backend_nowait("b", ScriptedBackend("b", 5))
            second = s.submit_nowait(q("second", spec(2, (0, 1))))
        assert (await first).backend == "a"
        assert (await second).backend == "b"


async def test_check_placement_says_what_submit_would_refuse_and_admits_nothing() -> None:
    async with QuantumScheduler(config=fast_config(max_queue_depth=2)) as s:
        await s.register_backend("small", ScriptedBackend("small", 3))
        wide = q("wide", spec(5, (0, 4))).build()
        with pytest.raises(NoRouteError, match="has 3 qubits, circuit needs 5"):
            s.check_placement(wide)
        s.check_placement(q("fits", spec(2, (0, 1))).build())
        assert s.metrics().submitted == 0
        s.check_room(2)
        with pytest.raises(QueueFullError, match="a batch of 3 tasks does not fit"):
            s.check_room(3)


async def test_removing_every_backend_leaves_none_rather_than_the_default_simulator() -> None:
    async with QuantumScheduler(config=fast_config()) as s:
        await s.register_backend("a", ScriptedBackend("a", 5))
        assert (await (await s.submit(q("before", spec(2, (0, 1)))))).backend == "a"
        await s.unregister_backend("a")
        with pytest.raises(NoRouteError):
            await s.submit(q("after", spec(2, (0, 1))))
        assert s.backends == {}
