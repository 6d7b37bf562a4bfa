"""Scaling of CPU-bound pure-Python tasks across worker processes, side by side with peers.

Each task is a busy loop of integer arithmetic, calibrated at start to take 1 ms (or 5 ms)
single-threaded on this machine. For each worker count the benchmark runs N tasks through:

* ``ProcessExecutor``, driven directly through the Executor contract from an asyncio loop,
  keeping ``capacity`` tasks in flight (as the scheduler's slot pool does): ``workers``
  without prefetch, twice that with ``prefetch=1``;
* ``concurrent.futures.ProcessPoolExecutor`` (same start method), given all N tasks at once,
  which is its most favourable use;
* Ray (``--peers`` with Ray installed), one CPU per task, ``workers`` tasks in flight.

It prints a markdown table: throughput, speed-up against the same runner at 1 worker, and
efficiency against the ideal ``workers / task time``. Run it as::

    python benchmarks/bench_scaling.py --workers 1,2,4,8,16 --peers

By default it runs worker counts 1, 2, 4, ... up to the CPUs this process may use.
A runner is an ``async`` function in :data:`RUNNERS` (``name -> run(workers, n, tasks)``); a
through-the-scheduler runner can be added there.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from logosq_os_scheduler import run
from logosq_os_scheduler.executors import ProcessExecutor


def spin(n: int) -> int:
    """The task: ``n`` rounds of integer arithmetic (pure Python, holds the GIL)."""
    x = 0
    for i in range(n):
        x = (x + i * i) % 1_000_003
    return x


def calibrate() -> float:
    """Rounds of :func:`spin` per second on one core (best of several tries, so that a busy
    moment on a shared machine does not make the tasks look slower than they are)."""
    probe = 100_000
    spin(probe)  # warm up
    best = min(_timed(spin, probe) for _ in range(15))
    return probe / best


def _timed(fn: Callable[[int], int], n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return time.perf_counter() - t0


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


# -- runners: each returns the seconds that n tasks took ------------------------------------


async def run_process_executor(workers: int, n: int, rounds: int, prefetch: int = 0) -> float:
    executor = ProcessExecutor(workers, prefetch=prefetch, mp_context=start_method())
    try:
        await executor.start()
        await _drive(executor, executor.capacity, 4 * workers, rounds)  # every worker warm
        t0 = time.perf_counter()
        await _drive(executor, executor.capacity, n, rounds)
        return time.perf_counter() - t0
    finally:
        await executor.aclose()


async def run_process_executor_prefetch(workers: int, n: int, rounds: int) -> float:
    return await run_process_executor(workers, n, rounds, prefetch=1)


async def _drive(executor: ProcessExecutor, in_flight: int, n: int, rounds: int) -> None:
    """Keep ``in_flight`` tasks running until ``n`` are done: each completion submits the
    next from its done callback, as the scheduler's slot pool does."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    submitted = 0
    done = 0
    args = (rounds,)
    kwargs: dict[str, Any] = {}

    def submit_one() -> None:
        nonlocal submitted
        submitted += 1
        executor.submit(spin, args, kwargs, task_id=submitted).add_done_callback(on_done)

    def on_done(fut: asyncio.Future[Any]) -> None:
        nonlocal done
        fut.result()
        done += 1
        if submitted < n:
            submit_one()
        elif done == n and not finished.done():
            finished.set_result(None)

    for _ in range(min(in_flight, n)):
        submit_one()
    await finished


async def run_process_pool(workers: int, n: int, rounds: int) -> float:
    def run() -> float:
        context = multiprocessing.get_context(start_method())
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(spin, [rounds] * (4 * workers)))  # every worker started and warm
            t0 = time.perf_counter()
            futures = [pool.submit(spin, rounds) for _ in range(n)]
            concurrent.futures.wait(futures)
            elapsed = time.perf_counter() - t0
            for f in futures:
                f.result()
            return elapsed

    return await asyncio.to_thread(run)


_ray_spin: Any = None


async def run_ray(workers: int, n: int, rounds: int) -> float:
    import ray

    global _ray_spin
    if _ray_spin is None:
        _ray_spin = ray.remote(num_cpus=1, max_retries=0)(spin)

    def run() -> float:
        def go(count: int) -> None:
            pending = [_ray_spin.remote(rounds) for _ in range(min(workers, count))]
            submitted = len(pending)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                ray.get(ready)
                if submitted < count:
                    pending.append(_ray_spin.remote(rounds))
                    submitted += 1

        go(4 * workers)
        t0 = time.perf_counter()
        go(n)
        return time.perf_counter() - t0

    return await asyncio.to_thread(run)


Runner = Callable[[int, int, int], Awaitable[float]]
RUNNERS: dict[str, Runner] = {
    "ProcessExecutor": run_process_executor,
    "ProcessExecutor(prefetch=1)": run_process_executor_prefetch,
    "ProcessPoolExecutor": run_process_pool,
    "Ray": run_ray,
}


# -- reporting -------------------------------------------------------------------------------


def cpu_times() -> tuple[float, float] | None:
    """(busy, steal) jiffies over all CPUs from /proc/stat, where there is one."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def machine_info() -> list[str]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- CPU: {model}; {os.cpu_count()} logical CPUs, {usable_cpus()} usable by this process",
        f"- OS: {platform.platform()}",
        f"- Python: {sys.version.split()[0]} ({platform.python_implementation()}); "
        f"start method: {start_method()}; event loop: "
        f"{type(asyncio.get_running_loop()).__module__.split('.')[0]}",
        f"- Load average at start (1/5/15 min): {load or 'n/a'}",
        f"- Command: `python {' '.join(sys.argv)}`",
    ]


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers",
        help="comma-separated worker counts (default: 1, 2, 4, ... up to the usable CPUs)",
    )
    parser.add_argument("--sizes", default="1,5", help="task sizes in milliseconds (1,5)")
    parser.add_argument(
        "--tasks-per-worker", type=int, default=300, help="tasks per worker in each run (300)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per point; best is kept")
    parser.add_argument("--peers", action="store_true", help="also run ProcessPoolExecutor and Ray")
    parser.add_argument(
        "--only", help="comma-separated runner names to run (default: ours, plus peers)"
    )
    parser.add_argument(
        "--asyncio", action="store_true", help="use asyncio's own loop even if uvloop is installed"
    )
    args = parser.parse_args(argv)

    cpus = usable_cpus()
    if args.workers:
        counts = [int(x) for x in args.workers.split(",")]
    else:
        counts = [w for w in (1, 2, 4, 8, 16, 32, 64) if w <= cpus]
    if 1 not in counts:
        counts.insert(0, 1)  # the speed-up baseline
    sizes = [float(x) for x in args.sizes.split(",")]
    if args.only:
        names = args.only.split(",")
    elif args.peers:
        names = list(RUNNERS)
    else:
        names = ["ProcessExecutor", "ProcessExecutor(prefetch=1)"]
    if "Ray" in names:
        try:
            import ray
        except ImportError:
            print("Ray is not installed: its column is left out", file=sys.stderr)
            names.remove("Ray")
        else:
            ray.init(
                num_cpus=max(counts),
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )

    print("## Scaling of CPU-bound pure-Python tasks\n")
    print("\n".join(machine_info()))
    oversubscribed = [w for w in counts if w > cpus]
    if oversubscribed:
        print(
            f"- Worker counts above the {cpus} usable CPUs ({oversubscribed}) oversubscribe "
            "the machine: their speed-up says nothing about scaling; run on a larger machine"
        )
    rate = calibrate()
    rounds_for = {ms: max(1, round(rate * ms / 1000)) for ms in sizes}
    print(
        "- Calibration: "
        + ", ".join(f"{ms:g} ms = {r} rounds" for ms, r in rounds_for.items())
        + f"; {args.tasks_per_worker} tasks per worker per run, best of {args.repeat}"
    )
    print()

    start = cpu_times()
    t_start = time.monotonic()
    header = ["task", "workers"]
    for name in names:
        header += [f"{name} tasks/s", "speed-up", "eff."]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if i > 1 else "---" for i in range(len(header))) + "|")
    for ms in sizes:
        rounds = rounds_for[ms]
        base: dict[str, float] = {}
        for w in counts:
            n = args.tasks_per_worker * w
            row = [f"{ms:g} ms", str(w)]
            # Runners take turns, repeat after repeat, so that a busy spell on a shared
            # machine does not fall on one of them only; the best run of each is kept.
            best = dict.fromkeys(names, float("inf"))
            for _ in range(args.repeat):
                for name in names:
                    best[name] = min(best[name], await RUNNERS[name](w, n, rounds))
            for name in names:
                rate = n / best[name]
                if w == 1:
                    base[name] = rate
                ideal = w / (ms / 1000)
                row += [f"{rate:,.0f}", f"{rate / base[name]:.2f}x", f"{rate / ideal:.0%}"]
            print("| " + " | ".join(row) + " |", flush=True)
    end = cpu_times()
    if start is not None and end is not None:
        total = (time.monotonic() - t_start) * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
        print(
            f"\nCPU during the run: {(end[0] - start[0]) / total:.0%} busy (all processes), "
            f"{(end[1] - start[1]) / total:.0%} stolen by the hypervisor."
        )
    print(
        "\nspeed-up: against the same runner at 1 worker. eff.: throughput over the ideal "
        "workers / task time (the task time is calibrated single-threaded in the parent)."
    )
    if "Ray" in names:
        import ray

        ray.shutdown()


if __name__ == "__main__":
    # The project's runtime: uvloop where installed (``--asyncio`` to compare without it).
    run(main(), use_uvloop=False if "--asyncio" in sys.argv else None)
