"""Durable throughput: trivial tasks submitted, persisted, run, their results persisted and
retrievable after a restart; ours on its SQLite journal beside the durable queues users pick
today, each on its usual broker started here (benchmarks/durable_peers.py). Also: recovery of
queued tasks, journal bytes per task, and the kill -9 crash loop.

Usage::

    python benchmarks/bench_durable.py                 # 20,000 tasks, 3 runs each, peers,
                                                       # 1,000,000-task recovery, 200 kills
    python benchmarks/bench_durable.py --quick         # small, for CI
    python benchmarks/bench_durable.py --no-peers --output part.md

Ours, each run on a new journal file: ``QuantumScheduler(2, journal=path)`` (two worker
slots, as the peers have two worker processes); submit ``n`` tasks ``noop(i) -> i`` one after
another with ``submit_nowait``, ``await persisted()`` (every submit acknowledged durable),
read every result back through its handle and check it equals ``i``, ``await persisted()``
(every result durable). e2e tasks/s = n / (that last write - first submit). After the
scheduler closed, a new one opens the journal and reads 1,000 results back by id (checked,
not timed). Targets (issue #22): >= 50,000 durable tasks/s, >= 3x the best peer, recovery of
1,000,000 queued tasks in <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from durable_peers import _fmt  # noqa: E402  (median [min-max], as the peers' table)
from logosq_os_scheduler import QuantumScheduler, SchedulerConfig, Task  # noqa: E402
from machine import machine_info  # noqa: E402

TARGET_RATE = 50_000
TARGET_RATIO = 3.0
TARGET_RECOVERY_S = 10.0


def noop(i: int) -> int:
    return i


async def _ours_once(n: int, path: Path, durability: str) -> dict[str, float]:
    config = SchedulerConfig(workers=2, journal=str(path), durability=durability)
    async with QuantumScheduler(config=config) as scheduler:
        t0 = time.perf_counter()
        handles = [
            scheduler.submit_nowait(Task.classical("noop").with_function(noop, i)) for i in range(n)
        ]
        await scheduler.persisted()
        t1 = time.perf_counter()
        for i, h in enumerate(handles):
            if (await h).value != i:
                raise AssertionError(f"task {i} gave a wrong value")
        await scheduler.persisted()
        t2 = time.perf_counter()
    ids = [h.task_id for h in handles]
    async with QuantumScheduler(2, journal=path) as again:
        for i in range(0, n, max(1, n // 1000)):
            if (await again.task(ids[i])).value != i:
                raise AssertionError(f"task {i} read back wrong after the restart")
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    return {"e2e": n / (t2 - t0), "submit": n / (t1 - t0), "bytes": size / n}


def ours(n: int, repeat: int, durability: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"e2e": [], "submit": [], "bytes": []}
    for r in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            got = asyncio.run(_ours_once(n, Path(d) / f"run{r}.db", durability))
        for k, v in got.items():
            out[k].append(v)
    return out


def recovery(n: int) -> tuple[float, int]:
    """Seconds for a new scheduler to open a journal of ``n`` queued tasks and put every one
    back in its queue (the journal is written directly, as a crashed scheduler leaves it)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import _journal_tasks
    from logosq_os_scheduler.journal import Journal
    from logosq_os_scheduler.journal._codec import encode_spec

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "j.db")
        journal = Journal(path)
        spec = encode_spec(Task.classical("sq").with_function(_journal_tasks.square, 3).build())
        now = time.time()
        journal._conn.execute("BEGIN")
        journal._conn.executemany(
            "INSERT INTO submits(id, name, type, priority, submitted, spec, status) "
            "VALUES (?,?,?,?,?,?,?)",
            ((i, "sq", "classical", i % 5, now - 60, spec, "queued") for i in range(1, n + 1)),
        )
        journal._conn.execute("COMMIT")
        journal.close()

        async def reopen() -> tuple[float, int]:
            t0 = time.perf_counter()
            scheduler = QuantumScheduler(1, journal=path)
            scheduler._ensure_started()  # opening and recovering, as at a start
            took = time.perf_counter() - t0
            back = scheduler.metrics().queue_depth + scheduler.metrics().running
            scheduler.cancel_all()
            await scheduler.aclose()
            return took, back

        return asyncio.run(reopen())


def crash_loop(kills: int) -> str:
    """The crash test's workload (tests/_journal_child.py mixed), killed ``kills`` times."""
    from logosq_os_scheduler import MockQPUService

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    child = ROOT / "tests" / "_journal_child.py"
    n = max(450, kills * 12)
    rng = random.Random(22)
    with (
        tempfile.TemporaryDirectory() as d,
        MockQPUService(latency=(0.01, 0.002), failure_rate=0.05, max_running_jobs=2) as qpu,
    ):
        host, port = qpu.address
        path, acks = Path(d) / "j.db", Path(d) / "acks"
        argv = [sys.executable, str(child), "mixed", str(path), str(acks), host, str(port), str(n)]
        done = 0
        t0 = time.perf_counter()
        while done < kills:
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, env=env, start_new_session=True
            )
            target = _lines(acks) + rng.randint(1, 20)
            while proc.poll() is None and _lines(acks) < target:
                time.sleep(0.002)
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            done += 1
        final = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        took = time.perf_counter() - t0
        stats = qpu.stats()
        import sqlite3

        with sqlite3.connect(path) as conn:
            counts = dict(
                conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
            )
    ok = "done" in final.stdout and counts == {"completed": n + 1} and stats["duplicate_keys"] == 0
    return (
        f"{done} kills -9 of a scheduler running {n + 1} tasks (classical with keys, quantum on "
        f"the mock QPU service with 5% transient job failures, a VQE), restarted each time: "
        f"{'every task completed once' if ok else 'FAILED: ' + repr(counts)}; the service "
        f"executed {stats['executed']} circuits, {stats['duplicate_keys']} twice, and answered "
        f"{stats['existing']} resends with the job it already had; {took:.0f} s in all."
    )


def peers(n: int, repeat: int) -> tuple[list[str], float, str]:
    """Every durable peer of benchmarks/durable_peers.py, run here, in the same run as ours:
    table rows, the best median e2e, and a note on brokers, versions and skips."""
    import durable_peers

    rows: list[str] = []
    best = 0.0
    notes: list[str] = []
    versions: dict[str, str] = {}
    for name, peer in durable_peers.PEERS.items():
        results = []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as d:
                try:
                    results.append(durable_peers.run_peer(name, n, Path(d)))
                except durable_peers.PeerError as exc:
                    notes.append(f"{name} failed: {exc}")
                    break
        ran = [r for r in results if not r.skipped]
        if not ran:
            if results and results[0].skipped:
                notes.append(f"{name}: {results[0].skipped}")
            continue
        e2e = [r.e2e_per_s for r in ran]
        best = max(best, statistics.median(e2e))
        versions.update({f"{k} ({peer.env})": v for k, v in ran[0].versions.items()})
        rows.append(
            f"| {peer.label} | {_fmt(e2e)} | {_fmt([r.submit_only_per_s for r in ran])} | "
            f"({ran[0].broker_config.split(';')[0]}) |"
        )
        print(f"{name}: {_fmt(e2e)}/s", flush=True)
    note = (
        "Peers: each on a broker started for the run on loopback (redis-server with no "
        "config file, or Huey's SQLite file), 2 worker processes, one producer, the method "
        "of benchmarks/durable_peers.py (which also prints their full table). Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + "."
        + ("" if not notes else " " + " ".join(notes))
    )
    return rows, best, note


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs, for CI")
    parser.add_argument("--n", type=int, default=None, help="tasks a run (20,000; quick 2,000)")
    parser.add_argument("--repeat", type=int, default=None, help="runs each (3; quick 1)")
    parser.add_argument("--no-peers", action="store_true", help="ours only")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    n = args.n or (2_000 if args.quick else 20_000)
    repeat = args.repeat or (1 if args.quick else 3)
    info = machine_info(False, [])
    shown = [a for a in sys.argv[1:] if a != "--output" and a != str(args.output)]
    command = " ".join(["python benchmarks/bench_durable.py", *shown])
    out = [
        "## Durable throughput (`benchmarks/bench_durable.py`)",
        "",
        f"Command: `{command}`. Machine: {info['cpu']}, {info['usable_cores']} usable cores, "
        f"{info['ram_gib']:.0f} GiB, {info['python']}, revision {info['revision']}. "
        f"{n:,} tasks `noop(i) -> i` a run, {repeat} run(s) each; median [min-max].",
        "",
        f"Targets: >= {TARGET_RATE:,} durable tasks/s end to end, >= {TARGET_RATIO:g}x the best "
        f"peer, recovery of 1,000,000 queued tasks in <= {TARGET_RECOVERY_S:g} s.",
        "",
        "| system | e2e durable tasks/s | submits acknowledged durable /s "
        "| journal bytes/task (ours), broker (peers) |",
        "|---|---|---|---|",
    ]
    best_ours = 0.0
    for durability in ("process", "power", "off"):
        got = ours(n, repeat, durability)
        best_ours = (
            max(best_ours, statistics.median(got["e2e"])) if durability == "process" else best_ours
        )
        label = {
            "process": "logosq, journal (durability process: survives kill -9; the default)",
            "power": "logosq, journal (durability power: fsync per group commit)",
            "off": "logosq, journal (durability off)",
        }[durability]
        out.append(
            f"| {label} | {_fmt(got['e2e'])} | {_fmt(got['submit'])} | {_fmt(got['bytes'])} |"
        )
        print(f"ours {durability}: {_fmt(got['e2e'])}/s", flush=True)
    peers_note = "Peers not run (--no-peers)."
    best_peer = 0.0
    if not args.no_peers:
        peer_rows, best_peer, peers_note = peers(n, repeat)
        out += peer_rows
    out.append("")
    out.append(peers_note)
    if best_peer > 0:
        ratio = best_ours / best_peer
        verdict = "met" if ratio >= TARGET_RATIO else "missed"
        out.append(
            f"\nOurs (durability process) / the best peer: **{ratio:.1f}x** (target "
            f"{TARGET_RATIO:g}x: {verdict}). Ours: {best_ours:,.0f}/s against the target "
            f"{TARGET_RATE:,}/s: {'met' if best_ours >= TARGET_RATE else 'missed'}."
        )
    rec_n = 100_000 if args.quick else 1_000_000
    took, back = recovery(rec_n)
    out.append(
        f"\nRecovery: a new scheduler opened a journal of {rec_n:,} queued tasks and put "
        f"{back:,} back in their queues in **{took:.2f} s** (target for 1,000,000: "
        f"<= {TARGET_RECOVERY_S:g} s)."
    )
    print(f"recovery of {rec_n:,}: {took:.2f} s", flush=True)
    kills = 5 if args.quick else 200
    out.append("\nCrash loop: " + crash_loop(kills))
    out += ["", f"Load average at the end: {os.getloadavg()[0]:.2f}."]
    text = "\n".join(out) + "\n"
    print(text)
    if args.output is not None:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
