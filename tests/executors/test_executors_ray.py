"""RayExecutor end to end on a local Ray with two CPUs, started once for the module.

Ray takes seconds to start, so one executor (and one Ray) serves every test here, on one
module-wide event loop; the last test checks that closing it shuts down the Ray it started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

import _executor_tasks as tasks
from logosq_os_scheduler import InvalidTaskError, SchedulerClosedError
from logosq_os_scheduler.executors import Executor, RayExecutor, WorkerCrashedError

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="module")]

# Ray workers cannot import the tests directory: send this module's functions by value.
ray.cloudpickle.register_pickle_by_value(tasks)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def executor() -> AsyncIterator[RayExecutor]:
    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    ex = RayExecutor(
        num_cpus=2,
        init_kwargs={"include_dashboard": False, "log_to_driver": False},
    )
    await ex.start()
    try:
        yield ex
    finally:
        await ex.aclose()


async def test_capacity_and_results(executor: RayExecutor) -> None:
    assert isinstance(executor, Executor)
    assert executor.owns_ray
    assert executor.capacity == 2
    futures = [executor.submit(tasks.add, (i,), {"b": 100}, task_id=i) for i in range(6)]
    assert await asyncio.gather(*futures) == [i + 100 for i in range(6)]
    pid = await executor.submit(tasks.pid, (), {}, task_id=10)
    assert pid != os.getpid()


async def test_errors_unwrap_to_the_original_exception(executor: RayExecutor) -> None:
    with pytest.raises(ValueError, match="bad value") as info:
        await executor.submit(tasks.raise_chained, (), {}, task_id=1)
    err = info.value
    assert type(err) is ValueError  # not Ray's RayTaskError(ValueError) wrapper
    assert not isinstance(err, ray.exceptions.RayError)
    assert any("raise_chained" in note for note in err.__notes__)


async def test_unserializable_arguments_fail_at_submit(executor: RayExecutor) -> None:
    import threading

    with pytest.raises(InvalidTaskError, match="cannot be serialized") as info:
        executor.submit(tasks.add, (threading.Lock(), 1), {}, task_id=1)
    assert info.value.field == "args"
    with pytest.raises(InvalidTaskError, match="cpu_seconds") as info:
        executor.submit(tasks.add, (1, 1), {}, task_id=1, limits={"cpu_seconds": 1})
    assert info.value.field == "limits"
    limits = {"memory_bytes": 64 << 20}  # a reservation in Ray's scheduling
    assert await executor.submit(tasks.add, (1, 1), {}, task_id=1, limits=limits) == 2


async def test_a_crashing_task_fails_alone(executor: RayExecutor) -> None:
    crash = executor.submit(os._exit, (3,), {}, task_id=1)
    fine = executor.submit(tasks.add, (2, 2), {}, task_id=2)
    with pytest.raises(WorkerCrashedError, match="Ray worker died") as info:
        await crash
    assert isinstance(info.value.__cause__, ray.exceptions.RayError)
    assert await fine == 4


async def _serve_gate(path: str) -> tuple[asyncio.AbstractServer, asyncio.Future[Any]]:
    arrived: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        arrived.set_result((reader, writer))

    return await asyncio.start_unix_server(on_connect, path), arrived


async def test_cancel_kills_the_running_task(executor: RayExecutor) -> None:
    directory = tempfile.mkdtemp(prefix="lq-")
    path = os.path.join(directory, "gate.sock")
    server, arrived = await _serve_gate(path)
    try:
        fut = executor.submit(tasks.gated, (path, "a"), {}, task_id=1)
        async with asyncio.timeout(60):
            reader, writer = await arrived  # the task is running in a Ray worker
        assert executor.cancel(1) is True
        assert fut.cancelled()
        async with asyncio.timeout(60):
            assert await reader.read() == b""  # its worker was killed: the socket closed
        writer.close()
        assert executor.cancel(1) is False
        assert await executor.submit(tasks.add, (5, 5), {}, task_id=2) == 10
    finally:
        server.close()
        await server.wait_closed()
        shutil.rmtree(directory, ignore_errors=True)


async def test_close_shuts_down_the_ray_it_started(executor: RayExecutor) -> None:
    await executor.aclose()
    assert not ray.is_initialized()
    assert not executor.owns_ray
    with pytest.raises(SchedulerClosedError):
        executor.submit(tasks.add, (1, 1), {}, task_id=1)
