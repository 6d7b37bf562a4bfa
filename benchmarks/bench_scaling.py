"""Scaling of CPU-bound pure-Python tasks across worker processes, side by side with peers.

Run: ``python benchmarks/bench_scaling.py [--quick] [--repeats R] [--output FILE.md]``

Each task is a busy loop of integer arithmetic (:func:`spin`), calibrated at start to take
1 ms (or 5 ms) single-threaded on this machine. For each task size and worker count, N tasks
(``--tasks-per-worker`` times the workers) run through:

* ``ProcessExecutor``, driven directly through the Executor contract from the event loop,
  keeping ``capacity`` tasks in flight as the scheduler's slot pool does: ``workers`` without
  prefetch, twice that with ``prefetch=1``;
* ``concurrent.futures.ProcessPoolExecutor`` (same start method), given all N tasks at once,
  its most favourable use;
* Ray (when installed), one CPU per task, ``workers`` tasks in flight, from a driver in a
  process of its own (so that Ray's driver threads are not charged to the other runners).

Two sections come out as Markdown (printed, and written to ``--output``):

1. Scaling: throughput, and speed-up against the same runner at 1 worker in the same pass.
   Worker counts above the CPUs this process may use are not run (``--oversubscribe`` runs
   them, labelled): on an oversubscribed machine a speed-up says nothing about scaling.
2. Dispatch cost: what would cap scaling on a larger machine. The parent's CPU time per task
   (``getrusage``: every thread of the parent, so ProcessPoolExecutor's feeder and result
   threads count; for Ray the driver process, and the raylet and GCS server processes beside
   it) during the runs above and with no-op tasks. From it, as arithmetic and not as a
   measurement, the worker count at which the parent would be busy all the time:
   ``task time / parent CPU per task``.

Every figure is the median of ``--repeats`` passes with the min and max beside it; each pass
runs every point once, runners taking turns, so ratios (speed-ups, ours against a peer) are
taken within one pass. The machine may be shared: before each pass the benchmark waits (up to
``--quiet-wait`` seconds) until other processes use less than ``--quiet`` of the CPUs, and
reports what they used.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fig import Fig
from logosq_os_scheduler import (
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskHandle,
    TaskStatus,
    new_event_loop,
)
from logosq_os_scheduler._runtime import uvloop_available
from logosq_os_scheduler.executors import ProcessExecutor
from machine import machine_info

perf = time.perf_counter

TARGET_SPEEDUP = 15.0  # the target at 16 workers, for both task sizes
TARGET_WORKERS = 16
OURS = "ProcessExecutor"
OURS_PF = "ProcessExecutor(prefetch=1)"
SCHED = "QuantumScheduler"
PPE = "ProcessPoolExecutor"
RAY = "Ray"
RUNNER_NAMES = (OURS, OURS_PF, SCHED, PPE, RAY)


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
    best = math.inf
    for _ in range(15):
        t0 = perf()
        spin(probe)
        best = min(best, perf() - t0)
    return probe / best


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def cpu_now() -> float:
    """CPU seconds used so far by every thread of this process (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- one measured run: seconds for n tasks, and the CPU the dispatching side spent -----------


class Sample:
    """One run: wall seconds for ``n`` tasks and CPU seconds per dispatching process."""

    def __init__(self, n: int, seconds: float, cpu: dict[str, float]) -> None:
        self.n = n
        self.seconds = seconds
        self.cpu = cpu  # process label ("parent", "raylet", ...) -> CPU seconds in the run

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    def per_task(self, proc: str) -> float:
        return self.cpu.get(proc, math.nan) / self.n


async def run_ours(workers: int, n: int, rounds: int, prefetch: int) -> Sample:
    executor = ProcessExecutor(workers, prefetch=prefetch, mp_context=start_method())
    try:
        await executor.start()
        await _drive(executor, executor.capacity, 4 * workers, rounds)  # every worker warm
        c0, t0 = cpu_now(), perf()
        await _drive(executor, executor.capacity, n, rounds)
        seconds, cpu = perf() - t0, cpu_now() - c0
        return Sample(n, seconds, {"parent": cpu})
    finally:
        await executor.aclose()


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


async def run_scheduler(workers: int, n: int, rounds: int) -> Sample:
    """What a user gets: tasks submitted to a QuantumScheduler, all at once, run by a
    ``ProcessExecutor(workers)`` registered with it (its slot pool keeps ``workers`` in
    flight). The parent's CPU time then includes the scheduler's own bookkeeping."""
    config = SchedulerConfig(workers=1, aging_threshold=None)
    async with QuantumScheduler(config=config) as scheduler:
        executor = ProcessExecutor(workers, mp_context=start_method())
        await executor.start()
        scheduler.register_executor("workers", executor)  # closed with the scheduler
        await _through(scheduler, 4 * workers, rounds)  # every worker warm
        c0, t0 = cpu_now(), perf()
        await _through(scheduler, n, rounds)
        seconds, cpu = perf() - t0, cpu_now() - c0
    return Sample(n, seconds, {"parent": cpu})


async def _through(scheduler: QuantumScheduler, n: int, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    left = n
    failed: list[TaskHandle[Any]] = []

    def on_done(handle: TaskHandle[Any]) -> None:
        nonlocal left
        if handle.status is not TaskStatus.COMPLETED:
            failed.append(handle)
        left -= 1
        if left == 0 and not finished.done():
            finished.set_result(None)

    builder = Task.classical("spin").with_function(spin, rounds).with_executor("workers")
    for _ in range(n):
        scheduler.submit_nowait(builder).add_done_callback(on_done)
    await finished
    if failed:
        raise RuntimeError(f"{len(failed)} tasks did not complete: {failed[0]!r}")


def run_process_pool(workers: int, n: int, rounds: int) -> Sample:
    """Blocking, on purpose: nothing else runs meanwhile, and the pool's own threads are the
    only ones in this process whose CPU time is counted."""
    context = multiprocessing.get_context(start_method())
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(spin, [rounds] * (4 * workers)))  # every worker started and warm
        c0, t0 = cpu_now(), perf()
        futures = [pool.submit(spin, rounds) for _ in range(n)]
        concurrent.futures.wait(futures)
        seconds, cpu = perf() - t0, cpu_now() - c0
        for f in futures:
            f.result()
    return Sample(n, seconds, {"parent": cpu})


# -- Ray: a driver in its own process, driven over stdin/stdout ------------------------------


def _proc_cpu(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` (nanosecond schedstat, else clock ticks)."""
    total = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return math.nan
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _ray_system_pids() -> dict[str, int]:
    """The raylet and GCS server that this driver's ``ray.init`` started (its children)."""
    me = os.getpid()
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and comm in ("raylet", "gcs_server"):
            found[comm] = int(entry)
    return found


def ray_server(num_cpus: int) -> None:
    """The Ray driver process: one JSON command per line on stdin, one reply on stdout."""
    import ray

    ray.init(
        num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    remote_spin = ray.remote(num_cpus=1, max_retries=0)(spin)
    system = _ray_system_pids()
    print(json.dumps({"ready": True, "version": ray.__version__}), flush=True)

    def go(workers: int, count: int, rounds: int) -> None:
        pending = [remote_spin.remote(rounds) for _ in range(min(workers, count))]
        submitted = len(pending)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready)
            if submitted < count:
                pending.append(remote_spin.remote(rounds))
                submitted += 1

    for line in sys.stdin:
        workers, n, rounds = json.loads(line)
        go(workers, 4 * workers, rounds)
        before = {name: _proc_cpu(pid) for name, pid in system.items()}
        c0, t0 = cpu_now(), perf()
        go(workers, n, rounds)
        seconds, cpu = perf() - t0, cpu_now() - c0
        used = {"parent": cpu}
        for name, pid in system.items():
            used[name] = _proc_cpu(pid) - before[name]
        print(json.dumps({"seconds": seconds, "cpu": used}), flush=True)
    ray.shutdown()


class RayDriver:
    """Talks to :func:`ray_server` in a child process."""

    def __init__(self, num_cpus: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--ray-server", str(num_cpus)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        hello = self._read()
        self.version: str = hello["version"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the Ray driver process exited (is Ray installed?)")
            if line.startswith("{"):  # Ray may print lines of its own
                reply: dict[str, Any] = json.loads(line)
                return reply

    def run(self, workers: int, n: int, rounds: int) -> Sample:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps([workers, n, rounds]) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        return Sample(n, reply["seconds"], reply["cpu"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- figures and Markdown ---------------------------------------------------------------------


class Report:
    """Collects Markdown lines, printing each as it comes (a long run shows progress)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self("| " + " | ".join(header) + " |")
        self("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for r in rows:
            self("| " + " | ".join(str(c) for c in r) + " |")
        self()


def busy_share(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over ``seconds`` (this process sleeps meanwhile), from
    /proc/stat; NaN where there is none."""

    def read() -> tuple[float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return sum(fields[:8]) - idle, sum(fields[:8])

    a = read()
    time.sleep(seconds)
    b = read()
    if a is None or b is None or b[1] <= a[1]:
        return math.nan
    return (b[0] - a[0]) / (b[1] - a[1])


def wait_for_quiet(threshold: float, max_wait: float) -> tuple[float, float]:
    """Wait until other processes use less than ``threshold`` of the CPUs (at most
    ``max_wait`` s); returns (their share at the start of the pass, seconds waited)."""
    start = perf()
    share = busy_share()
    while share > threshold and perf() - start < max_wait:
        time.sleep(1.0)
        share = busy_share()
    return share, perf() - start


# -- the benchmark ----------------------------------------------------------------------------

Runner = Callable[[int, int, int], Awaitable[Sample]]


async def main(args: argparse.Namespace, use_uvloop: bool) -> Report:
    out = Report()
    started = perf()
    cpus = usable_cpus()
    counts = sorted({1, *(int(x) for x in args.workers.split(","))})
    skipped = [w for w in counts if w > cpus and not args.oversubscribe]
    counts = [w for w in counts if w not in skipped]
    sizes = [float(x) for x in args.sizes.split(",")]
    names = [n for n in RUNNER_NAMES if n in args.only.split(",")] if args.only else []
    if not args.only:
        names = list(RUNNER_NAMES)
    # Before Ray starts: its start-up keeps every CPU busy for seconds, and a calibration
    # taken meanwhile would make the tasks shorter than their nominal size.
    rate = calibrate()
    ray_driver: RayDriver | None = None
    ray_note = ""
    if RAY in names:
        try:
            ray_driver = RayDriver(max(counts))
        except (RuntimeError, OSError, ValueError) as exc:
            names.remove(RAY)
            ray_note = f"Ray left out: {exc}"

    async def ray_run(w: int, n: int, rounds: int) -> Sample:
        assert ray_driver is not None
        return ray_driver.run(w, n, rounds)

    async def ppe_run(w: int, n: int, rounds: int) -> Sample:
        return run_process_pool(w, n, rounds)

    runners: dict[str, Runner] = {
        OURS: lambda w, n, r: run_ours(w, n, r, 0),
        OURS_PF: lambda w, n, r: run_ours(w, n, r, 1),
        SCHED: run_scheduler,
        PPE: ppe_run,
        RAY: ray_run,
    }

    rounds_for = {ms: max(1, round(rate * ms / 1000)) for ms in sizes}
    points = [(ms, w) for ms in sizes for w in counts] + [(0.0, w) for w in args.noop_workers]
    # samples[(ms, workers, runner)] = one Sample per pass, in pass order
    samples: dict[tuple[float, int, str], list[Sample]] = {}
    quiet: list[tuple[float, float]] = []
    for rep in range(args.repeats):
        quiet.append(wait_for_quiet(args.quiet, args.quiet_wait))
        print(
            f"[pass {rep + 1}/{args.repeats}: others used {quiet[-1][0]:.0%} of the CPUs]",
            file=sys.stderr,
            flush=True,
        )
        for ms, w in points:
            n = args.tasks_per_worker * w if ms else args.noop_tasks
            rounds = rounds_for[ms] if ms else 0
            # Runners take turns within the pass, so that a busy spell on a shared machine
            # does not fall on one of them only.
            for name in names:
                samples.setdefault((ms, w, name), []).append(await runners[name](w, n, rounds))
    if ray_driver is not None:
        ray_driver.close()

    # -- header ---------------------------------------------------------------------------
    info = machine_info(use_uvloop, [])
    versions = [f"Python {platform.python_version()} (ProcessPoolExecutor is its stdlib one)"]
    if ray_driver is not None:
        versions.append(f"Ray {ray_driver.version}")
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        if use_uvloop:
            versions.append(f"uvloop {importlib.metadata.version('uvloop')}")
    out("## Scaling of CPU-bound pure-Python tasks (`benchmarks/bench_scaling.py`)\n")
    out(f"Command: `python benchmarks/bench_scaling.py {' '.join(sys.argv[1:])}`".rstrip() + "\n")
    out(f"- CPU: {info['cpu']}; {info['cores']} logical CPUs, **{cpus} usable** by this process")
    ram = f"; RAM {info['ram_gib']:.1f} GiB" if info["ram_gib"] else ""
    out(f"- OS: {info['os']}{ram}")
    out(f"- {'; '.join(versions)}; event loop: {'uvloop' if use_uvloop else 'asyncio'}")
    out(
        f"- {info['package']}"
        + (f" at git {info['revision']}" if info["revision"] else "")
        + f"; start method: {start_method()}"
    )
    shares = ", ".join(f"{s:.0%}" for s, _ in quiet)
    waited = sum(w for _, w in quiet)
    out(
        f"- Other processes' CPU use before each pass: {shares} of all CPUs (waited {waited:.0f} s "
        f"in all for less than {args.quiet:.0%}); load average at start {info['load_start']:.2f}"
    )
    out()
    out(
        "Task: `spin(n)`, a pure-Python loop of integer arithmetic (holds the GIL), calibrated "
        "single-threaded in the parent: "
        + ", ".join(f"{ms:g} ms = {r:,} rounds" for ms, r in rounds_for.items())
        + f". Each run: {args.tasks_per_worker} tasks per worker after a warm-up of 4 per "
        f"worker; workers started fresh for every run. {args.repeats} passes; every figure is "
        "the median (min-max) over them. "
        f"`{OURS}`: driven through the Executor contract, `capacity` tasks in flight "
        f"(workers, or twice that with prefetch=1). `{SCHED}`: all tasks submitted at once to "
        f"a scheduler with a `{OURS}(workers)` registered (the user's path: it adds the "
        f"scheduler's own bookkeeping). `{PPE}`: all tasks submitted at once. "
        f"`{RAY}`: `@ray.remote(num_cpus=1)`, `workers` tasks in flight, driver in its own "
        "process.\n"
    )
    if ray_note:
        out(f"{ray_note}\n")
    if cpus in counts:
        out(
            f"At {cpus} workers the parent (and, for Ray, its raylet and GCS server) shares the "
            f"{cpus} usable CPUs with the workers: that point is already slightly "
            "oversubscribed.\n"
        )
    if skipped:
        out(
            f"**Not run: {', '.join(map(str, skipped))} workers**, more than the {cpus} usable "
            "CPUs: such a run oversubscribes the machine and its speed-up says nothing about "
            "scaling (`--oversubscribe` runs them anyway, labelled). See the dispatch-cost "
            "section for what can be said about them from here.\n"
        )

    # -- scaling tables ---------------------------------------------------------------------
    def label(w: int) -> str:
        return f"{w} (oversubscribed)" if w > cpus else str(w)

    out("### Scaling\n")
    for ms in sizes:
        out(f"**{ms:g} ms tasks**: throughput in tasks/s (ideal: workers x {1000 / ms:,.0f})\n")
        rows: list[list[object]] = []
        for w in counts:
            row: list[object] = [label(w)]
            for name in names:
                row.append(Fig([s.rate for s in samples[(ms, w, name)]]).fmt())
            rows.append(row)
        out.table(["workers", *(f"`{n}`" for n in names)], rows)
        out(
            f"**{ms:g} ms tasks**: speed-up against the same runner at 1 worker in the same "
            "pass (efficiency: throughput over the ideal)\n"
        )
        rows = []
        for w in counts:
            row = [label(w)]
            for name in names:
                runs = samples[(ms, w, name)]
                base = samples[(ms, 1, name)]
                speed = Fig([s.rate / b.rate for s, b in zip(runs, base, strict=True)])
                eff = Fig([s.rate / (w * 1000 / ms) for s in runs])
                row.append(f"{speed.fmt(digits=2, unit='x')}; {eff.fmt(100, 0, '%')}")
            rows.append(row)
        out.table(["workers", *(f"`{n}`" for n in names)], rows)
    if PPE in names:
        out(f"`{OURS}` throughput over `{PPE}`'s, at the same point in the same pass:\n")
        rows = []
        for ms in sizes:
            for w in counts:
                row = [f"{ms:g} ms", label(w)]
                for name in (OURS, OURS_PF):
                    if name in names:
                        ratio = [
                            a.rate / b.rate
                            for a, b in zip(
                                samples[(ms, w, name)], samples[(ms, w, PPE)], strict=True
                            )
                        ]
                        row.append(Fig(ratio).fmt(digits=2, unit="x"))
                rows.append(row)
        out.table(
            ["task", "workers", *(f"`{n}` / `{PPE}`" for n in (OURS, OURS_PF) if n in names)], rows
        )

    # -- dispatch cost ----------------------------------------------------------------------
    out("### Dispatch cost: what would cap scaling on a larger machine\n")
    out(
        "CPU time of the dispatching side per task (user + system, all its threads), measured "
        "during the runs: the parent process (for Ray the driver; the raylet and the GCS "
        "server are separate processes, listed apart). The workers' own time is not in it. "
        "Whatever the worker count, every task costs the parent this much, and the parent is "
        "one process on one core (ProcessPoolExecutor's threads share one GIL), so it can "
        "complete at most 1 / (CPU per task) tasks per second.\n"
    )
    top = max(counts)
    rows = []
    procs = ["parent", "raylet", "gcs_server"]
    for ms in sizes:
        for name in names:
            runs = samples[(ms, top, name)]
            cells = [Fig([s.per_task(p) for s in runs]).fmt(1e6, 0, " µs") for p in procs]
            rows.append([f"{ms:g} ms", label(top), f"`{name}`", *cells])
    for w in args.noop_workers:
        for name in names:
            runs = samples[(0.0, w, name)]
            cells = [Fig([s.per_task(p) for s in runs]).fmt(1e6, 0, " µs") for p in procs]
            tput = Fig([s.rate for s in runs]).fmt(unit="/s")
            busy = Fig([s.cpu["parent"] / s.seconds for s in runs]).fmt(100, 0, "%")
            rows.append([f"no-op ({tput}; parent busy {busy})", label(w), f"`{name}`", *cells])
    out.table(["tasks", "workers", "runner", "parent", "raylet", "GCS server"], rows)

    out(
        "**Dispatch ceiling (arithmetic, not a measurement of scaling).** If the parent's CPU "
        "per task stays as measured, it is busy all the time at `task time / CPU per task` "
        "workers; past that, more workers cannot raise throughput. For Ray the busiest of its "
        "three processes is taken. Two readings: the median pass (the parent woke for most "
        f"completions, and shared {top} CPUs with the workers and with whatever else ran), and "
        "the least disturbed pass: on a shared machine disturbance only adds CPU time (cold "
        "caches, more switches), so the lowest cost is the closest to an idle machine's. At "
        "saturation completions come in batches and each costs less (the no-op rows, lowest "
        f"pass). Needed for >= {TARGET_SPEEDUP:g}x at {TARGET_WORKERS} workers: a ceiling "
        f"above {TARGET_WORKERS}.\n"
    )

    def worst(s: Sample) -> float:
        return max(c for c in (s.per_task(p) for p in procs if p in s.cpu) if not math.isnan(c))

    rows = []
    for ms in sizes:
        for name in names:
            costs = [worst(s) for s in samples[(ms, top, name)]]
            median, best = statistics.median(costs), min(costs)
            noop = samples.get((0.0, args.noop_workers[0], name)) if args.noop_workers else None
            at_sat = f"{ms / 1000 / min(worst(s) for s in noop):,.1f}" if noop else "n/a"
            low, high = ms / 1000 / median, ms / 1000 / best
            if low >= TARGET_WORKERS:
                verdict = f"room for {TARGET_WORKERS}"
            elif high >= TARGET_WORKERS:
                verdict = f"room for {TARGET_WORKERS} only in the least disturbed pass"
            else:
                verdict = f"**caps below {TARGET_WORKERS}** in every pass"
            rows.append(
                [
                    f"{ms:g} ms",
                    f"`{name}`",
                    Fig(costs).fmt(1e6, 0, " µs"),
                    f"{ms * 1000:,.0f} / {median * 1e6:,.0f} = **{low:,.1f}**",
                    f"{ms * 1000:,.0f} / {best * 1e6:,.0f} = **{high:,.1f}**",
                    at_sat,
                    verdict,
                ]
            )
    out.table(
        [
            "task",
            "runner",
            f"CPU per task at {top} workers, busiest process",
            "ceiling (median pass), workers",
            "ceiling (least disturbed pass)",
            "ceiling at no-op cost",
            "verdict (arithmetic)",
        ],
        rows,
    )

    # -- verdicts ---------------------------------------------------------------------------
    out("### Against the target\n")
    out(
        f"Target: >= {TARGET_SPEEDUP:g}x at {TARGET_WORKERS} workers for 1 ms and "
        "5 ms tasks, side by side with ProcessPoolExecutor and Ray in the same run.\n"
    )
    for ms in sizes:
        if (ms, TARGET_WORKERS, OURS) in samples and cpus >= TARGET_WORKERS:
            runs = samples[(ms, TARGET_WORKERS, OURS)]
            base = samples[(ms, 1, OURS)]
            speed = Fig([s.rate / b.rate for s, b in zip(runs, base, strict=True)])
            met = "met" if speed.median >= TARGET_SPEEDUP else "**missed**"
            out(f"- {ms:g} ms: {met}, {speed.fmt(digits=2, unit='x')} at {TARGET_WORKERS}.")
        else:
            best = max(w for w in counts if w <= cpus)
            runs = samples[(ms, best, OURS)]
            base = samples[(ms, 1, OURS)]
            speed = Fig([s.rate / b.rate for s, b in zip(runs, base, strict=True)])
            out(
                f"- {ms:g} ms: **not measured** at {TARGET_WORKERS} workers: this machine has "
                f"{cpus} usable CPUs. At {best} workers (the most that means anything here) "
                f"`{OURS}` reached {speed.fmt(digits=2, unit='x')} of an ideal {best}x."
            )
    out()
    out(
        f"Total wall time: {perf() - started:.0f} s; load average at the end "
        f"{os.getloadavg()[0]:.2f}."
    )
    return out


def cli() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--ray-server":
        ray_server(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs, well under a minute")
    parser.add_argument(
        "--workers", help="comma-separated worker counts (1,2,4,8,16; --quick: 1,2)"
    )
    parser.add_argument(
        "--oversubscribe",
        action="store_true",
        help="also run worker counts above the usable CPUs (labelled oversubscribed)",
    )
    parser.add_argument("--sizes", default="1,5", help="task sizes in milliseconds (1,5)")
    parser.add_argument("--tasks-per-worker", type=int, help="tasks per worker per run (300)")
    parser.add_argument("--repeats", type=int, help="passes; figures are medians (5)")
    parser.add_argument("--noop-tasks", type=int, help="tasks in a no-op run (3000)")
    parser.add_argument(
        "--quiet", type=float, default=0.25, help="others' CPU share to wait below (0.25)"
    )
    parser.add_argument(
        "--quiet-wait", type=float, help="seconds to wait for quiet before a pass (60)"
    )
    parser.add_argument(
        "--only", help=f"comma-separated runners (default all: {', '.join(RUNNER_NAMES)})"
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    parser.add_argument(
        "--asyncio", action="store_true", help="use asyncio's own loop even if uvloop is installed"
    )
    args = parser.parse_args()
    quick = args.quick
    if args.workers is None:
        args.workers = "1,2" if quick else "1,2,4,8,16"
    if args.tasks_per_worker is None:
        args.tasks_per_worker = 40 if quick else 300
    if args.repeats is None:
        args.repeats = 1 if quick else 5
    if args.noop_tasks is None:
        args.noop_tasks = 1000 if quick else 3000
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if quick else 60.0
    # No-op tasks run at as many workers as leave the parent a core of its own.
    args.noop_workers = [max(1, usable_cpus() - 1)]
    use_uvloop = uvloop_available() and not args.asyncio
    with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop=use_uvloop)) as runner:
        out = runner.run(main(args, use_uvloop))
    if args.output is not None:
        args.output.write_text("\n".join(out.lines) + "\n")


if __name__ == "__main__":
    cli()
