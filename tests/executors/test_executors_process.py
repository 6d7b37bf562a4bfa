"""ProcessExecutor: results, errors, crash containment, limits, pickling, cancel, close.

Tasks that must be caught mid-run connect to a :class:`Gate` (a Unix socket served by the
test): the test waits until every such task has reported in, so "running at once" is a fact,
not a hope, and it sees a worker die as end-of-file on that task's connection. Nothing here
sleeps to wait for something to happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import _executor_tasks as tasks
from logosq_os_scheduler import (
    InvalidConfigError,
    InvalidTaskError,
    SchedulerClosedError,
    TaskFailedError,
)
from logosq_os_scheduler.executors import (
    Executor,
    ProcessExecutor,
    ResourceLimitError,
    WorkerCrashedError,
)

MiB = 1 << 20


class Gate:
    """A Unix socket server that :func:`_executor_tasks.gated` tasks report to."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "gate.sock")
        self._arrived: dict[str, asyncio.Future[tuple[int, asyncio.StreamReader]]] = {}
        self._writers: dict[str, asyncio.StreamWriter] = {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._on_connect, self.path)

    def _slot(self, tag: str) -> asyncio.Future[tuple[int, asyncio.StreamReader]]:
        if tag not in self._arrived:
            self._arrived[tag] = asyncio.get_running_loop().create_future()
        return self._arrived[tag]

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tag, pid = (await reader.readline()).decode().split()
        self._writers[tag] = writer
        self._slot(tag).set_result((int(pid), reader))

    async def arrived(self, tag: str) -> int:
        """Wait until the task tagged ``tag`` is running; returns its worker's pid."""
        # A bound, not a pause: a broken executor fails the test instead of hanging it.
        async with asyncio.timeout(60):
            pid, _ = await self._slot(tag)
        return pid

    def command(self, tag: str, command: bytes) -> None:
        self._writers[tag].write(command)

    async def gone(self, tag: str) -> None:
        """Wait until the task's connection closes (it returned, or its process died)."""
        async with asyncio.timeout(60):
            _, reader = await self._slot(tag)
            assert await reader.read() == b""

    async def close_connections(self) -> None:
        writers = list(self._writers.values())
        self._writers.clear()
        for writer in writers:
            writer.close()
            await writer.wait_closed()

    async def aclose(self) -> None:
        await self.close_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    # A short directory: Unix socket paths are limited to about 100 bytes.
    directory = tempfile.mkdtemp(prefix="lq-")
    g = Gate(directory)
    await g.start()
    try:
        yield g
    finally:
        await g.aclose()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def executor() -> AsyncIterator[ProcessExecutor]:
    ex = ProcessExecutor(2)
    try:
        yield ex
    finally:
        await ex.aclose()


def _gated(ex: ProcessExecutor, gate: Gate, tag: str, task_id: int) -> asyncio.Future[object]:
    return ex.submit(tasks.gated, (gate.path, tag), {}, task_id=task_id)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- results and errors ----------------------------------------------------------------------


async def test_runs_functions_in_other_processes(executor: ProcessExecutor) -> None:
    assert isinstance(executor, Executor)
    assert executor.capacity == 2
    futures = [executor.submit(tasks.add, (i, 10), {}, task_id=i) for i in range(20)]
    assert await asyncio.gather(*futures) == [i + 10 for i in range(20)]
    pids = await asyncio.gather(
        *(executor.submit(tasks.pid, (), {}, task_id=100 + i) for i in range(4))
    )
    assert os.getpid() not in pids
    assert set(pids) <= executor.worker_pids()
    stats = executor.statistics()
    assert (stats.completed, stats.failed, stats.running, stats.waiting) == (24, 0, 0, 0)
    assert (stats.workers, stats.idle, stats.workers_started) == (2, 2, 2)


async def test_keyword_arguments_and_large_payloads_travel_both_ways(
    executor: ProcessExecutor,
) -> None:
    blob = os.urandom(8 * MiB)  # larger than a socket buffer: partial writes and reads
    assert await executor.submit(tasks.echo, (), {"value": blob}, task_id=1) == blob


async def test_exception_type_chain_and_worker_traceback_are_kept(
    executor: ProcessExecutor,
) -> None:
    with pytest.raises(ValueError, match="bad value") as info:
        await executor.submit(tasks.raise_chained, (), {}, task_id=1)
    err = info.value
    assert type(err) is ValueError
    assert isinstance(err.__cause__, KeyError)
    assert err.__cause__.args == ("missing",)
    (note,) = err.__notes__
    assert note.startswith("[traceback in worker process ")
    assert "in raise_chained" in note
    assert "The above exception was the direct cause" in note
    # A failing task does not cost its worker.
    assert executor.statistics().workers_started == 2


async def test_exception_that_cannot_be_unpickled_is_described(
    executor: ProcessExecutor,
) -> None:
    with pytest.raises(TaskFailedError, match=r"NeedsTwoArgsError: 7: odd") as info:
        await executor.submit(tasks.raise_unloadable, (), {}, task_id=5)
    assert info.value.task_id == 5
    assert "raise_unloadable" in info.value.__notes__[0]


async def test_system_exit_in_a_task_fails_the_task_not_the_caller(
    executor: ProcessExecutor,
) -> None:
    with pytest.raises(TaskFailedError, match="raised SystemExit") as info:
        await executor.submit(tasks.raise_system_exit, (), {}, task_id=1)
    assert isinstance(info.value.__cause__, SystemExit)
    assert info.value.__cause__.code == 4
    assert await executor.submit(tasks.add, (1, 1), {}, task_id=2) == 2
    assert executor.statistics().workers_started == 2


async def test_tasks_beyond_capacity_wait_for_a_worker() -> None:
    ex = ProcessExecutor(1)
    try:
        futures = [ex.submit(tasks.add, (i, i), {}, task_id=i) for i in range(6)]
        assert ex.statistics().waiting == 5
        assert await asyncio.gather(*futures) == [2 * i for i in range(6)]
    finally:
        await ex.aclose()


# -- pickling --------------------------------------------------------------------------------


async def test_unpicklable_function_or_arguments_fail_at_submit(executor: ProcessExecutor) -> None:
    with pytest.raises(InvalidTaskError, match="module level") as info:
        executor.submit(lambda: 1, (), {}, task_id=1)
    assert info.value.field == "function"
    with pytest.raises(InvalidTaskError, match=r"argument 1 \(a lock\)") as info:
        executor.submit(tasks.add, (1, threading.Lock()), {}, task_id=2)
    assert info.value.field == "args"
    with pytest.raises(InvalidTaskError, match="keyword argument 'value'") as info:
        executor.submit(tasks.echo, (), {"value": threading.Lock()}, task_id=3)
    assert info.value.field == "args"
    stats = executor.statistics()
    assert (stats.running, stats.waiting, stats.failed) == (0, 0, 0)
    # The ids were not taken: they can be used again.
    assert await executor.submit(tasks.add, (2, 3), {}, task_id=1) == 5


async def test_unpicklable_result_fails_that_task_and_keeps_the_worker(
    executor: ProcessExecutor,
) -> None:
    with pytest.raises(TaskFailedError, match="cannot be pickled back") as info:
        await executor.submit(tasks.return_unpicklable, (), {}, task_id=9)
    assert info.value.task_id == 9
    assert isinstance(info.value.__cause__, TypeError)
    assert "lock" in str(info.value.__cause__)
    assert await executor.submit(tasks.add, (1, 2), {}, task_id=10) == 3
    stats = executor.statistics()
    assert (stats.failed, stats.crashed, stats.workers_started) == (1, 0, 2)


# -- crash containment -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "exitcode", "signum"),
    [
        ("os._exit", 3, None),
        ("segfault", None, signal.SIGSEGV),
        ("SIGKILL from outside", None, signal.SIGKILL),
    ],
)
async def test_a_worker_dying_mid_task_fails_that_task_alone(
    gate: Gate, how: str, exitcode: int | None, signum: int | None
) -> None:
    ex = ProcessExecutor(3)
    try:
        futures = {tag: _gated(ex, gate, tag, n) for n, tag in enumerate("abc", start=1)}
        pids = {tag: await gate.arrived(tag) for tag in "abc"}  # all three run at once
        assert len(set(pids.values())) == 3
        if how == "os._exit":
            gate.command("b", b"x")
        elif how == "segfault":
            gate.command("b", b"s")
        else:
            os.kill(pids["b"], signal.SIGKILL)

        with pytest.raises(WorkerCrashedError) as info:
            await futures["b"]
        err = info.value
        assert (err.task_id, err.pid, err.exitcode, err.signal) == (2, pids["b"], exitcode, signum)
        expected = f"code {exitcode}" if signum is None else signal.Signals(signum).name
        assert expected in str(err)
        assert "no other task is affected" in str(err)

        # The others were untouched and finish normally.
        assert not futures["a"].done() and not futures["c"].done()
        gate.command("a", b"r")
        gate.command("c", b"r")
        assert await futures["a"] == "a"
        assert await futures["c"] == "c"

        stats = ex.statistics()
        assert (stats.workers, stats.crashed, stats.completed, stats.workers_started) == (
            3,
            1,
            2,
            4,
        )
        assert pids["b"] not in ex.worker_pids()
        # Full capacity: three new tasks run at once again.
        more = {tag: _gated(ex, gate, tag, n) for n, tag in enumerate("def", start=10)}
        assert len({await gate.arrived(tag) for tag in "def"}) == 3
        for tag in "def":
            gate.command(tag, b"r")
        assert [await more[tag] for tag in "def"] == ["d", "e", "f"]
    finally:
        await ex.aclose()


async def test_an_idle_worker_that_dies_is_replaced(executor: ProcessExecutor, gate: Gate) -> None:
    fut = _gated(executor, gate, "a", 1)
    victim = await gate.arrived("a")
    gate.command("a", b"r")
    assert await fut == "a"
    await gate.gone("a")
    os.kill(victim, signal.SIGKILL)
    # Two tasks at once still have two workers, even if the kill is only noticed meanwhile.
    futures = [_gated(executor, gate, tag, n) for n, tag in enumerate("bc", start=2)]
    assert {await gate.arrived("b"), await gate.arrived("c")}.isdisjoint({victim})
    for tag in "bc":
        gate.command(tag, b"r")
    assert await asyncio.gather(*futures) == ["b", "c"]
    assert executor.statistics().crashed == 0


# -- limits ----------------------------------------------------------------------------------


async def test_memory_limit_fails_the_task_and_is_lifted_afterwards() -> None:
    ex = ProcessExecutor(1)
    try:
        limits = {"memory_bytes": 512 * MiB}
        with pytest.raises(ResourceLimitError, match="ran out of memory under its limit") as info:
            await ex.submit(tasks.allocate, (1024 * MiB,), {}, task_id=1, limits=limits)
        assert (info.value.limit, info.value.value, info.value.task_id) == (
            "memory_bytes",
            512 * MiB,
            1,
        )
        assert isinstance(info.value.__cause__, MemoryError)
        # Under the limit the same worker does fine, and without a limit it may use more.
        assert await ex.submit(tasks.allocate, (64 * MiB,), {}, task_id=2, limits=limits) == (
            64 * MiB
        )
        assert await ex.submit(tasks.allocate, (640 * MiB,), {}, task_id=3) == 640 * MiB
        assert ex.statistics().workers_started == 1
    finally:
        await ex.aclose()


async def test_default_memory_limit_applies_unless_a_task_overrides_it() -> None:
    ex = ProcessExecutor(1, memory_limit_bytes=256 * MiB)
    try:
        with pytest.raises(ResourceLimitError):
            await ex.submit(tasks.allocate, (320 * MiB,), {}, task_id=1)
        limits = {"memory_bytes": 1024 * MiB}
        assert await ex.submit(tasks.allocate, (320 * MiB,), {}, task_id=2, limits=limits) == (
            320 * MiB
        )
    finally:
        await ex.aclose()


async def test_cpu_time_limit_stops_a_task_that_catches_exceptions() -> None:
    ex = ProcessExecutor(1)
    try:
        fut = ex.submit(
            tasks.spin_catching_everything, (), {}, task_id=1, limits={"cpu_seconds": 1}
        )
        with pytest.raises(ResourceLimitError, match="CPU-time limit of 1 s") as info:
            await fut
        assert (info.value.limit, info.value.value) == ("cpu_seconds", 1.0)
        # A worker that ran under a CPU limit is replaced (its hard limit stays lowered).
        assert await ex.submit(tasks.add, (2, 2), {}, task_id=2) == 4
        stats = ex.statistics()
        assert (stats.workers, stats.workers_started, stats.crashed) == (1, 2, 0)
    finally:
        await ex.aclose()


async def test_malformed_limits_and_settings_are_refused(executor: ProcessExecutor) -> None:
    with pytest.raises(InvalidTaskError, match="unknown limit") as info:
        executor.submit(tasks.add, (1, 2), {}, task_id=1, limits={"gpu": 1})
    assert info.value.field == "limits"
    with pytest.raises(InvalidTaskError, match="cpu_seconds must be a positive number"):
        executor.submit(tasks.add, (1, 2), {}, task_id=1, limits={"cpu_seconds": -1})
    with pytest.raises(InvalidTaskError, match="memory_bytes must be a positive integer"):
        executor.submit(tasks.add, (1, 2), {}, task_id=1, limits={"memory_bytes": 1.5})
    with pytest.raises(InvalidConfigError, match="'fork' is unsafe"):
        ProcessExecutor(1, mp_context="fork")
    with pytest.raises(InvalidConfigError, match="workers"):
        ProcessExecutor(0)
    with pytest.raises(InvalidConfigError, match="cpu_time_limit"):
        ProcessExecutor(1, cpu_time_limit=0)
    with pytest.raises(InvalidConfigError, match="max_tasks_per_worker"):
        ProcessExecutor(1, max_tasks_per_worker=0)


async def test_max_tasks_per_worker_replaces_workers() -> None:
    ex = ProcessExecutor(1, max_tasks_per_worker=2)
    try:
        pids = [await ex.submit(tasks.pid, (), {}, task_id=i) for i in range(4)]
        assert pids[0] == pids[1] != pids[2] == pids[3]
        assert ex.statistics().workers_started == 3
    finally:
        await ex.aclose()


# -- cancel, suspend, close ------------------------------------------------------------------


async def test_cancel_kills_the_worker_and_replaces_it(
    executor: ProcessExecutor, gate: Gate
) -> None:
    running = _gated(executor, gate, "a", 1)
    other = _gated(executor, gate, "b", 2)
    victim = await gate.arrived("a")
    await gate.arrived("b")
    queued = executor.submit(tasks.add, (1, 1), {}, task_id=3)  # beyond capacity: waits

    assert executor.cancel(3) is True  # a waiting task is simply dropped
    assert queued.cancelled()
    assert executor.cancel(1) is True
    assert running.cancelled()
    await gate.gone("a")  # its process is dead: the connection closed without a reply
    assert executor.cancel(1) is False
    assert executor.cancel(12345) is False
    stats = executor.statistics()
    assert (stats.workers, stats.cancelled, stats.crashed) == (2, 2, 0)

    # The replacement runs work while "b" still holds the other worker.
    assert await executor.submit(tasks.pid, (), {}, task_id=4) not in (victim, os.getpid())
    gate.command("b", b"r")
    assert await other == "b"


async def test_cancelling_the_future_stops_the_task(executor: ProcessExecutor, gate: Gate) -> None:
    fut = _gated(executor, gate, "a", 1)
    await gate.arrived("a")
    fut.cancel()
    await gate.gone("a")
    assert executor.statistics().cancelled == 1
    assert executor.cancel(1) is False
    assert await executor.submit(tasks.add, (3, 4), {}, task_id=1) == 7


def _process_state(pid: int) -> str:
    # /proc/<pid>/stat: "pid (name) state ..." - the name may hold spaces, so split after ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def _wait_for_state(pid: int, state: str) -> None:
    # A signal is delivered asynchronously and a process that is not our child gives no
    # event when it stops, so this checks /proc until it shows the state (bounded).
    async with asyncio.timeout(30):
        while _process_state(pid) != state:  # noqa: ASYNC110 - no event exists for this
            await asyncio.sleep(0.002)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
async def test_suspend_pauses_the_worker_and_keeps_capacity(gate: Gate) -> None:
    ex = ProcessExecutor(1)
    try:
        paused = _gated(ex, gate, "a", 1)
        pid = await gate.arrived("a")
        assert ex.suspend(1) is True
        assert ex.suspend(1) is False
        await _wait_for_state(pid, "T")
        gate.command("a", b"r")  # it cannot act on this while stopped
        stats = ex.statistics()
        assert (stats.workers, stats.suspended, stats.running) == (1, 1, 1)
        # A spare worker took its place.
        assert await ex.submit(tasks.pid, (), {}, task_id=2) != pid
        assert not paused.done()

        assert ex.resume(1) is True
        assert ex.resume(1) is False
        assert await paused == "a"
        await gate.gone("a")
        stats = ex.statistics()
        assert (stats.workers, stats.suspended, stats.workers_started) == (1, 0, 2)
    finally:
        await ex.aclose()


def _open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the descriptor listdir itself used
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
async def test_aclose_leaves_no_process_and_no_descriptor(gate: Gate) -> None:
    warm = ProcessExecutor(1)  # the forkserver and its helpers start once per interpreter
    assert await warm.submit(tasks.add, (1, 1), {}, task_id=1) == 2
    await warm.aclose()
    fds_before = _open_fds()

    ex = ProcessExecutor(3)
    await ex.start()
    running = _gated(ex, gate, "a", 1)
    await gate.arrived("a")
    assert await ex.submit(tasks.add, (1, 2), {}, task_id=2) == 3
    pids = ex.worker_pids()
    assert len(pids) == 3

    await ex.aclose()
    assert running.cancelled()
    assert ex.worker_pids() == frozenset()
    assert not any(_alive(pid) for pid in pids)
    assert not any(p.pid in pids for p in multiprocessing.active_children())
    try:
        import psutil
    except ImportError:
        pass
    else:
        assert not [c for c in psutil.Process().children(recursive=True) if c.pid in pids]
    await gate.close_connections()  # the test's own end of the task's connection
    assert _open_fds() == fds_before
    stats = ex.statistics()
    assert (stats.workers, stats.idle, stats.running) == (0, 0, 0)
    with pytest.raises(SchedulerClosedError):
        ex.submit(tasks.add, (1, 2), {}, task_id=3)
    await ex.aclose()  # closing twice is harmless


def test_works_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[int]:
        ex = ProcessExecutor(2)
        try:
            return list(
                await asyncio.gather(
                    *(ex.submit(tasks.add, (i, 1), {}, task_id=i) for i in range(8))
                )
            )
        finally:
            await ex.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == [i + 1 for i in range(8)]


# -- prefetch --------------------------------------------------------------------------------


async def test_prefetch_queues_a_task_behind_the_running_one(gate: Gate) -> None:
    ex = ProcessExecutor(1, prefetch=1)
    try:
        assert (ex.capacity, ex.workers) == (2, 1)
        first = _gated(ex, gate, "a", 1)
        await gate.arrived("a")
        rest = [ex.submit(tasks.add, (i, i), {}, task_id=10 + i) for i in range(4)]
        stats = ex.statistics()
        assert (stats.running, stats.queued, stats.waiting) == (1, 1, 3)
        assert ex.suspend(1) is False  # a task is queued behind it on its worker
        gate.command("a", b"r")
        assert await first == "a"
        assert await asyncio.gather(*rest) == [0, 2, 4, 6]
        assert ex.statistics().workers_started == 1
    finally:
        await ex.aclose()


async def test_a_cancelled_queued_task_is_skipped_without_killing(gate: Gate) -> None:
    ex = ProcessExecutor(1, prefetch=1)
    try:
        running = _gated(ex, gate, "a", 1)
        await gate.arrived("a")
        queued = _gated(ex, gate, "b", 2)  # queued on the same worker, behind "a"
        assert ex.statistics().queued == 1
        assert ex.cancel(2) is True
        assert queued.cancelled()
        gate.command("a", b"r")
        assert await running == "a"
        # Tasks run in order on the worker: had "b" started, it would block this one.
        assert await ex.submit(tasks.add, (1, 2), {}, task_id=3) == 3
        stats = ex.statistics()
        assert (stats.workers_started, stats.cancelled, stats.queued) == (1, 1, 0)
    finally:
        await ex.aclose()


async def test_a_crash_sends_the_queued_task_to_a_new_worker(gate: Gate) -> None:
    ex = ProcessExecutor(1, prefetch=1)
    try:
        doomed = _gated(ex, gate, "a", 1)
        first_pid = await gate.arrived("a")
        queued = _gated(ex, gate, "b", 2)
        gate.command("a", b"x")
        with pytest.raises(WorkerCrashedError):
            await doomed
        assert await gate.arrived("b") != first_pid  # it ran, once, on the replacement
        gate.command("b", b"r")
        assert await queued == "b"
        stats = ex.statistics()
        assert (stats.crashed, stats.completed, stats.workers_started) == (1, 1, 2)
    finally:
        await ex.aclose()


async def test_cancelling_a_task_its_worker_committed_to_kills_it(gate: Gate) -> None:
    ex = ProcessExecutor(1, prefetch=1)
    try:
        first = _gated(ex, gate, "a", 1)
        await gate.arrived("a")
        second = _gated(ex, gate, "b", 2)
        gate.command("a", b"r")
        await gate.arrived("b")  # the worker has moved on to "b" (whatever the loop knows)
        assert ex.cancel(2) is True
        assert second.cancelled()
        await gate.gone("b")  # stopped: its worker was killed
        assert await first == "a"
        assert await ex.submit(tasks.add, (2, 2), {}, task_id=3) == 4
        assert ex.statistics().workers_started == 2
    finally:
        await ex.aclose()
