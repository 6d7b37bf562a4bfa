"""Scale: memory per queued task, and submit and dispatch cost as the queue grows.

Tasks are made to queue by blocking every worker slot: a scheduler with one slot runs an async
task that waits on an event, so everything submitted after it waits in the ready queue until
the event is set. Then:

* memory: ``tracemalloc`` counts the bytes Python allocated while the tasks were submitted
  (after a full collection), divided by the number of tasks; once with the caller keeping the
  handles, once after dropping them (what the scheduler itself holds per queued task). The
  same is measured for ``ThreadPoolExecutor`` (its work item and future) for comparison.
* cost: the time to submit ``depth`` tasks into the blocked scheduler, and, once the event is
  set, the time until all of them have run (dispatch, inline run of the trivial function,
  completion), each divided by ``depth``. An O(n) step anywhere on those paths would make the
  per-task figure grow with the depth; flat figures mean there is none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import threading
import time
import tracemalloc
from typing import Any

from harness import Figure, wait_for_quiet
from logosq_os_scheduler import QuantumScheduler, Task, new_event_loop
from scenarios import work

__all__ = ["measure_scale"]

perf = time.perf_counter


def _rss() -> int:
    """Resident set size in bytes (Linux), or 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


async def _block(s: QuantumScheduler) -> asyncio.Event:
    """Occupy the scheduler's only slot until the returned event is set."""
    gate = asyncio.Event()
    s.submit_nowait(Task.classical("gate").with_function(gate.wait))
    await asyncio.sleep(0)
    return gate


async def _teach_fast_path(s: QuantumScheduler) -> None:
    """Run ``work`` a few times so the scheduler has measured it as tiny (runs it inline)."""
    for i in range(8):
        s.submit_nowait(Task.classical("w").with_function(work, i))
        await s.join()


async def _rss_memory(count: int) -> float:
    """RSS growth per queued task, in a process whose heap has not grown before (run first)."""
    async with QuantumScheduler(1) as s:
        await _teach_fast_path(s)
        gate = await _block(s)
        submit = s.submit_nowait
        classical = Task.classical
        gc.collect()
        before = _rss()
        for i in range(count):
            submit(classical("t").with_function(work, i))
        gc.collect()
        grown = _rss() - before
        gate.set()
        await s.join()
    return grown / count


async def _traced_memory(count: int) -> dict[str, float]:
    async with QuantumScheduler(1) as s:
        await _teach_fast_path(s)
        gate = await _block(s)
        submit = s.submit_nowait
        classical = Task.classical
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            handles = [submit(classical("t").with_function(work, i)) for i in range(count)]
            gc.collect()
            with_handles = tracemalloc.get_traced_memory()[0] - base
            del handles
            gc.collect()
            scheduler_only = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        gate.set()
        await s.join()
    return {
        "traced_count": count,
        "bytes_per_task": scheduler_only / count,
        "bytes_per_task_with_handle": with_handles / count,
    }


def _tpe_memory(count: int) -> dict[str, float]:
    gate = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(gate.wait)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            futs = [pool.submit(work, i) for i in range(count)]
            gc.collect()
            with_futures = tracemalloc.get_traced_memory()[0] - base
            del futs
            gc.collect()
            queued_only = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
    finally:
        gate.set()
        pool.shutdown(wait=True)
    return {
        "traced_count": count,
        "bytes_per_task": queued_only / count,
        "bytes_per_task_with_handle": with_futures / count,
    }


async def _fill_and_drain(s: QuantumScheduler, depth: int) -> tuple[float, float]:
    """One run: (submit seconds per task, dispatch + run + finish seconds per task)."""
    gate = await _block(s)
    submit = s.submit_nowait
    classical = Task.classical
    gc.collect()
    t0 = perf()
    for i in range(depth):
        submit(classical("t").with_function(work, i))
    t1 = perf()
    gate.set()
    await s.join()
    t2 = perf()
    return (t1 - t0) / depth, (t2 - t1) / depth


async def _sweep(depths: list[int], repeats: int, quiet: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with QuantumScheduler(1) as s:
        await _teach_fast_path(s)
        await _fill_and_drain(s, depths[0])  # warm-up of the code paths
        for depth in depths:
            runs = []
            for _ in range(repeats):
                wait_for_quiet(quiet)
                runs.append(await _fill_and_drain(s, depth))
            out.append(
                {
                    "depth": depth,
                    "submit": Figure.of([r[0] for r in runs]).as_dict(),
                    "dispatch": Figure.of([r[1] for r in runs]).as_dict(),
                }
            )
    return out


def measure_scale(
    *,
    memory_count: int,
    traced_count: int,
    tpe_traced_count: int,
    depths: list[int],
    repeats: int,
    use_uvloop: bool,
    quiet: float,
) -> dict[str, Any]:
    """Run the scale measurements of our scheduler (and TPE's memory for comparison).

    The RSS measurement runs first, while the process heap has never grown: later runs reuse
    freed memory and would not show in RSS. tracemalloc slows every allocation about tenfold,
    so its counts may be smaller than ``memory_count``; bytes per task do not depend on it.
    """

    def run(coro: Any) -> Any:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop=use_uvloop)) as r:
            return r.run(coro)

    rss = run(_rss_memory(memory_count))
    memory = {"count": memory_count, "rss_bytes_per_task": rss, **run(_traced_memory(traced_count))}
    tpe_memory = _tpe_memory(tpe_traced_count)
    sweep = run(_sweep(depths, repeats, quiet))
    return {"memory": memory, "tpe_memory": tpe_memory, "sweep": sweep}
