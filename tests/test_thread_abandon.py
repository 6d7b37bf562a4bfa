"""A synchronous function that times out or is cancelled on a worker thread cannot be stopped:
its thread is abandoned and replaced, so the pool keeps its size and the slot is free at once.

Timing-free: functions block on threading.Event, deadlines expire on a ManualClock once the
test advances it, and the pool's size is read by counting its live threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest

from logosq_os_scheduler import (
    InvalidConfigError,
    ManualClock,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskCancelledError,
    TaskStatus,
    TaskTimeoutError,
)

S = TaskStatus
WAIT = 30.0  # generous bound on waits for events that the test itself causes


class Blocker:
    """A function for a worker thread: says when it has started and blocks until released."""

    def __init__(self, value: str = "late") -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.thread: threading.Thread | None = None
        self.value = value

    def __call__(self) -> str:
        self.thread = threading.current_thread()
        self.started.set()
        self.release.wait(WAIT)
        return self.value

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, WAIT), "the function never started"

    def running_thread(self) -> threading.Thread:
        assert self.thread is not None
        return self.thread


def pool_threads(
    before: set[threading.Thread], *exclude: threading.Thread
) -> list[threading.Thread]:
    """The live worker threads started since ``before`` was taken, less ``exclude``."""
    return [
        t
        for t in threading.enumerate()
        if t not in before and t.name.startswith("logosq-worker") and t not in exclude
    ]


def task_for(fn: Callable[[], str], name: str) -> Task[str]:
    return Task.classical(name).with_function(fn).with_executor("thread").build()


async def test_a_timed_out_thread_is_replaced_and_the_pool_keeps_its_size() -> None:
    before = set(threading.enumerate())
    clock = ManualClock()
    stuck = Blocker()
    async with QuantumScheduler(2, clock=clock) as s:
        h = await s.submit(
            Task.classical("stuck").with_function(stuck).with_executor("thread").with_timeout(0.01)
        )
        await stuck.wait_started()
        clock.advance(1.0)  # past the deadline: the next timer tick times the task out
        with pytest.raises(TaskTimeoutError):
            await h
        abandoned = stuck.running_thread()
        assert abandoned.is_alive() and abandoned.name.endswith("-abandoned")
        assert len(pool_threads(before, abandoned)) == 2
        m = s.metrics()
        assert (m.abandoned_threads, m.abandoned_threads_running, m.unreplaced_threads) == (1, 1, 0)
        assert (m.running, m.timed_out) == (0, 1)

        # Both slots are free: two more blocking tasks start while the abandoned one blocks.
        a, b = Blocker("a"), Blocker("b")
        ha = await s.submit(task_for(a, "a"))
        hb = await s.submit(task_for(b, "b"))
        await a.wait_started()
        await b.wait_started()
        assert not stuck.release.is_set()
        assert {a.running_thread(), b.running_thread()} == set(pool_threads(before, abandoned))
        a.release.set()
        b.release.set()
        assert [(await ha).value, (await hb).value] == ["a", "b"]

        # Once its function returns, the abandoned thread exits; its result is dropped.
        stuck.release.set()
        abandoned.join(WAIT)
        assert not abandoned.is_alive()
        assert len(pool_threads(before)) == 2
        m = s.metrics()
        assert (m.abandoned_threads, m.abandoned_threads_running) == (1, 0)
        assert (m.completed, m.timed_out) == (2, 1)
        assert h.status is S.TIMED_OUT
        with pytest.raises(TaskTimeoutError):
            await h


async def test_cancelling_a_running_thread_task_frees_its_slot_for_the_next_task() -> None:
    before = set(threading.enumerate())
    stuck, nxt = Blocker(), Blocker("next")
    async with QuantumScheduler(1) as s:
        h = await s.submit(task_for(stuck, "stuck"))
        await stuck.wait_started()
        queued = await s.submit(task_for(nxt, "next"))
        assert queued.status is S.QUEUED  # the only slot is taken
        assert h.cancel() is True
        with pytest.raises(TaskCancelledError):
            await h
        # The queued task starts at once, on the replacement thread, while the old one blocks.
        await nxt.wait_started()
        abandoned = stuck.running_thread()
        assert nxt.running_thread() is not abandoned
        assert pool_threads(before, abandoned) == [nxt.running_thread()]
        assert not stuck.release.is_set() and abandoned.is_alive()
        nxt.release.set()
        assert (await queued).value == "next"
        stuck.release.set()
        abandoned.join(WAIT)
        assert not abandoned.is_alive()
        assert len(pool_threads(before)) == 1
    m = s.metrics()
    assert (m.cancelled, m.completed, m.abandoned_threads, m.abandoned_threads_running) == (
        1,
        1,
        1,
        0,
    )


async def test_abandonment_is_logged_at_debug_level_only(caplog: pytest.LogCaptureFixture) -> None:
    stuck = Blocker()
    with caplog.at_level(logging.DEBUG, logger="logosq_os_scheduler"):
        async with QuantumScheduler(1) as s:
            h = await s.submit(task_for(stuck, "stuck"))
            await stuck.wait_started()
            h.cancel()
            abandoned = stuck.running_thread()
            stuck.release.set()
            abandoned.join(WAIT)
    records = [r for r in caplog.records if "abandoned worker thread" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert "'stuck'" in records[0].getMessage() and "was cancelled" in records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_at_the_cap_a_thread_is_not_replaced_and_keeps_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = set(threading.enumerate())
    first, second, nxt = Blocker("first"), Blocker("second"), Blocker("next")
    config = SchedulerConfig(workers=1, max_abandoned_threads=1)
    with caplog.at_level(logging.INFO, logger="logosq_os_scheduler"):
        async with QuantumScheduler(config=config) as s:
            h1 = await s.submit(task_for(first, "first"))
            await first.wait_started()
            h1.cancel()  # abandoned: one abandoned thread now runs, the cap
            h2 = await s.submit(task_for(second, "second"))
            await second.wait_started()
            h2.cancel()  # at the cap: its thread is kept and holds the only slot
            with pytest.raises(TaskCancelledError) as raised:
                await h2
            # The caller learns why the pool now runs a worker short.
            assert "max_abandoned_threads=1" in str(raised.value.__cause__)
            queued = await s.submit(task_for(nxt, "next"))
            assert queued.status is S.QUEUED
            m = s.metrics()
            assert (m.abandoned_threads, m.abandoned_threads_running) == (1, 1)
            assert m.unreplaced_threads == 1
            kept = second.running_thread()
            assert not kept.name.endswith("-abandoned")
            assert pool_threads(before, first.running_thread()) == [kept]

            # When the kept thread's function returns, its result is dropped, the slot is
            # released (once) and the thread rejoins the pool to run the queued task.
            second.release.set()
            await nxt.wait_started()
            assert nxt.running_thread() is kept
            nxt.release.set()
            assert (await queued).value == "next"
            assert h2.status is S.CANCELLED
            first.release.set()
            first.running_thread().join(WAIT)
            assert pool_threads(before) == [kept]
        m = s.metrics()
        assert (m.abandoned_threads, m.abandoned_threads_running, m.unreplaced_threads) == (1, 0, 1)
        assert (m.cancelled, m.completed) == (2, 1)
    [record] = [r for r in caplog.records if "was not replaced" in r.getMessage()]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert "task" in message and "'second'" in message and "was cancelled" in message
    assert "1 abandoned threads are still running (max_abandoned_threads=1)" in message
    assert "raise max_abandoned_threads" in message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_zero_turns_abandonment_off(caplog: pytest.LogCaptureFixture) -> None:
    stuck = Blocker()
    config = SchedulerConfig(workers=1, max_abandoned_threads=0)
    with caplog.at_level(logging.INFO, logger="logosq_os_scheduler"):
        async with QuantumScheduler(config=config) as s:
            h = await s.submit(task_for(stuck, "stuck"))
            await stuck.wait_started()
            h.cancel()
            queued = await s.submit(Task.classical("after").with_function(str.upper, "x"))
            assert queued.status is S.QUEUED  # the kept thread still holds the only slot
            stuck.release.set()
            assert (await queued).value == "X"
    m = s.metrics()
    assert (m.abandoned_threads, m.unreplaced_threads) == (0, 1)
    assert any("abandoning threads is off" in r.getMessage() for r in caplog.records)


async def test_configure_changes_the_cap() -> None:
    stuck = Blocker()
    async with QuantumScheduler(config=SchedulerConfig(workers=1, max_abandoned_threads=0)) as s:
        s.configure(max_abandoned_threads=2)
        h = await s.submit(task_for(stuck, "stuck"))
        await stuck.wait_started()
        h.cancel()
        assert s.metrics().abandoned_threads == 1
        stuck.release.set()
        stuck.running_thread().join(WAIT)


def test_the_setting_is_validated() -> None:
    assert SchedulerConfig().max_abandoned_threads == 64
    assert SchedulerConfig(max_abandoned_threads=0).max_abandoned_threads == 0
    for bad in (-1, True, 1.5, "8", None):
        with pytest.raises(InvalidConfigError, match="max_abandoned_threads") as info:
            SchedulerConfig(max_abandoned_threads=bad)  # type: ignore[arg-type]
        assert info.value.setting == "max_abandoned_threads"
    with pytest.raises(InvalidConfigError, match="max_abandoned_threads"):
        SchedulerConfig().replace(max_abandoned_threads=-3)


async def test_the_new_counters_are_exported_to_prometheus() -> None:
    pytest.importorskip("prometheus_client")
    from logosq_os_scheduler.observability import PrometheusExporter

    stuck = Blocker()
    async with QuantumScheduler(1) as s:
        exporter = PrometheusExporter(s)
        h = await s.submit(task_for(stuck, "stuck"))
        await stuck.wait_started()
        h.cancel()
        text = await asyncio.to_thread(exporter.exposition)
        assert "logosq_abandoned_threads_total 1.0" in text
        assert "logosq_abandoned_threads_running 1.0" in text
        assert "logosq_unreplaced_threads_total 0.0" in text
        stuck.release.set()
        stuck.running_thread().join(WAIT)
    assert s.metrics().as_dict()["abandoned_threads"] == 1
