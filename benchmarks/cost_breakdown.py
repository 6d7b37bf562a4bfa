"""Where a trivial task's time goes: CPU instructions per task, stage by stage.

Usage::

    python benchmarks/cost_breakdown.py        # needs valgrind; takes about a minute

Wall-clock timings on a shared 2-core machine move by tens of percent from run to run;
instruction counts do not. Each stage runs under valgrind's cachegrind twice, with 2,000 and
12,000 tasks, and the difference divided by 10,000 is its cost per task, free of start-up
costs. Stages are cumulative: "build" includes "builder", "submit" includes "build", so the
differences between lines are what each step adds. Garbage collection is off here (its cost
depends on what else is alive, and is measured by the burst figures in BENCHMARKS.md).
"""

from __future__ import annotations

import gc
import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent

STAGES = {
    "builder": "Task.classical(name).with_function(work, i)",
    "build": "... .build(): the Task object",
    "handle": "build, plus a TaskHandle for it",
    "core": "build, plus the core's admit, release and COMPLETED transition (no runtime)",
    "submit": "scheduler.submit_nowait(builder), inline run, handle dropped",
    "callback": "submit, plus handle.add_done_callback(partial(...))",
}


def _stage(stage: str, n: int) -> None:
    from logosq_os_scheduler import (
        QuantumScheduler,
        SchedulerConfig,
        Task,
        TaskHandle,
        TaskStatus,
        run,
    )
    from scenarios import work

    gc.disable()
    # A threshold far above valgrind's slowdown keeps the function on the inline path, as it is
    # at full speed.
    config = SchedulerConfig(workers=4, inline_threshold=1.0)

    async def main() -> None:
        async with QuantumScheduler(config=config) as s:
            submit = s.submit_nowait
            for i in range(10):
                submit(Task.classical("t").with_function(work, i))
            await s.join()
            if stage == "builder":
                for i in range(n):
                    Task.classical("t").with_function(work, i)
            elif stage == "build":
                for i in range(n):
                    Task.classical("t").with_function(work, i).build()
            elif stage == "handle":
                for i in range(n):
                    TaskHandle(Task.classical("t").with_function(work, i).build(), s)
            elif stage == "core":
                core = s._core
                pool = core.classical
                completed = TaskStatus.COMPLETED
                for i in range(n):
                    t = Task.classical("t").with_function(work, i).build()
                    core.admit(t, pool, 1.0)
                    core.release(pool, t, 1.0)
                    core.transition(t, completed, 1.0)
            elif stage == "submit":
                for i in range(n):
                    submit(Task.classical("t").with_function(work, i))
            elif stage == "callback":

                def mark(i: int, _h: object) -> None:
                    pass

                for i in range(n):
                    submit(Task.classical("t").with_function(work, i)).add_done_callback(
                        partial(mark, i)
                    )
            await s.join()

    run(main())


def _instructions(stage: str, n: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--stage",
            stage,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    match = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main() -> int:
    """Measure every stage and print instructions per task."""
    if len(sys.argv) == 4 and sys.argv[1] == "--stage":
        _stage(sys.argv[2], int(sys.argv[3]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed; this breakdown needs it", file=sys.stderr)
        return 1
    print(f"{'stage':10s} {'instructions/task':>18s}  what")
    for stage, what in STAGES.items():
        small, large = _instructions(stage, 2_000), _instructions(stage, 12_000)
        print(f"{stage:10s} {(large - small) / 10_000:18,.0f}  {what}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
