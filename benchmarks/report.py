"""Turn the suite's results into the stdout tables and BENCHMARKS.md."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness import Figure
from scenarios import Scenario

__all__ = ["render_markdown", "render_text"]

OURS = "logosq"
# Targets measured by bench_quantum.py (it needs backends), whose section is appended to
# this report with its own Targets table.
PENDING = {
    "quantum": "Quantum only (MockBackend with a stated latency): >= 1,000 tasks/s at p99 <= 50 ms",
    "mixed": "Mixed 50/50 on the same mocks: >= 25,000 tasks/s at p99 <= 2 ms",
}
# Targets measured by bench_service.py (issue #23: `logosq serve` beside the HTTP ceiling),
# appended with its own Targets table.
SERVICE_TARGETS = (
    "Service: single-task submits >= 0.5x the bare endpoint's requests/s",
    "Service: batched submits >= 20,000 tasks/s",
    "Service: p99 <= 50 ms at half the maximum rate",
)
MEMORY_TARGET = 400.0  # bytes per queued task
FLAT_FACTOR = 2.0  # per-task cost may vary this much across depths and still count as flat

Row = Sequence[str]


def _fig(d: Mapping[str, Any]) -> Figure:
    return Figure.from_dict(dict(d))


def _num(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:,.0f}"


def _ms(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    ms = v * 1e3
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 100:
        return f"{ms:.2f}"
    return f"{ms:,.0f}"


def _span(f: Figure, fmt: Callable[[float], str]) -> str:
    if len(f.runs) <= 1:
        return fmt(f.median)
    return f"{fmt(f.median)} ({fmt(f.lo)}-{fmt(f.hi)})"


def _ratio(ours: float, peer: float) -> str:
    if math.isnan(ours) or math.isnan(peer) or peer == 0:
        return "n/a"
    r = ours / peer
    return f"{r:.3g}x"


def _table(headers: Row, rows: Sequence[Row], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _measured(block: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, res)
        for name, res in block["systems"].items()
        if not res.get("error") and not res.get("skipped_system")
    ]


def _point(res: Mapping[str, Any], label: str) -> dict[str, Any] | None:
    return next((p for p in res.get("open_loop", []) if p["label"] == label), None)


def _scenario_tables(block: Mapping[str, Any], scenario: Scenario, md: bool) -> list[str]:
    out: list[str] = []
    systems = _measured(block)
    ours = block["systems"].get(OURS)
    ours_ok = ours is not None and not ours.get("error") and not ours.get("skipped_system")

    rows = []
    for _name, res in systems:
        burst = _fig(res["burst"])
        rows.append(
            [
                res["label"],
                _span(burst, _num),
                f"{res['burst_n']:,}",
                _num(res["warmup_burst"]),
                f"{res['setup_s']:.2f} s",
                _ratio(ours["burst"]["median"], burst.median) if ours_ok else "n/a",
            ]
        )
    out.append(("#### " if md else "") + "Burst throughput, submit to result (tasks/s)")
    out.append(
        _table(
            ["system", "median (min-max)", "tasks/run", "warm-up run", "start-up", "ours / this"],
            rows,
            md,
        )
    )

    rows = []
    for _name, res in systems:
        for p in res["open_loop"]:
            where = "half max" if p["label"] == "half" else "seed rate"
            rows.append(
                [
                    res["label"],
                    f"{_num(p['rate'])}/s ({where})",
                    _span(_fig(p["achieved"]), _num),
                    _span(_fig(p["p50"]), _ms),
                    _span(_fig(p["p99"]), _ms),
                    _span(_fig(p["p999"]), _ms),
                    _ms(_fig(p["max"]).median),
                    _ms(_fig(p["release_lag_p99"]).median),
                    f"{p['n']:,}" + (f", {p['incomplete']} lost" if p["incomplete"] else ""),
                ]
            )
    out.append(
        ("#### " if md else "")
        + "Open-loop latency, intended arrival to result (ms; median of runs, min-max)"
    )
    out.append(
        _table(
            [
                "system",
                "offered rate",
                "achieved/s",
                "p50",
                "p99",
                "p99.9",
                "max (median)",
                "gen. lag p99",
                "arrivals/run",
            ],
            rows,
            md,
        )
    )

    if ours_ok and len(systems) > 1:
        rows = []
        for name, res in systems:
            if name == OURS:
                continue
            row = [res["label"], _ratio(ours["burst"]["median"], res["burst"]["median"])]
            for label in ("half", "reference"):
                mine, theirs = _point(ours, label), _point(res, label)
                for q in ("p50", "p99", "p999"):
                    if mine is None or theirs is None:
                        row.append("n/a")
                    else:
                        row.append(_ratio(mine[q]["median"], theirs[q]["median"]))
            rows.append(row)
        ref = f"{scenario.reference_rate:,.0f}/s"
        out.append(
            ("#### " if md else "")
            + "Ratios, ours / peer (burst: above 1 is faster; latency: below 1 is lower)"
        )
        out.append(
            _table(
                [
                    "peer",
                    "burst",
                    "p50 @half",
                    "p99 @half",
                    "p99.9 @half",
                    f"p50 @{ref}",
                    f"p99 @{ref}",
                    f"p99.9 @{ref}",
                ],
                rows,
                md,
            )
        )
        if md:
            out.append(
                "At *half*, each system runs at half of its own burst maximum, so the rates "
                f"differ; at {ref} all run the same rate."
            )

    notes = []
    for name, res in block["systems"].items():
        label = res.get("label", name)
        if res.get("skipped_system"):
            notes.append(f"{label}: not run ({res['skipped_system']}).")
        elif res.get("error"):
            notes.append(f"{label}: FAILED ({res['error']}).")
        else:
            notes += [f"{label}: {s}." for s in res.get("skipped", [])]
            if res.get("bad_results"):
                notes.append(f"{label}: {res['bad_results']} wrong or missing burst results!")
            for p in res["open_loop"]:
                achieved = p["achieved"]["median"]
                if achieved < 0.99 * p["rate"]:
                    notes.append(
                        f"{label}: did not keep up at {_num(p['rate'])}/s (median achieved "
                        f"{_num(achieved)}/s): arrivals queued, so its latencies grow with the "
                        "length of the run"
                        + (
                            "; the generator and the engine share one thread here, so this "
                            "rate is beyond what one thread can both generate and run"
                            if p["label"] == "half" and name == "asyncio"
                            else ""
                        )
                        + "."
                    )
            lb, la = res["load"]
            wait = res.get("quiet_wait_s", 0.0)
            notes.append(
                f"{label}: 1-min load average {lb:.2f} before, {la:.2f} after; "
                f"{wait:.1f} s spent waiting for a quiet machine before its runs."
            )
    if notes:
        out.append(("#### " if md else "") + "Notes")
        out.append("\n".join(("- " if md else "  ") + n for n in notes))
    return out


def _targets(results: Mapping[str, Any], scenarios: Mapping[str, Scenario]) -> list[Row]:
    rows: list[Row] = []
    for name, block in results["scenarios"].items():
        for target in scenarios[name].targets:
            verdict = target.check(block)
            if verdict is None:
                rows.append([target.text, "not measured", "its figures were not in this run"])
            else:
                met, how = verdict
                rows.append([target.text, "met" if met else "MISSED", how])
    scale = results.get("scale")
    if scale and not scale.get("error"):
        mem = scale["memory"]["bytes_per_task"]
        rows.append(
            [
                f"< {MEMORY_TARGET:.0f} bytes per queued task",
                "met" if mem < MEMORY_TARGET else "MISSED",
                f"{mem:.0f} bytes (tracemalloc, {scale['memory']['traced_count']:,} queued) "
                f"= {mem / MEMORY_TARGET:.2f}x the bound; RSS grew "
                f"{scale['memory']['rss_bytes_per_task']:.0f} bytes/task with "
                f"{scale['memory']['count']:,} queued",
            ]
        )
        for what in ("submit", "dispatch"):
            # Noise on a shared machine only ever adds time, so the best run at each depth is
            # the estimate of the cost itself.
            costs = [row[what]["lo"] for row in scale["sweep"]]
            spread = max(costs) / min(costs)
            depths = [row["depth"] for row in scale["sweep"]]
            rows.append(
                [
                    f"{what} cost per task flat from {depths[0]:,} to {depths[-1]:,} queued",
                    "met" if spread <= FLAT_FACTOR else "MISSED",
                    f"best run per depth: largest / smallest = {spread:.2f} (flat: <= "
                    f"{FLAT_FACTOR:g}; an O(n) step would give ~{depths[-1] // depths[0]:,})",
                ]
            )
    for name, text in PENDING.items():
        if name not in scenarios:
            rows.append(
                [
                    text,
                    "see below",
                    "measured by `benchmarks/bench_quantum.py` (its Targets table, below)",
                ]
            )
    for text in SERVICE_TARGETS:
        rows.append(
            [text, "see below", "measured by `benchmarks/bench_service.py` (its Targets, below)"]
        )
    return rows


def _scale_tables(scale: Mapping[str, Any], md: bool) -> list[str]:
    out: list[str] = []
    if scale.get("error"):
        return [f"Scale measurements FAILED: {scale['error']}"]
    mem, tpe = scale["memory"], scale["tpe_memory"]
    out.append(("#### " if md else "") + "Memory per queued task")
    out.append(
        _table(
            [
                "system",
                "tasks queued (tracemalloc)",
                "bytes/task held by the engine",
                "bytes/task incl. the caller's handle",
                "RSS growth/task",
            ],
            [
                [
                    "logosq (ours)",
                    f"{mem['traced_count']:,}",
                    f"{mem['bytes_per_task']:.0f}",
                    f"{mem['bytes_per_task_with_handle']:.0f}",
                    f"{mem['rss_bytes_per_task']:.0f} (with {mem['count']:,} queued)",
                ],
                [
                    "ThreadPoolExecutor",
                    f"{tpe['traced_count']:,}",
                    f"{tpe['bytes_per_task']:.0f}",
                    f"{tpe['bytes_per_task_with_handle']:.0f}",
                    "not measured",
                ],
            ],
            md,
        )
    )
    rows = []
    for row in scale["sweep"]:
        rows.append(
            [
                f"{row['depth']:,}",
                _span(_fig(row["submit"]), lambda v: f"{v * 1e6:.2f}"),
                _span(_fig(row["dispatch"]), lambda v: f"{v * 1e6:.2f}"),
            ]
        )
    out.append(
        ("#### " if md else "") + "Cost per task as the queue grows (µs; median of runs, min-max)"
    )
    out.append(_table(["tasks queued", "submit", "dispatch + run + finish"], rows, md))
    return out


def _noise(n: Mapping[str, Any]) -> str:
    return (
        f"{n['pauses_per_s']:,.0f} pauses > 50 µs per second ({n['paused_share']:.1%} of the "
        f"time, median {_us(n['pause_p50'])}, longest {_us(n['pause_max'])}); with no engine, "
        f"the loop generator at {n['null_rate']:,.0f}/s sees p50 {_ms(n['null_p50'])} ms, "
        f"p99 {_ms(n['null_p99'])} ms, p99.9 {_ms(n['null_p999'])} ms"
    )


def _us(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v * 1e6:,.0f} µs"


def render_text(results: Mapping[str, Any], scenarios: Mapping[str, Scenario]) -> str:
    """The human-readable tables printed on stdout."""
    meta = results["meta"]
    m = meta["machine"]
    out = [
        f"logosq-os-scheduler benchmarks ({meta['mode']}, {meta['repeats']} runs per figure, "
        f"workers={meta['workers']})",
        f"{m['cpu']}, {m['usable_cores']} cores, {m['python']}, loop: {m['loop']}",
        f"machine noise at start: {_noise(meta['noise_start'])}",
        "",
    ]
    for name, block in results["scenarios"].items():
        out.append(f"== {scenarios[name].title} ==")
        for part in _scenario_tables(block, scenarios[name], md=False):
            out += [part, ""]
    if results.get("scale"):
        out.append("== Scale ==")
        for part in _scale_tables(results["scale"], md=False):
            out += [part, ""]
    out.append("== Targets ==")
    out.append(_table(["target", "verdict", "by how much"], _targets(results, scenarios), False))
    out.append("")
    if meta.get("noise_end"):
        out.append(f"machine noise at end: {_noise(meta['noise_end'])}")
    out.append(f"elapsed: {meta.get('elapsed_s', math.nan):.1f} s")
    return "\n".join(out)


METHOD = """\
## How it is measured

**Isolation.** Each system runs each scenario in a fresh child process, so one engine's threads,
worker processes and garbage cannot disturb the next one's figures. The scale measurements have
their own process too.

**Repetition.** Each system gets one warm-up run before each kind of figure (it starts worker
threads or processes, warms caches, and lets our scheduler measure that the trivial function
is tiny, which moves it onto the inline fast path); then every figure is the median of the
repeated runs, shown with their minimum and maximum. Garbage is collected before each run.

**Burst throughput.** Submit N tasks as fast as one caller can, then wait until every result is
available; tasks/s = N / (time from before the first submission to the moment the last result
is available). Every result is checked after the clock stops.

**Open-loop latency.** Arrival k is due at its intended time t0 + k / rate, whatever happened
to the arrivals before it. Its latency runs from that *intended* time to the moment its result
is available (the engine's completion callback), so a generator that falls behind, a slow
submit or a GC pause all count: a stalled generator cannot hide queueing (no coordinated
omission). Each system is run at half of its own median burst maximum, and at the seed's
rate when its burst maximum reaches it; the achieved rate (completions over the span from the
first intended arrival to the last completion) shows whether it kept up. "Gen. lag p99" is
how late the generator itself released arrivals: it is part of the latency, shown so that a
reader can tell the generator's share from the engine's.

**The two generators.** asyncio's timers, and uvloop's, have millisecond resolution (epoll
takes its timeout in milliseconds), so a generator that awaited `asyncio.sleep(1 / rate)`
would release arrivals up to a millisecond late and charge that to the engine. The generator
for loop-driven systems (ours, raw asyncio) therefore never sleeps on a timer when the next
arrival is less than 2 ms away: it yields with `await asyncio.sleep(0)`, which lets every
ready callback run, then reads `perf_counter` and submits every arrival whose intended time
has passed. Each pass through the loop takes a few microseconds, which bounds how late an
arrival is released. The generator for thread-driven systems (ThreadPoolExecutor, Ray, Dask)
runs on its own thread and blocks in `time.sleep` until the next intended time, releasing the
GIL as a thread waiting on a socket would; its timer slack is cut to 1 ns (`prctl`), so it
wakes within microseconds. A spinning generator thread would hold the GIL and starve the
worker threads it measures. Either way, when it wakes late it releases all arrivals due at
once and their lateness is counted.

**The raw asyncio floor.** One future per call, resolved by a `loop.call_soon` callback that
runs the function: the least machinery that still gives the caller something to await, with
no queue, priorities, states or limits. A task per call (`loop.create_task`) costs about twice
as much and adds nothing the floor needs. Its completion callback runs one loop pass after the
result is set, as asyncio does for every future. Our scheduler runs a function measured to be
tiny inline, inside `submit_nowait`, so its results can be available sooner than the floor's.

**Run lengths.** Bursts of 100,000 tasks (Ray 2,000, Dask 1,000); open-loop runs of 1 s of
arrivals (at least 1,000; at most 200,000, Ray 4,000, Dask 2,000). `--quick`: bursts of
20,000 (Ray 300, Dask 200) and open-loop runs of 0.2 s (at least 100).

**Shared machine.** This machine has 2 cores shared with other jobs, which pause ours at
random. Before each measured run a 20 ms probe spins reading the clock; if something else
paused it for more than 5 % of that time, the run waits (up to 15 s) and probes again
(`--quick` does not wait, to stay under a minute). Every system gets the same treatment; what
happens during a run stays in its figures. The notes under each scenario give the 1-minute
load average before and after each system's runs and how long it waited; the Machine section
gives the noise at the start and the end. Treat differences of a few percent as noise, and
compare systems within one run.
"""


def _noise_floor(meta: Mapping[str, Any]) -> str:
    parts = []
    for key, when in (("noise_start", "at the start"), ("noise_end", "at the end")):
        n = meta.get(key)
        if n:
            parts.append(f"p99 {_ms(n['null_p99'])} ms and p99.9 {_ms(n['null_p999'])} ms {when}")
    if not parts:
        return ""
    return (
        "For scale, this machine's own noise: with no engine at all, the loop generator at "
        f"{meta['noise_start']['null_rate']:,.0f}/s measured "
        + "; ".join(parts)
        + " (see Machine)."
    )


def render_markdown(
    results: Mapping[str, Any],
    scenarios: Mapping[str, Scenario],
    systems: Mapping[str, Any],
    analysis: str | None = None,
) -> str:
    """BENCHMARKS.md, complete: machine, command, method, tables, targets."""
    meta = results["meta"]
    m = meta["machine"]
    out = [
        "# Benchmarks",
        "",
        "This file is written by `python3 dev.py bench`: `python benchmarks/run.py`, then the "
        "reports of `bench_quantum.py`, `bench_vqe.py` and `bench_scaling.py` appended, each "
        "with its own command and machine. Edit the scripts, not this file. "
        "A claim we do not measure is a claim we do not make.",
        "",
        "## Command",
        "",
        "```",
        meta["command"].strip(),
        "```",
        "",
        f"Mode: {meta['mode']}; {meta['repeats']} runs per figure after one warm-up run; "
        f"workers = {meta['workers']}; run started {meta['started']}, took "
        f"{meta.get('elapsed_s', math.nan):.0f} s. `--quick` (under a minute, run by CI so the "
        "suite never rots) writes no file unless given `--output`.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable)",
        f"- RAM: {m['ram_gib']:.1f} GiB" if m.get("ram_gib") else "- RAM: unknown",
        f"- OS: {m['os']}",
        f"- Python: {m['python']}",
        f"- Event loop (ours and raw asyncio): {m['loop']}",
        f"- Package: {m['package']}" + (f", revision {m['revision']}" if m.get("revision") else ""),
        "- Peers: "
        + (", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items())) or "none installed")
        + "; concurrent.futures from the standard library",
        f"- Load average (1 min): {m['load_start']:.2f} at start, "
        f"{meta.get('load_end', math.nan):.2f} at the end",
        f"- Machine noise at the start: a bare Python loop reading the clock saw "
        f"{_noise(meta['noise_start'])}",
    ]
    if meta.get("noise_end"):
        out.append(f"- Machine noise at the end: {_noise(meta['noise_end'])}")
    out += [
        "",
        "## Targets",
        "",
        _table(["target", "verdict", "by how much"], _targets(results, scenarios), True),
        "",
        _noise_floor(meta),
        "",
    ]
    if analysis:
        out += [analysis.strip(), ""]
    for name, block in results["scenarios"].items():
        sc = scenarios[name]
        out += [f"## {sc.title}", "", sc.description, ""]
        for part in _scenario_tables(block, sc, md=True):
            out += [part, ""]
    if results.get("scale"):
        out += [
            "## Scale",
            "",
            "Tasks are queued behind a blocked slot: a scheduler with `workers=1` runs an async "
            "task waiting on an `asyncio.Event`, then N trivial tasks are submitted (the caller "
            "drops the handles unless said). Memory is what `tracemalloc` saw Python allocate "
            "for them after a full collection, the task's arguments included; "
            "ThreadPoolExecutor is measured the same way (one worker blocked on a "
            "`threading.Event`). tracemalloc slows allocation about tenfold, so it may count "
            "fewer tasks than are queued for the RSS figure; bytes per task do not depend on "
            "the count. RSS growth is measured first, in a fresh process whose heap has not "
            "grown before, and includes the allocator's own overhead. Cost per task: submitting "
            "N into the blocked scheduler, and from setting the event until all N have run "
            "(inline: the function is known to be tiny) and finished.",
            "",
        ]
        for part in _scale_tables(results["scale"], md=True):
            out += [part, ""]
    out += [METHOD, "## Systems", ""]
    for name, cls in systems.items():
        out.append(f"- **{cls.label}** (`{name}`): {cls.notes}")
    out.append("")
    return "\n".join(out)
