"""Classical work in worker processes through the scheduler: results, crash containment,
timeouts that stop the worker, per-task limits, and isolation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import _executor_tasks as tasks
from logosq_os_scheduler import (
    InvalidTaskError,
    ManualClock,
    QuantumScheduler,
    ResourceLimitError,
    Task,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
    WorkerCrashedError,
)


async def test_process_work_through_the_scheduler_is_contained_and_limited() -> None:
    clock = ManualClock()  # the time-out below fires when the test moves the clock
    async with QuantumScheduler(2, clock=clock) as s:
        ok = [
            await s.submit(
                Task.classical(f"p{i}").with_function(tasks.add, i, i).with_executor("process")
            )
            for i in range(6)
        ]
        crash = await s.submit(
            Task.classical("crash").with_function(os._exit, 3).with_executor("process")
        )
        with pytest.raises(TaskFailedError) as info:
            await crash
        assert isinstance(info.value.__cause__, WorkerCrashedError)
        assert [(await h).value for h in ok] == [2 * i for i in range(6)]

        spin = await s.submit(
            Task.classical("spin")
            .with_function(tasks.spin_forever)
            .with_executor("process")
            .with_timeout(5)
        )
        clock.advance(5)
        with pytest.raises(TaskTimeoutError):
            await spin
        assert spin.status is TaskStatus.TIMED_OUT

        hog = await s.submit(
            Task.classical("hog")
            .with_function(tasks.allocate, 1 << 30)
            .with_executor("process")
            .with_limits(memory_bytes=256 << 20)
        )
        with pytest.raises(TaskFailedError) as info:
            await hog
        assert isinstance(info.value.__cause__, ResourceLimitError)

        # The pool is whole again, and each task ran in a process other than ours.
        pids = [
            (
                await (
                    await s.submit(
                        Task.classical("pid").with_function(tasks.pid).with_executor("process")
                    )
                )
            ).value
            for _ in range(4)
        ]
        assert os.getpid() not in pids

        with pytest.raises(InvalidTaskError, match="args"):
            await s.submit(
                Task.classical("bad").with_function(tasks.echo, lambda: 1).with_executor("process")
            )
        m = s.metrics()
    assert (m.completed, m.failed, m.timed_out) == (10, 2, 1)


async def test_a_process_executor_never_used_closes_cleanly() -> None:
    # The first process task is refused after the built-in executor was registered: no
    # worker ever started, and the scheduler still closes without an error.
    async def coroutine() -> int:
        return 1

    async with QuantumScheduler(1) as s:
        with pytest.raises(InvalidTaskError, match="async functions run on the event loop"):
            await s.submit(Task.classical("co").with_function(coroutine).with_executor("process"))
    from logosq_os_scheduler.executors import ProcessExecutor

    await ProcessExecutor(2).aclose()


_KILLED_SCHEDULER = """
import asyncio, sys
import _executor_tasks as tasks
from logosq_os_scheduler import QuantumScheduler, Task

async def main():
    async with QuantumScheduler(1) as s:
        task = Task.classical("w").with_function(tasks.report_pid_then_wait, sys.argv[1])
        await s.submit(task.with_executor("process"))
        await asyncio.Event().wait()

asyncio.run(main())
"""


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pidfd is Linux's")
def test_a_worker_dies_with_its_scheduler_killed(tmp_path: Path) -> None:
    """A SIGKILL of the scheduler takes its running workers with it: a restarted scheduler
    that runs the task again from its journal never overlaps the old run."""
    pid_file = tmp_path / "worker.pid"
    tests_dir = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tests_dir, *sys.path]))
    child = subprocess.Popen([sys.executable, "-c", _KILLED_SCHEDULER, str(pid_file)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists():  # the task is running in its worker
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        worker = int(pid_file.read_text())
        assert not _gone(worker)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 30
    while not _gone(worker):
        assert time.monotonic() < deadline, f"worker {worker} outlived its scheduler"
        time.sleep(0.01)
