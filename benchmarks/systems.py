"""The systems under test: our scheduler and its peers, behind one small interface.

Each system says how to start one unit of a scenario's work with a completion callback
(``start``), and how to run a burst of ``n`` units and wait for all their results (``burst``).
The open-loop generator and the statistics are shared (``harness.py``), so every system is
measured the same way. Systems driven from an event loop (ours, raw asyncio) use the loop
generator; the others (ThreadPoolExecutor, Ray, Dask) use the thread generator.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from harness import Marks, OpenLoopRun, drive_on_loop, drive_on_thread
from logosq_os_scheduler import QuantumScheduler, TaskHandle, TaskStatus, new_event_loop
from scenarios import Scenario

__all__ = ["SYSTEMS", "System"]

perf = time.perf_counter


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class System(abc.ABC):
    """One engine under test, set up for one scenario.

    Attributes:
        name: Command-line name (``--peers``); ``logosq`` is ours.
        label: How the report names it.
        dists: Distributions whose versions the machine block lists.
        notes: How it is configured and driven, for the report.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    dists: ClassVar[tuple[str, ...]] = ()
    notes: ClassVar[str] = ""
    # Burst sizes (full, quick) and the largest open-loop run; the slow peers get fewer tasks.
    burst_tasks: ClassVar[tuple[int, int]] = (100_000, 20_000)
    max_open_loop_tasks: ClassVar[int] = 200_000

    def __init__(self, scenario: Scenario, workers: int, use_uvloop: bool) -> None:
        self.scenario = scenario
        self.workers = workers
        self.use_uvloop = use_uvloop

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this system cannot run here (a missing library), or None."""
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        """Installed versions of the libraries it needs."""
        out: dict[str, str] = {}
        for dist in cls.dists:
            v = _version(dist)
            if v is not None:
                out[dist] = v
        return out

    @abc.abstractmethod
    def setup(self) -> None:
        """Start the engine (the time it takes is reported separately)."""

    @abc.abstractmethod
    def burst(self, n: int) -> tuple[float, int]:
        """Submit ``n`` units as fast as possible and wait until every result is available.

        Returns:
            Seconds from before the first submission to the moment all results were available,
            and the number of results that were wrong or missing (checked after the clock stops).
        """

    @abc.abstractmethod
    def open_loop(self, rate: float, n: int) -> OpenLoopRun:
        """Release ``n`` units at ``rate``/s and measure each one's latency."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Stop the engine and free what it holds."""


# -- ours -------------------------------------------------------------------------------------


class _LoopSystem(System):
    """A system driven from an event loop (uvloop when installed), kept across runs."""

    def __init__(self, scenario: Scenario, workers: int, use_uvloop: bool) -> None:
        super().__init__(scenario, workers, use_uvloop)
        self._runner = asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop=use_uvloop))

    def setup(self) -> None:
        self._runner.run(self._setup())

    def burst(self, n: int) -> tuple[float, int]:
        return self._runner.run(self._burst(n))

    def open_loop(self, rate: float, n: int) -> OpenLoopRun:
        return self._runner.run(drive_on_loop(self._start, rate, n))

    def teardown(self) -> None:
        try:
            self._runner.run(self._teardown())
        finally:
            self._runner.close()

    async def _setup(self) -> None:
        pass

    async def _teardown(self) -> None:
        pass

    @abc.abstractmethod
    async def _burst(self, n: int) -> tuple[float, int]: ...

    @abc.abstractmethod
    def _start(self, i: int, marks: Marks) -> None: ...


class Logosq(_LoopSystem):
    """Our scheduler: ``submit_nowait`` on the loop thread, results through the handles."""

    name = "logosq"
    label = "logosq (ours)"
    dists = ("logosq-os-scheduler",)
    notes = (
        "`QuantumScheduler(workers)` on the loop; `submit_nowait(builder)` per task on the "
        "loop thread; burst waits with `await scheduler.join()`, open-loop marks completion in "
        "`handle.add_done_callback`. The builder is made per task, inside the timed section."
    )

    _scheduler: QuantumScheduler

    async def _setup(self) -> None:
        s = QuantumScheduler(self.workers)
        if self.scenario.configure is not None:
            self.scenario.configure(s)
        await s.__aenter__()
        self._scheduler = s
        self._submit = s.submit_nowait
        self._make = self.scenario.make_task

    async def _teardown(self) -> None:
        await self._scheduler.aclose()

    async def _burst(self, n: int) -> tuple[float, int]:
        s = self._scheduler
        submit = self._submit
        make = self._make
        t0 = perf()
        handles = [submit(make(i)) for i in range(n)]
        await s.join()
        elapsed = perf() - t0
        bad = 0
        check = self.scenario.check
        for i, h in enumerate(handles):
            if h.status is not TaskStatus.COMPLETED or not check(i, (await h).value):
                bad += 1
        return elapsed, bad

    def _start(self, i: int, marks: Marks) -> None:
        self._submit(self._make(i)).add_done_callback(partial(_mark_handle, marks, i))


def _mark_handle(marks: Marks, i: int, _handle: TaskHandle[Any]) -> None:
    marks.mark(i)


# -- raw asyncio: the floor -------------------------------------------------------------------


def _resolve(fut: asyncio.Future[Any], fn: Callable[[int], Any], arg: int) -> None:
    try:
        fut.set_result(fn(arg))
    except Exception as exc:
        fut.set_exception(exc)


class RawAsyncio(_LoopSystem):
    """The floor: one future per call, resolved by a ``call_soon`` callback running the function.

    This is the least machinery that still hands the caller something to wait on: no queue, no
    priorities, no states, no limits. (A task per call, ``loop.create_task``, costs about twice
    as much and adds nothing the floor needs.)
    """

    name = "asyncio"
    label = "raw asyncio (floor)"
    notes = (
        "per call: `fut = loop.create_future(); loop.call_soon(resolve, fut, work, i)`, where "
        "`resolve` sets the future's result; burst awaits the futures in order, open-loop marks "
        "completion in `fut.add_done_callback` (which asyncio runs one loop pass after the "
        "result is set). Same loop as ours."
    )

    async def _setup(self) -> None:
        fn = self.scenario.peer_fn
        assert fn is not None
        self._fn = fn
        self._loop = asyncio.get_running_loop()

    async def _burst(self, n: int) -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        create, call_soon, fn = loop.create_future, loop.call_soon, self._fn
        t0 = perf()
        futs: list[asyncio.Future[Any]] = []
        append = futs.append
        for i in range(n):
            fut = create()
            call_soon(_resolve, fut, fn, i)
            append(fut)
        for fut in futs:
            await fut
        elapsed = perf() - t0
        check = self.scenario.check
        bad = sum(1 for i, f in enumerate(futs) if f.exception() or not check(i, f.result()))
        return elapsed, bad

    def _start(self, i: int, marks: Marks) -> None:
        loop = self._loop
        fut = loop.create_future()
        loop.call_soon(_resolve, fut, self._fn, i)
        fut.add_done_callback(partial(marks.mark, i))


# -- ThreadPoolExecutor -----------------------------------------------------------------------


class ThreadPool(System):
    """``concurrent.futures.ThreadPoolExecutor(workers)``: what most code reaches for first."""

    name = "tpe"
    label = "ThreadPoolExecutor"
    notes = (
        "`ThreadPoolExecutor(workers)`; burst: `pool.submit(work, i)` N times then "
        "`concurrent.futures.wait`; open-loop: a generator thread submits at the intended times "
        "and completion is marked in `future.add_done_callback` (on the worker thread, right "
        "after the result is set)."
    )

    def setup(self) -> None:
        fn = self.scenario.peer_fn
        assert fn is not None
        self._fn = fn
        self._pool = concurrent.futures.ThreadPoolExecutor(self.workers)

    def burst(self, n: int) -> tuple[float, int]:
        submit, fn = self._pool.submit, self._fn
        t0 = perf()
        futs = [submit(fn, i) for i in range(n)]
        concurrent.futures.wait(futs)
        elapsed = perf() - t0
        check = self.scenario.check
        bad = sum(1 for i, f in enumerate(futs) if f.exception() or not check(i, f.result()))
        return elapsed, bad

    def open_loop(self, rate: float, n: int) -> OpenLoopRun:
        submit, fn = self._pool.submit, self._fn

        def start(i: int, marks: Marks) -> None:
            submit(fn, i).add_done_callback(partial(marks.mark, i))

        return drive_on_thread(start, rate, n)

    def teardown(self) -> None:
        self._pool.shutdown(wait=True)


# -- Ray --------------------------------------------------------------------------------------


class RayLocal(System):
    """Ray on this machine: ``ray.init(num_cpus=2)`` and a remote function."""

    name = "ray"
    label = "Ray (local)"
    dists = ("ray",)
    notes = (
        "`ray.init(num_cpus=2)` (no dashboard), `ray.remote(work)`; burst: `f.remote(i)` N times "
        "then `ray.get(refs)`; open-loop: a generator thread calls `f.remote(i)` and marks "
        "completion in `ref.future().add_done_callback`. Ray is slow per task, so its runs use "
        "fewer tasks; its start-up time and its first (warm-up) burst are reported apart."
    )
    burst_tasks = (2_000, 300)
    max_open_loop_tasks = 4_000

    @classmethod
    def unavailable(cls) -> str | None:
        return None if importlib.util.find_spec("ray") else "ray is not installed"

    def setup(self) -> None:
        import ray

        cloudpickle: Any = importlib.import_module("ray.cloudpickle")

        fn = self.scenario.peer_fn
        assert fn is not None
        # The benchmark modules are not importable inside Ray's workers: ship the function's
        # module by value.
        cloudpickle.register_pickle_by_value(sys.modules[fn.__module__])
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=False,
        )
        self._ray = ray
        self._remote = ray.remote(fn)

    def burst(self, n: int) -> tuple[float, int]:
        remote = self._remote.remote
        t0 = perf()
        refs = [remote(i) for i in range(n)]
        values = self._ray.get(refs)
        elapsed = perf() - t0
        check = self.scenario.check
        return elapsed, sum(1 for i, v in enumerate(values) if not check(i, v))

    def open_loop(self, rate: float, n: int) -> OpenLoopRun:
        remote = self._remote.remote

        def start(i: int, marks: Marks) -> None:
            remote(i).future().add_done_callback(partial(marks.mark, i))

        return drive_on_thread(start, rate, n)

    def teardown(self) -> None:
        self._ray.shutdown()


# -- Dask -------------------------------------------------------------------------------------


class DaskLocal(System):
    """Dask distributed: a ``LocalCluster`` in this process and a synchronous ``Client``."""

    name = "dask"
    label = "Dask (LocalCluster)"
    dists = ("dask", "distributed")
    notes = (
        "`LocalCluster(processes=False, n_workers=1, threads_per_worker=workers, "
        "dashboard_address=None)`, `Client(cluster)`: scheduler and worker in this process, "
        "the lightest configuration (worker processes would add pickling and a network hop "
        "per task). Burst: `client.submit(work, i, pure=False)` N times then "
        "`distributed.wait`; open-loop: a generator thread submits and marks completion in "
        "`future.add_done_callback` (Dask runs it on a thread of its own)."
    )
    burst_tasks = (1_000, 200)
    max_open_loop_tasks = 2_000

    @classmethod
    def unavailable(cls) -> str | None:
        return None if importlib.util.find_spec("distributed") else "distributed is not installed"

    def setup(self) -> None:
        distributed: Any = importlib.import_module("distributed")

        for noisy in ("distributed", "tornado", "bokeh"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        fn = self.scenario.peer_fn
        assert fn is not None
        self._fn = fn
        self._cluster: Any = distributed.LocalCluster(
            processes=False,
            n_workers=1,
            threads_per_worker=self.workers,
            dashboard_address=None,
        )
        self._client: Any = distributed.Client(self._cluster)
        self._wait: Any = distributed.wait

    def burst(self, n: int) -> tuple[float, int]:
        submit, fn, wait = self._client.submit, self._fn, self._wait
        t0 = perf()
        futs = [submit(fn, i, pure=False) for i in range(n)]
        wait(futs)
        elapsed = perf() - t0
        values = self._client.gather(futs)
        check = self.scenario.check
        return elapsed, sum(1 for i, v in enumerate(values) if not check(i, v))

    def open_loop(self, rate: float, n: int) -> OpenLoopRun:
        submit, fn = self._client.submit, self._fn

        def start(i: int, marks: Marks) -> None:
            submit(fn, i, pure=False).add_done_callback(partial(marks.mark, i))

        return drive_on_thread(start, rate, n)

    def teardown(self) -> None:
        self._client.close()
        self._cluster.close()


SYSTEMS: dict[str, type[System]] = {
    cls.name: cls for cls in (Logosq, RawAsyncio, ThreadPool, RayLocal, DaskLocal)
}
