"""A scheduler with a journal in its own process, for the journal's kill -9 tests.

python _journal_child.py crash JOURNAL ACKS N
    Recover JOURNAL, submit tasks t0..t{N-1} (idempotent by key; restartable squares),
    append each index to ACKS once its submit has returned, wait for all, print "done".
python _journal_child.py hold JOURNAL
    One worker: a blocking task, then tasks of several priorities queued behind it;
    print "ready" once they are written, then wait to be killed.
"""

from __future__ import annotations

import asyncio
import os
import sys

import _journal_tasks as tasks
from logosq_os_scheduler import QuantumScheduler, Task, TaskPriority


async def crash(journal: str, acks: str, n: int) -> None:
    async with QuantumScheduler(2, journal=journal) as scheduler:
        handles = []
        with open(acks, "a") as out:  # noqa: ASYNC230 - a test's log, written line by line
            for i in range(n):
                builder = (
                    Task.classical(f"square-{i}")
                    .with_function(tasks.square, i)
                    .with_key(f"t{i}")
                    .with_restartable()
                )
                handles.append(await scheduler.submit(builder))
                out.write(f"{i}\n")
                out.flush()
        for h in handles:
            await h
    print("done", flush=True)


async def hold(journal: str) -> None:
    scheduler = QuantumScheduler(1, journal=journal)
    async with scheduler:
        scheduler.submit_nowait(
            Task.classical("blocker").with_function(tasks.block, 60.0).with_key("blocker")
        )
        plan = [
            ("low-1", TaskPriority.LOW),
            ("normal-1", TaskPriority.NORMAL),
            ("high-1", TaskPriority.HIGH),
            ("normal-2", TaskPriority.NORMAL),
            ("critical-1", TaskPriority.CRITICAL),
            ("high-2", TaskPriority.HIGH),
        ]
        for tag, priority in plan:
            scheduler.submit_nowait(
                Task.classical(tag)
                .with_function(tasks.record, tag)
                .with_priority(priority)
                .with_key(tag)
            )
        await scheduler.persisted()
        print("ready", flush=True)
        await asyncio.sleep(3600)


def main() -> None:
    mode = sys.argv[1]
    if mode == "crash":
        asyncio.run(crash(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif mode == "hold":
        asyncio.run(hold(sys.argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
