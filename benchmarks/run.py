"""Run the benchmark suite and rewrite BENCHMARKS.md.

Usage::

    python benchmarks/run.py                      # everything; rewrites BENCHMARKS.md
    python benchmarks/run.py --quick              # < 1 minute, for CI; writes no file
    python benchmarks/run.py --scenarios classical --peers tpe,asyncio --output out.md
    python benchmarks/run.py --json r.json        # keep the raw results ...
    python benchmarks/run.py --render r.json      # ... and rewrite the report from them

Each (scenario, system) pair, and the scale measurements, run in a fresh child process, so one
engine's threads, processes and garbage never disturb the next one's figures. Every figure is
the median of ``--repeats`` runs (5, or 3 with ``--quick``) after one warm-up run, with the min
and max beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from harness import (  # noqa: E402
    QUIET_WAIT_MAX_S,
    Figure,
    OpenLoopRun,
    calibrate,
    loadavg,
    quiesce,
    wait_for_quiet,
)
from machine import machine_info  # noqa: E402
from report import render_markdown, render_text  # noqa: E402
from scenarios import SCENARIOS, Scenario  # noqa: E402
from systems import SYSTEMS, System  # noqa: E402

OURS = "logosq"
PEERS = ("asyncio", "tpe", "ray", "dask")
SCALE = "scale"


# -- one (scenario, system) pair, in a child process -------------------------------------------


def _open_loop_size(rate: float, system: type[System], quick: bool) -> int:
    duration = 0.2 if quick else 1.0
    floor = 100 if quick else 1_000
    return max(floor, min(int(rate * duration), system.max_open_loop_tasks))


def _open_loop_point(
    sys_obj: System, label: str, rate: float, n: int, repeats: int, quiet: float
) -> dict[str, Any]:
    quiesce()
    sys_obj.open_loop(rate, max(n // 4, min(n, 100)))  # warm-up
    runs: list[OpenLoopRun] = []
    waited = 0.0
    for _ in range(repeats):
        quiesce()
        waited += wait_for_quiet(quiet)
        runs.append(sys_obj.open_loop(rate, n))

    def fig(attr: str) -> dict[str, Any]:
        return Figure.of([getattr(r, attr) for r in runs]).as_dict()

    return {
        "label": label,
        "rate": rate,
        "n": n,
        "p50": fig("p50"),
        "p99": fig("p99"),
        "p999": fig("p999"),
        "max": fig("max"),
        "achieved": fig("achieved"),
        "release_lag_p99": fig("release_lag_p99"),
        "incomplete": sum(r.incomplete for r in runs),
        "quiet_wait_s": waited,
    }


def measure_pair(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one system on one scenario: burst, then open-loop at half its max and the seed's."""
    scenario = SCENARIOS[spec["scenario"]]
    cls = SYSTEMS[spec["system"]]
    quick: bool = spec["quick"]
    repeats: int = spec["repeats"]
    quiet: float = spec["quiet_wait"]
    workers = scenario.workers or spec["workers"]
    load_before = loadavg()
    sys_obj = cls(scenario, workers, spec["use_uvloop"])
    t0 = time.perf_counter()
    sys_obj.setup()
    setup_s = time.perf_counter() - t0
    try:
        n = cls.burst_tasks[1 if quick else 0]
        quiesce()
        warm_s, warm_bad = sys_obj.burst(n)
        rates: list[float] = []
        bad = warm_bad
        waited = 0.0
        for _ in range(repeats):
            quiesce()
            waited += wait_for_quiet(quiet)
            elapsed, wrong = sys_obj.burst(n)
            rates.append(n / elapsed)
            bad += wrong
        burst = Figure.of(rates)
        points = [
            _open_loop_point(
                sys_obj,
                "half",
                burst.median / 2,
                _open_loop_size(burst.median / 2, cls, quick),
                repeats,
                quiet,
            )
        ]
        ref = scenario.reference_rate
        skipped: list[str] = []
        if burst.median >= ref:
            points.append(
                _open_loop_point(
                    sys_obj, "reference", ref, _open_loop_size(ref, cls, quick), repeats, quiet
                )
            )
        else:
            skipped.append(
                f"not run at {ref:,.0f}/s: its burst maximum, {burst.median:,.0f}/s, is below it, "
                "so it cannot sustain that rate"
            )
    finally:
        sys_obj.teardown()
    return {
        "system": cls.name,
        "label": cls.label,
        "workers": workers,
        "setup_s": setup_s,
        "burst_n": n,
        "warmup_burst": n / warm_s,
        "burst": burst.as_dict(),
        "bad_results": bad,
        "quiet_wait_s": waited + sum(p["quiet_wait_s"] for p in points),
        "open_loop": points,
        "skipped": skipped,
        "load": [load_before, loadavg()],
    }


def child_main(spec: dict[str, Any], out: Path) -> int:
    """Entry point of a child process: measure, write JSON to ``out``."""
    # Anything the engines print goes to stderr; the parent reads only the JSON file.
    sys.stdout = sys.stderr
    if spec["kind"] == SCALE:
        from scale import measure_scale

        load_before = loadavg()
        result = measure_scale(
            memory_count=spec["memory_count"],
            traced_count=spec["traced_count"],
            tpe_traced_count=spec["tpe_traced_count"],
            depths=spec["depths"],
            repeats=spec["repeats"],
            use_uvloop=spec["use_uvloop"],
            quiet=spec["quiet_wait"],
        )
        result["load"] = [load_before, loadavg()]
    else:
        result = measure_pair(spec)
    out.write_text(json.dumps(result))
    return 0


# -- the parent: plan, spawn, collect, report -------------------------------------------------


def _spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = _spawn_once(spec, timeout)
    result["elapsed_s"] = time.perf_counter() - t0
    return result


def _spawn_once(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="logosq-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(HERE / "run.py"), "--child", json.dumps(spec), str(out)]
        try:
            proc = subprocess.run(
                cmd, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish within {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            tail = proc.stderr.strip().splitlines()[-8:]
            return {"error": f"exit status {proc.returncode}: " + " | ".join(tail)}
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def _parse_list(value: str, known: set[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return names


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the suite, print tables and write the report."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return child_main(json.loads(argv[1]), Path(argv[2]))
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmark logosq-os-scheduler side by side with its peers.",
    )
    parser.add_argument("--quick", action="store_true", help="small runs, < 1 minute (for CI)")
    parser.add_argument(
        "--scenarios",
        default=",".join([*SCENARIOS, SCALE]),
        help=f"comma-separated, from: {', '.join([*SCENARIOS, SCALE])} (default: all)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated, from: {', '.join(PEERS)} (default: all installed)",
    )
    parser.add_argument("--repeats", type=int, help="runs per figure (default 5, quick 3)")
    parser.add_argument("--workers", type=int, default=4, help="worker slots/threads (default 4)")
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop for ours and raw asyncio (default: uvloop if installed)",
    )
    parser.add_argument(
        "--output",
        help="markdown report to write; default BENCHMARKS.md at the repository root for a "
        "full run, none for --quick; '-' for none",
    )
    parser.add_argument("--json", help="also write the raw results as JSON here")
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: rewrite the report from results saved with --json (for "
        "example after editing benchmarks/analysis.md)",
    )
    args = parser.parse_args(argv)
    if args.render:
        saved: dict[str, Any] = json.loads(Path(args.render).read_text())
        target = Path(args.output) if args.output and args.output != "-" else ROOT / "BENCHMARKS.md"
        _write_report(saved, target)
        print(render_text(saved, SCENARIOS))
        return 0

    scenarios = _parse_list(args.scenarios, {*SCENARIOS, SCALE}, "scenario")
    peers = _parse_list(args.peers, set(PEERS), "peer")
    repeats = args.repeats or (3 if args.quick else 5)
    if args.loop == "auto":
        from logosq_os_scheduler._runtime import uvloop_available

        use_uvloop = uvloop_available()
    else:
        use_uvloop = args.loop == "uvloop"
    output: Path | None
    if args.output == "-":
        output = None
    elif args.output:
        output = Path(args.output)
    else:
        output = None if args.quick else ROOT / "BENCHMARKS.md"
    child_timeout = 180.0 if args.quick else 1200.0

    started = time.perf_counter()
    meta: dict[str, Any] = {
        "command": "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in argv),
        "mode": "quick" if args.quick else "full",
        "repeats": repeats,
        "workers": args.workers,
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(use_uvloop, [SYSTEMS[p] for p in (OURS, *PEERS)]),
    }
    calibration_s = 0.5 if args.quick else 1.0
    _progress("calibrating: machine noise")
    meta["noise_start"] = calibrate(calibration_s, use_uvloop)
    results: dict[str, Any] = {"meta": meta, "scenarios": {}, "scale": None}
    base = {
        "quick": args.quick,
        "repeats": repeats,
        "workers": args.workers,
        "use_uvloop": use_uvloop,
        # Quick mode must stay under a minute on a busy CI machine: it does not wait.
        "quiet_wait": 0.0 if args.quick else QUIET_WAIT_MAX_S,
    }

    for name in scenarios:
        if name == SCALE:
            continue
        scenario: Scenario = SCENARIOS[name]
        block: dict[str, Any] = {"systems": {}}
        results["scenarios"][name] = block
        chosen = [OURS] + [p for p in peers if p in scenario.peers]
        for sysname in chosen:
            cls = SYSTEMS[sysname]
            why = cls.unavailable()
            if why is not None:
                block["systems"][sysname] = {"label": cls.label, "skipped_system": why}
                _progress(f"{name}/{sysname}: skipped ({why})")
                continue
            _progress(f"{name}/{sysname}: running")
            spec = {**base, "kind": "pair", "scenario": name, "system": sysname}
            res = _spawn(spec, child_timeout)
            res.setdefault("label", cls.label)
            block["systems"][sysname] = res
            _progress(f"{name}/{sysname}: " + _one_line(res))

    if SCALE in scenarios:
        _progress("scale: running")
        top = 200_000 if args.quick else 1_000_000
        spec = {
            **base,
            "kind": SCALE,
            "memory_count": top,
            "traced_count": 50_000 if args.quick else top,
            "tpe_traced_count": 20_000 if args.quick else 100_000,
            # Quick mode stops at 100,000: each run at 1,000,000 takes seconds.
            "depths": [1_000, 10_000, 100_000] + ([] if args.quick else [top]),
        }
        results["scale"] = _spawn(spec, child_timeout)
        _progress(f"scale: done in {results['scale']['elapsed_s']:.1f} s")

    meta["noise_end"] = calibrate(calibration_s, use_uvloop)
    meta["elapsed_s"] = time.perf_counter() - started
    meta["load_end"] = loadavg()
    print(render_text(results, SCENARIOS))
    if output is not None:
        _write_report(results, output)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    failed = [
        f"{sc}/{sy}"
        for sc, block in results["scenarios"].items()
        for sy, res in block["systems"].items()
        if res.get("error")
    ]
    if results["scale"] is not None and results["scale"].get("error"):
        failed.append("scale")
    if failed:
        _progress("failed: " + ", ".join(failed))
        return 1
    return 0


def _write_report(results: dict[str, Any], output: Path) -> None:
    analysis = HERE / "analysis.md"
    output.write_text(
        render_markdown(
            results, SCENARIOS, SYSTEMS, analysis.read_text() if analysis.exists() else None
        )
    )
    _progress(f"wrote {output}")


def _progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _one_line(res: dict[str, Any]) -> str:
    if res.get("error"):
        return "ERROR " + str(res["error"])
    burst = res["burst"]["median"]
    parts = [f"burst {burst:,.0f}/s"]
    for p in res["open_loop"]:
        parts.append(f"{p['rate']:,.0f}/s p99 {p['p99']['median'] * 1e3:.3f} ms")
    return "; ".join(parts) + f" (setup {res['setup_s']:.1f} s, all {res['elapsed_s']:.1f} s)"


if __name__ == "__main__":
    raise SystemExit(main())
