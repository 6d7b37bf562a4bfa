"""QuantumScheduler on a real event loop: results, ordering, errors, timeouts, cancellation,
shutdown and metrics. Tests wait on events and handles, never on sleeps."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest

from logosq_os_scheduler import (
    BlockingScheduler,
    InvalidTaskError,
    LoopClock,
    ManualClock,
    NoRouteError,
    QuantumScheduler,
    QueueFullError,
    SchedulerClosedError,
    SchedulerConfig,
    Task,
    TaskCancelledError,
    TaskFailedError,
    TaskHandle,
    TaskPriority,
    TaskStatus,
    TaskTimeoutError,
    current_context,
)

S = TaskStatus


def add(a: int, b: int) -> int:
    return a + b


async def aadd(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


class Boom(RuntimeError):
    pass


def boom() -> None:
    raise Boom("exploded")


async def gate_task(gate: asyncio.Event) -> str:
    await gate.wait()
    return "opened"


async def test_sync_and_async_functions_return_their_values() -> None:
    async with QuantumScheduler(2) as s:
        h1 = await s.submit(Task.classical("add").with_function(add, 2, 3))
        h2 = await s.submit(Task.classical("aadd").with_function(aadd, 4, b=5))
        r1, r2 = await h1, await h2
    assert (r1.value, r2.value) == (5, 9)
    assert r1.status is S.COMPLETED and r1.attempts == 1
    assert r1.finished_at >= r1.started_at >= r1.submitted_at  # type: ignore[operator]
    assert h1.done() and h1.status is S.COMPLETED


async def test_builder_can_be_submitted_twice_but_a_task_only_once() -> None:
    async with QuantumScheduler(1) as s:
        builder = Task.classical("add").with_function(add, 1, 1)
        a, b = await s.submit(builder), await s.submit(builder)
        assert a.task_id != b.task_id
        task = builder.build()
        await s.submit(task)
        with pytest.raises(InvalidTaskError, match="already submitted"):
            await s.submit(task)
        with pytest.raises(InvalidTaskError, match="expected a Task"):
            await s.submit("not a task")  # type: ignore[arg-type]


async def test_priority_order_and_fifo_within_a_level_at_runtime() -> None:
    rng = random.Random(3)
    order: list[int] = []
    gate = asyncio.Event()
    async with QuantumScheduler(1, config=SchedulerConfig(workers=1, aging_threshold=None)) as s:
        blocker = await s.submit(Task.classical("gate").with_function(gate_task, gate))
        handles: list[TaskHandle[None]] = []
        for i in range(300):
            prio = rng.choice(list(TaskPriority))
            b = Task.classical(f"t{i}").with_function(order.append, i).with_priority(prio)
            handles.append(await s.submit(b.with_executor("inline")))
        assert s.metrics().queue_depth == 300
        gate.set()
        await blocker
        for h in handles:
            await h
    expected = sorted(range(300), key=lambda i: (-int(handles[i].priority), i))
    assert order == expected


async def test_failure_carries_the_original_exception_as_cause() -> None:
    async with QuantumScheduler(1) as s:
        for executor in ("thread", "inline"):
            h = await s.submit(Task.classical("boom").with_function(boom).with_executor(executor))
            with pytest.raises(TaskFailedError, match="Boom: exploded") as info:
                await h
            assert isinstance(info.value.__cause__, Boom)
            assert info.value.task_id == h.task_id
            assert h.status is S.FAILED

        async def afail() -> None:
            raise Boom("async")

        h = await s.submit(Task.classical("afail").with_function(afail))
        with pytest.raises(TaskFailedError) as info:
            await h
        assert isinstance(info.value.__cause__, Boom)
        # The scheduler is still healthy.
        assert (await (await s.submit(Task.classical("ok").with_function(add, 1, 1)))).value == 2


@pytest.mark.virtual_time
async def test_async_task_past_its_deadline_is_cancelled_and_times_out() -> None:
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with QuantumScheduler(1, clock=LoopClock()) as s:
        h = await s.submit(Task.classical("hang").with_function(hang).with_timeout(30))
        with pytest.raises(TaskTimeoutError):
            await h
        await cancelled.wait()
        assert h.status is S.TIMED_OUT
        # Its slot came back: the next task runs.
        assert (await (await s.submit(Task.classical("next").with_function(add, 1, 2)))).value == 3
    assert s.metrics().timed_out == 1


async def test_thread_task_past_its_deadline_times_out_and_its_late_result_is_dropped() -> None:
    release = threading.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow() -> None:
        loop.call_soon_threadsafe(started.set)
        release.wait(60)

    clock = ManualClock()
    async with QuantumScheduler(1, clock=clock) as s:
        h = await s.submit(Task.classical("slow").with_function(slow).with_timeout(30))
        # The deadline passes once the function runs on its thread (were it to pass before
        # the thread picked the function up, the slot would free then, not at once).
        await started.wait()
        clock.advance(30)
        with pytest.raises(TaskTimeoutError):
            await h
        queued = await s.submit(Task.classical("after").with_function(add, 1, 1))
        # Its thread was abandoned and replaced, and its slot freed: the next task starts at
        # once, while the timed-out function still runs.
        assert queued.status is S.RUNNING
        release.set()
        assert (await queued).value == 2
    assert h.status is S.TIMED_OUT


@pytest.mark.virtual_time
async def test_queued_task_times_out_in_the_queue() -> None:
    gate = asyncio.Event()
    async with QuantumScheduler(1, clock=LoopClock()) as s:
        blocker = await s.submit(Task.classical("gate").with_function(gate_task, gate))
        h = await s.submit(Task.classical("late").with_function(add, 1, 1).with_timeout(30))
        with pytest.raises(TaskTimeoutError):
            await h
        gate.set()
        await blocker
    m = s.metrics()
    assert (m.completed, m.timed_out, m.queued) == (1, 1, 0)


async def test_cancel_queued_and_running_tasks() -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()
    stopped = asyncio.Event()

    async def runs_until_cancelled() -> None:
        entered.set()
        try:
            await gate.wait()
        finally:
            stopped.set()

    async with QuantumScheduler(1) as s:
        running = await s.submit(Task.classical("run").with_function(runs_until_cancelled))
        queued = await s.submit(Task.classical("q").with_function(add, 1, 1))
        await entered.wait()
        assert queued.cancel() is True
        assert queued.cancel() is False
        assert running.cancel() is True
        with pytest.raises(TaskCancelledError):
            await queued
        with pytest.raises(TaskCancelledError):
            await running
        await stopped.wait()
        assert s.metrics().cancelled == 2
        assert (await (await s.submit(Task.classical("ok").with_function(add, 2, 2)))).value == 4


async def test_cancel_before_a_coroutine_first_runs_frees_its_slot() -> None:
    started = []

    async def never_started() -> None:
        started.append(True)

    async with QuantumScheduler(1) as s:
        h = await s.submit(Task.classical("c").with_function(never_started))
        assert h.status is S.RUNNING and h.cancel() is True
        nxt = await s.submit(Task.classical("next").with_function(aadd, 1, 1))
        assert (await nxt).value == 2
    assert started == [] and h.status is S.CANCELLED


async def test_queue_full_rejects_the_new_task_and_leaves_the_rest() -> None:
    gate = asyncio.Event()
    s = QuantumScheduler(1).with_max_queue_depth(2)
    async with s:
        blocker = await s.submit(Task.classical("gate").with_function(gate_task, gate))
        a = await s.submit(Task.classical("a").with_function(add, 1, 0))
        b = await s.submit(Task.classical("b").with_function(add, 2, 0))
        with pytest.raises(QueueFullError, match="max_queue_depth=2"):
            await s.submit(Task.classical("c").with_function(add, 3, 0))
        gate.set()
        assert [(await h).value for h in (blocker, a, b)] == ["opened", 1, 2]
    assert s.metrics().submitted == 3


async def test_close_drains_by_default() -> None:
    s = QuantumScheduler(2)
    handles = [await s.submit(Task.classical(f"t{i}").with_function(aadd, i, 1)) for i in range(50)]
    await s.aclose()
    assert [(await h).value for h in handles] == [i + 1 for i in range(50)]
    with pytest.raises(SchedulerClosedError):
        await s.submit(Task.classical("late").with_function(add, 1, 1))


async def test_close_can_cancel_what_is_pending() -> None:
    gate = asyncio.Event()
    s = QuantumScheduler(1)
    blocker = await s.submit(Task.classical("gate").with_function(gate_task, gate))
    pending = [await s.submit(Task.classical(f"t{i}").with_function(add, i, 1)) for i in range(20)]
    closing = asyncio.ensure_future(s.aclose(cancel_pending=True))
    await asyncio.sleep(0)
    assert all(h.status is S.CANCELLED for h in pending)
    gate.set()
    await closing
    assert (await blocker).value == "opened"
    assert s.metrics().cancelled == 20


@pytest.mark.virtual_time
async def test_close_with_timeout_never_hangs_on_a_task_that_never_ends() -> None:
    s = QuantumScheduler(1, clock=LoopClock())
    hung = await s.submit(Task.classical("hang").with_function(asyncio.Event().wait))
    queued = await s.submit(Task.classical("q").with_function(add, 1, 1))
    loop = asyncio.get_running_loop()
    await s.aclose(timeout=60)
    assert loop.time() == pytest.approx(60)  # a minute of virtual time
    assert hung.status is S.CANCELLED and queued.status is S.CANCELLED
    assert s.metrics().unfinished if hasattr(s.metrics(), "unfinished") else True
    m = s.metrics()
    assert m.queued == m.running == 0 and m.cancelled == 2


async def test_quantum_task_without_any_backend_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from logosq_os_scheduler.backends import CircuitSpec

    async with QuantumScheduler(1) as s:
        # As on a machine without the qiskit extra: no default simulator to fall back on.
        monkeypatch.setattr(s._quantum, "_register_default_backend", lambda: None)
        with pytest.raises(NoRouteError, match="no backend is registered"):
            await s.submit(Task.quantum("bell").with_circuit(CircuitSpec(2, ((0, 1),))))


async def test_fast_functions_move_inline_and_slow_ones_go_back_to_threads() -> None:
    loop_thread = threading.get_ident()
    where: list[bool] = []

    def probe(slow: bool) -> None:
        where.append(threading.get_ident() == loop_thread)
        if slow:
            time.sleep(0.01)

    async with QuantumScheduler(1) as s:
        for _ in range(3):
            await (await s.submit(Task.classical("p").with_function(probe, False)))
        await (await s.submit(Task.classical("p").with_function(probe, True)))
        await (await s.submit(Task.classical("p").with_function(probe, False)))
    # First run on a thread (measured), then inline; a slow inline run demotes it.
    assert where == [False, True, True, True, False]


async def test_inline_threshold_zero_turns_the_fast_path_off() -> None:
    loop_thread = threading.get_ident()
    where: list[bool] = []
    config = SchedulerConfig(workers=1, inline_threshold=0)
    async with QuantumScheduler(config=config) as s:
        for _ in range(3):
            h = await s.submit(
                Task.classical("p").with_function(
                    lambda: where.append(threading.get_ident() == loop_thread)
                )
            )
            await h
    assert where == [False, False, False]


async def test_metrics_agree_with_the_handles() -> None:
    async with QuantumScheduler(2) as s:
        handles = []
        for i in range(200):
            b = Task.classical(f"t{i}").with_priority(list(TaskPriority)[i % 5])
            if i % 10 == 0:
                b.with_function(boom)
            else:
                b.with_function(add, i, 0)
            handles.append(await s.submit(b))
        handles[5].cancel()
        await s.join()
        m = s.metrics()
    statuses = [h.status for h in handles]
    assert m.submitted == 200
    assert m.completed == statuses.count(S.COMPLETED)
    assert m.failed == statuses.count(S.FAILED) == 20
    assert m.cancelled == statuses.count(S.CANCELLED)
    assert m.finished == 200 and m.queue_depth == 0
    assert sum(m.by_priority.values()) == 200
    assert all(n == 40 for n in m.by_priority.values())
    assert m.latency_p50 is not None and m.latency_p99 is not None
    assert m.latency_p50 <= m.latency_p99
    assert 0.0 <= m.worker_utilisation <= 1.0
    assert m.as_dict()["by_priority"] == {p.name: 40 for p in TaskPriority}


async def test_handle_result_blocks_another_thread_until_done() -> None:
    gate = asyncio.Event()
    async with QuantumScheduler(1) as s:
        h = await s.submit(Task.classical("gate").with_function(gate_task, gate))
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(h.result(timeout=10).value))
        waiter.start()
        with pytest.raises(TaskTimeoutError, match="still running"):
            await asyncio.to_thread(h.result, 0.01)
        gate.set()
        await h
        await asyncio.to_thread(waiter.join)
    assert got == ["opened"]


async def test_timeout_and_config_validation() -> None:
    with pytest.raises(InvalidTaskError, match="timeout"):
        Task.classical("x").with_timeout(-1)
    with pytest.raises(InvalidTaskError, match="executor"):
        async with QuantumScheduler(1) as s:
            await s.submit(Task.classical("x").with_function(add, 1, 1).with_executor("gpu"))


async def test_limits_are_refused_where_they_cannot_be_enforced() -> None:
    async with QuantumScheduler(1) as s:
        for executor in (None, "thread", "inline"):
            b = Task.classical("x").with_function(add, 1, 1).with_limits(memory_bytes=64 << 20)
            if executor is not None:
                b.with_executor(executor)
            with pytest.raises(InvalidTaskError, match="worker processes") as info:
                await s.submit(b)
            assert info.value.field == "limits"


async def test_a_plain_task_carries_no_side_parts_and_rare_fields_read_through() -> None:
    # A queued task is what the scheduler holds most of: a plain classical task keeps only
    # the fields every task uses (no quantum part, no extras) and has no __dict__.
    plain = Task.classical("plain").with_function(int, 1).build()
    assert plain.extras is None and plain.quantum_part is None
    assert not hasattr(plain, "__dict__")
    assert (plain.timeout, plain.executor, plain.preemptible, plain.metadata) == (
        None,
        None,
        True,
        {},
    )
    assert (plain.error, plain.backend_used, plain.shots, plain.preemptions) == (
        None,
        None,
        1024,
        0,
    )
    # Setting a rare field creates the side part; the builder's values read through.
    labelled = Task.classical("l").with_function(int).with_timeout(5).with_metadata(k=1).build()
    assert labelled.extras is not None and labelled.quantum_part is None
    assert (labelled.timeout, labelled.metadata) == (5.0, {"k": 1})
    quantum = Task.quantum("q").with_circuit("c").with_shots(10).with_backend("b").build()
    assert quantum.quantum_part is not None and quantum.extras is None
    assert (quantum.circuit, quantum.shots, quantum.backend) == ("c", 10, "b")
    plain.preemptions += 1
    assert plain.extras is not None and plain.preemptions == 1

    async with QuantumScheduler(1) as s:
        # A failure lands in the extras, and the context finds its scheduler through the pool.
        def boom() -> None:
            raise ValueError("no")

        def priority_from_context() -> str:
            return current_context().priority.name

        failed = await s.submit(Task.classical("boom").with_function(boom))
        with pytest.raises(TaskFailedError) as info:
            await failed
        assert isinstance(info.value.__cause__, ValueError)
        ctx = await s.submit(Task.classical("ctx").with_function(priority_from_context))
        assert (await ctx).value == "NORMAL"


async def test_cancel_all_cancels_the_queued_then_the_running_and_the_scheduler_goes_on() -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        started.set()
        await gate.wait()

    async with QuantumScheduler(1, config=SchedulerConfig(workers=1)) as s:
        running = await s.submit(Task.classical("hold").with_function(hold))
        queued = [
            await s.submit(Task.classical(f"q{i}").with_function(add, i, 1)) for i in range(3)
        ]
        await started.wait()
        assert s.cancel_all(queued_only=True) == 3
        assert [h.status for h in queued] == [S.CANCELLED] * 3
        assert running.status is S.RUNNING
        assert s.cancel_all() == 1
        assert running.status is S.CANCELLED
        assert s.cancel_all() == 0
        # Still open: new work runs.
        after = await s.submit(Task.classical("after").with_function(add, 2, 3))
        assert (await after).value == 5


def test_blocking_cancel_all_from_another_thread() -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(60)

    with BlockingScheduler(1) as s:
        running = s.submit(Task.classical("hold").with_function(hold))
        queued = s.submit(Task.classical("next").with_function(add, 1, 1))
        assert started.wait(60)
        assert s.cancel_all(queued_only=True) == 1
        assert queued.status is S.CANCELLED
        release.set()
        assert running.result(timeout=60).value is True
        assert s.cancel_all() == 0


async def test_metrics_from_any_thread_hops_onto_the_loop() -> None:
    def one() -> int:
        return 1

    async with QuantumScheduler(1) as scheduler:
        await (await scheduler.submit(Task.classical("one").with_function(one)))
        # From another thread: taken on the loop and handed back.
        snapshot = await asyncio.to_thread(scheduler.metrics_from_any_thread, 5.0)
        assert snapshot.submitted == 1 and snapshot.completed == 1
        # On the loop thread: taken directly (a hop would wait on itself).
        assert scheduler.metrics_from_any_thread().completed == 1
    assert scheduler.metrics_from_any_thread().completed == 1  # the loop is gone: directly


async def test_the_scheduler_publishes_every_status_change_to_its_listeners() -> None:
    seen: list[tuple[str, str, str]] = []
    also: list[str] = []

    def listener(task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        seen.append((task.name, old.name, new.name))

    def second(task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        also.append(new.name)

    async with QuantumScheduler(1) as s:
        s.add_listener(listener)
        s.add_listener(second)
        await (await s.submit(Task.classical("a").with_function(int, 1)))
        assert s.remove_listener(second) is True
        assert s.remove_listener(second) is False
        await (await s.submit(Task.classical("b").with_function(int, 2)))
    assert seen == [
        ("a", "PENDING", "QUEUED"),
        ("a", "QUEUED", "RUNNING"),
        ("a", "RUNNING", "COMPLETED"),
        ("b", "PENDING", "QUEUED"),
        ("b", "QUEUED", "RUNNING"),
        ("b", "RUNNING", "COMPLETED"),
    ]
    assert also == ["QUEUED", "RUNNING", "COMPLETED"]
