"""``logosq simulate`` at scale: simulated tasks per real second, and the three policies
(first-come-first-served, least-busy, this scheduler's) on heavily loaded workloads.

Usage::

    python benchmarks/bench_simulate.py                 # 1,000,000 tasks over 1,000 devices
    python benchmarks/bench_simulate.py --quick         # 20,000 over 100, for CI
    python benchmarks/bench_simulate.py --output part.md

The target: ours simulates 1,000,000 tasks over 1,000 devices in at most 60 s on the 2-core
machine (>= 16,000 simulated tasks a second). The simulation is single-threaded and
deterministic under its seed: its policy figures do not move between runs, only the wall
times do.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from logosq_os_scheduler.simulate import make_cloud, simulate, workload_for  # noqa: E402
from machine import machine_info  # noqa: E402

TARGET_SECONDS = 60.0


def run(tasks: int, backends: int, load: float, seed: int) -> tuple[str, list[str]]:
    started = time.perf_counter()
    cloud = make_cloud(backends, seed=seed)
    workload = workload_for(cloud, tasks=tasks, load=load, seed=seed)
    made = time.perf_counter() - started
    report = simulate(workload=workload, cloud=cloud, seed=seed)
    total = time.perf_counter() - started
    ours = report.get("logosq")
    lines = [
        f"{workload.description}; {cloud.description}; offered load {load:g}x the cloud's "
        f"capacity at one circuit a job.",
        "",
        report.table(),
        "",
        f"Wall time: workload generated in {made:.1f} s; ours simulated in "
        f"{ours.wall_seconds:.1f} s ({ours.tasks_per_second:,.0f} tasks/s); the whole run, "
        f"three policies and the report, {total:.1f} s.",
    ]
    return f"{tasks:,} tasks over {backends:,} devices at load {load:g}", lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs, for CI")
    parser.add_argument("--seed", type=int, default=1, help="for every random draw (1)")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    runs = (
        [(20_000, 100, 2.0), (10_000, 50, 4.0)]
        if args.quick
        else [(1_000_000, 1_000, 2.0), (200_000, 200, 4.0)]
    )
    info = machine_info(False, [])
    out = [
        "## Simulation (`benchmarks/bench_simulate.py`)",
        "",
        f"Command: `python benchmarks/bench_simulate.py{' --quick' if args.quick else ''}`. "
        f"Machine: {info['cpu']}, {info['usable_cores']} usable cores, "
        f"{info['ram_gib']:.0f} GiB, {info['python']}, revision {info['revision']}.",
        "",
        "Target: ours simulates 1,000,000 tasks over 1,000 devices in at most "
        f"{TARGET_SECONDS:.0f} s (>= 16,000 simulated tasks/s). Job completion time and queue "
        "wait run from arrival; utilisation is the devices' slot time spent on these jobs "
        "until the last one ended; fairness is Jain's index over the users' mean slowdowns. "
        "Models, not measurements of devices: see docs/simulate.md.",
    ]
    for title, lines in (run(t, b, load, args.seed) for t, b, load in runs):
        out += ["", f"### {title}", "", *lines]
        print(f"{title}: done", flush=True)
    out += ["", f"Load average at the end: {os.getloadavg()[0]:.2f}."]
    text = "\n".join(out) + "\n"
    print(text)
    if args.output is not None:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
