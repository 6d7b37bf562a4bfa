"""A timeline picture of a trace: who ran what when, and how long the queue was (matplotlib).

:func:`render_timeline` reads a trace written by
:meth:`~logosq_os_scheduler.observability.TraceRecorder.export_chrome_trace` and draws, with a
shared time axis:

* above, a Gantt chart: one row per lane (worker slot or backend job slot, and batch lanes),
  one bar per run of a task, coloured by priority, with markers where a run ended in a
  failure, a time-out, a cancellation, a retry or a preemption;
* below, the queue depth over time, stacked by priority, summed over every pool.

It draws on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so it changes no global matplotlib state and needs no display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .._task import TaskPriority
from ._trace import PRIORITY_COLORS, TraceInput, load_trace

__all__ = ["render_timeline"]

_PRIORITIES = sorted(TaskPriority, reverse=True)
# How a run's end is marked: instant name -> (marker, colour, legend label).
_MARKERS: Mapping[str, tuple[str, str, str]] = {
    "failed": ("X", "#000000", "failed"),
    "timed_out": ("v", "#6a3d9a", "timed out"),
    "cancelled": ("s", "#7f7f7f", "cancelled"),
    "retry": ("o", "#b15928", "retried"),
    "preempted": ("D", "#e7298a", "preempted"),
}
_MAX_LABELLED_ROWS = 48


def _num(value: object, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def render_timeline(
    trace: TraceInput,
    output_png: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Draw a trace as a Gantt chart with the queue depth beneath, and save it as a PNG.

    Args:
        trace: A trace file's path, its parsed JSON object, or its list of events.
        output_png: Where to write the picture.
        title: A title above the chart (default: none but the axis labels).
        dpi: Resolution of the saved picture.

    Returns:
        The path written.

    Raises:
        OSError: If the trace cannot be read or the picture cannot be written.
        TraceValidationError: If the trace is not trace JSON.
    """
    events, other = load_trace(trace)

    process_names: dict[int, str] = {}
    thread_names: dict[tuple[int, int], str] = {}
    for ev in events:
        if ev.get("ph") != "M":
            continue
        args = ev.get("args")
        pid, tid = ev.get("pid"), ev.get("tid", 0)
        if not isinstance(args, Mapping) or not isinstance(pid, int) or not isinstance(tid, int):
            continue
        label = args.get("name")
        if ev.get("name") == "process_name" and isinstance(label, str):
            process_names[pid] = label
        elif ev.get("name") == "thread_name" and isinstance(label, str):
            thread_names[(pid, tid)] = label

    # Bars: (row key) -> priority -> [(start, width)]; batches drawn apart.
    bars: dict[tuple[int, int], dict[str, list[tuple[float, float]]]] = {}
    marks: dict[str, list[tuple[float, tuple[int, int]]]] = {}
    counters: list[tuple[float, int, Mapping[str, object]]] = []
    end = _num(other.get("end"))
    for ev in events:
        ph = ev.get("ph")
        pid, tid = ev.get("pid"), ev.get("tid", 0)
        if not isinstance(pid, int) or not isinstance(tid, int):
            continue
        ts = _num(ev.get("ts"))
        args = ev.get("args")
        args = args if isinstance(args, Mapping) else {}
        if ph == "X":
            dur = _num(ev.get("dur"))
            end = max(end, ts + dur)
            kind = "batch" if ev.get("cat") == "batch" else str(args.get("priority", "NORMAL"))
            bars.setdefault((pid, tid), {}).setdefault(kind, []).append((ts, dur))
        elif ph == "i" and ev.get("s") == "t":
            name = ev.get("name")
            if isinstance(name, str) and name in _MARKERS:
                marks.setdefault(name, []).append((ts, (pid, tid)))
        elif ph == "C" and ev.get("name") == "queue depth":
            counters.append((ts, pid, args))
            end = max(end, ts)

    rows = sorted(bars)
    row_of = {key: i for i, key in enumerate(rows)}
    scale, unit = (1e3, "ms") if end < 2e6 else (1e6, "s")

    n_rows = max(len(rows), 1)
    gantt_height = min(0.26 * n_rows + 0.8, 14.0)
    fig = Figure(figsize=(12, gantt_height + 2.6), layout="constrained")
    FigureCanvasAgg(fig)
    gantt, queue = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [gantt_height, 2.2]}
    )

    for row, by_priority in bars.items():
        y = row_of[row]
        for priority, spans in by_priority.items():
            ranges = [(start / scale, max(width / scale, 0.0)) for start, width in spans]
            if priority == "batch":
                gantt.broken_barh(
                    ranges, (y - 0.4, 0.8), facecolors="none", edgecolors="#333333", hatch="///"
                )
                continue
            member = TaskPriority.__members__.get(priority, TaskPriority.NORMAL)
            gantt.broken_barh(
                ranges, (y - 0.4, 0.8), facecolors=PRIORITY_COLORS[member], linewidth=0.2,
                edgecolors="white",
            )  # fmt: skip
    for name, points in marks.items():
        marker, colour, _label = _MARKERS[name]
        kept = [(ts / scale, row_of[row]) for ts, row in points if row in row_of]
        if kept:
            gantt.scatter(
                [p[0] for p in kept], [p[1] for p in kept], marker=marker, s=14, c=colour,
                zorder=3, linewidths=0.5,
            )  # fmt: skip

    gantt.set_ylim(n_rows - 0.5, -0.5)  # first lane on top
    gantt.set_yticks(range(len(rows)))
    if len(rows) <= _MAX_LABELLED_ROWS:
        labels = [
            f"{process_names.get(pid, pid)} · {thread_names.get((pid, tid), tid)}"
            for pid, tid in rows
        ]
        gantt.set_yticklabels(labels, fontsize=8)
    else:
        gantt.set_yticklabels([])
        gantt.set_ylabel(f"{len(rows)} lanes")
    gantt.grid(axis="x", alpha=0.3)
    if not rows:
        gantt.text(0.5, 0.5, "no task ran", ha="center", va="center", transform=gantt.transAxes)
    handles: list[Patch | Line2D] = [
        Patch(facecolor=PRIORITY_COLORS[p], label=p.name) for p in _PRIORITIES
    ]
    if any("batch" in by_priority for by_priority in bars.values()):
        handles.append(Patch(facecolor="none", edgecolor="#333333", hatch="///", label="batch"))
    for name, (marker, colour, label) in _MARKERS.items():
        if name in marks:
            handles.append(
                Line2D([], [], marker=marker, color=colour, linestyle="none", label=label)
            )
    gantt.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False
    )
    if title:
        gantt.set_title(title)

    times, stacks = _queue_depth(counters)
    if times:
        xs = [t / scale for t in times] + [end / scale]
        ys = [series + series[-1:] for series in stacks]
        queue.stackplot(
            xs,
            ys,
            colors=[PRIORITY_COLORS[p] for p in _PRIORITIES],
            step="post",
            labels=[p.name for p in _PRIORITIES],
        )
    else:
        queue.text(0.5, 0.5, "nothing waited", ha="center", va="center", transform=queue.transAxes)
    queue.set_ylabel("queue depth")
    queue.set_xlabel(f"time since the scheduler started ({unit})")
    queue.set_xlim(0, max(end / scale, 1e-9))
    queue.set_ylim(bottom=0)
    queue.grid(alpha=0.3)

    target = Path(output_png)
    fig.savefig(target, dpi=dpi, format="png")
    return target


def _queue_depth(
    counters: Sequence[tuple[float, int, Mapping[str, object]]],
) -> tuple[list[float], list[list[float]]]:
    """Total queue depth over all pools, per priority, at every time a pool's depth changed."""
    latest: dict[int, Mapping[str, object]] = {}
    times: list[float] = []
    stacks: list[list[float]] = [[] for _ in _PRIORITIES]
    for ts, pid, args in sorted(counters, key=lambda c: c[0]):
        latest[pid] = args
        if times and times[-1] == ts:
            for series in stacks:
                series.pop()
        else:
            times.append(ts)
        for series, p in zip(stacks, _PRIORITIES, strict=True):
            series.append(sum(_num(depth.get(p.name)) for depth in latest.values()))
    return times, stacks
