"""A timeline picture of a trace: who ran what when, and how long the queue was (matplotlib).

:func:`render_timeline` reads a trace written by
:meth:`~logosq_os_scheduler.observability.TraceRecorder.export_chrome_trace` and draws, with a
shared time axis:

* above, a Gantt chart in one panel per pool, each named on the left: the classical workers,
  each quantum backend (its job lanes, hatched, above its circuit lanes), and the hybrid
  algorithms. One bar per run of a task, coloured by priority; a marker where a run ended in
  a failure, a time-out, a cancellation, a retry or a preemption, and a row "queued" for
  tasks that ended or were rerouted while they waited. Dashed lines mark a backend's circuit
  breaker opening and closing;
* below, the queue depth over time, stacked by priority, summed over every pool.

Two legends on the right say what the colours (priorities) and the markers (how a run
ended) mean; a bar with no marker is a run that completed.

A pool with many lanes (a backend running a job of a hundred circuits has a hundred circuit
lanes) is drawn in a bounded height, so that small pools stay readable beside it.

It draws on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so it changes no global matplotlib state and needs no display.
:func:`timeline_figure` returns that figure without saving it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .._task import TaskPriority
from ._trace._load import TraceInput, load_trace
from ._trace._schema import PRIORITY_COLORS

__all__ = ["render_timeline", "timeline_figure"]

_PRIORITIES = sorted(TaskPriority, reverse=True)
# How a run (or a wait) ended: instant name -> (marker, colour, legend label). A completed
# run has no marker: its bar just ends. None of these colours is a priority's.
_MARKERS: Mapping[str, tuple[str, str, str]] = {
    "failed": ("X", "#000000", "failed"),
    "timed_out": ("v", "#6a3d9a", "timed out"),
    "cancelled": ("s", "#17becf", "cancelled"),
    "retry": ("o", "#8c564b", "failed, retried"),
    "preempted": ("D", "#e377c2", "preempted"),
    "rerouted": (">", "#bcbd22", "rerouted here"),
}
# Point events of a pool's tasks that were waiting, not running: drawn in the "queued" row.
_WAITING_EVENTS = frozenset({"failed", "timed_out", "cancelled", "rerouted"})
# A backend's circuit breaker: instant name -> (line style, legend label).
_BREAKER: Mapping[str, tuple[Literal["--", ":"], str]] = {
    "breaker open": ("--", "breaker opened"),
    "breaker closed": (":", "breaker closed"),
}
_BATCH = "batch"

# Heights in "rows" (one row is one lane at full height, about a quarter of an inch).
_ROW_INCHES = 0.26
_MAX_GANTT_INCHES = 13.0
_QUEUE_INCHES = 2.3
# The most rows a band of lanes takes; more lanes than that share the height.
_BAND_ROWS = {"workers": 12.0, "circuits": 8.0, "jobs": 2.0, "tasks": 3.0}
_MIN_PANEL_ROWS = 2.2  # room for a two-line label


def _num(value: object, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


@dataclasses.dataclass
class _Band:
    """Lanes drawn together in a pool's panel, under one tick label."""

    label: str
    lanes: list[int]  # thread ids, top to bottom; empty for the "queued" row
    rows: float  # the height the band takes
    top: float = 0.0

    @property
    def row_height(self) -> float:
        return self.rows / max(len(self.lanes), 1)

    def lane_top(self, index: int) -> float:
        return self.top + index * self.row_height


@dataclasses.dataclass
class _Pool:
    """One process of the trace: a pool of the scheduler, drawn as one panel."""

    pid: int
    name: str
    run_lanes: set[int] = dataclasses.field(default_factory=set)
    job_lanes: set[int] = dataclasses.field(default_factory=set)
    waiting: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    breaker: list[tuple[str, float]] = dataclasses.field(default_factory=list)

    @property
    def kind(self) -> str:
        """ "workers", "hybrid" or "backend", from the pool's name (as the scheduler names it)."""
        if self.name == "classical":
            return "workers"
        if self.name.startswith("hybrid:"):
            return "hybrid"
        return "backend"

    def title(self) -> str:
        n = len(self.run_lanes) + len(self.job_lanes)
        lanes = f"{n} lane{'s' if n != 1 else ''}"
        if self.kind == "workers":
            return f"classical workers\n({lanes})"
        if self.kind == "hybrid":
            return f"hybrid algorithms\n({lanes})"
        return f"backend {self.name}\n({lanes})"

    def bands(self) -> list[_Band]:
        out: list[_Band] = []
        if self.waiting:
            out.append(_Band("while queued", [], 1.0))
        if self.job_lanes:
            n = len(self.job_lanes)
            out.append(_Band("jobs", sorted(self.job_lanes), min(n, _BAND_ROWS["jobs"])))
        if self.run_lanes:
            n = len(self.run_lanes)
            label = {"workers": "workers", "backend": "circuits"}.get(self.kind, "tasks")
            out.append(_Band(label, sorted(self.run_lanes), min(n, _BAND_ROWS[label])))
        top = 0.0
        for band in out:
            band.top = top
            top += band.rows
        return out


@dataclasses.dataclass
class _Parsed:
    pools: list[_Pool]
    # (pid, tid) -> priority name or "batch" -> [(start us, duration us)]
    bars: dict[tuple[int, int], dict[str, list[tuple[float, float]]]]
    # instant name -> [(ts us, (pid, tid))], for runs that ended on a lane
    marks: dict[str, list[tuple[float, tuple[int, int]]]]
    counters: list[tuple[float, int, Mapping[str, object]]]
    end: float


def _parse(trace: TraceInput) -> _Parsed:
    events, other = load_trace(trace)
    pools: dict[int, _Pool] = {}

    def pool(pid: int) -> _Pool:
        if pid not in pools:
            pools[pid] = _Pool(pid, str(pid))
        return pools[pid]

    names: dict[int, str] = {}
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
        name = ev.get("name")
        if ph == "M":
            label = args.get("name")
            if name == "process_name" and isinstance(label, str):
                names[pid] = label
        elif ph == "X":
            dur = _num(ev.get("dur"))
            end = max(end, ts + dur)
            batch = ev.get("cat") == _BATCH
            kind = _BATCH if batch else str(args.get("priority", "NORMAL"))
            bars.setdefault((pid, tid), {}).setdefault(kind, []).append((ts, dur))
            (pool(pid).job_lanes if batch else pool(pid).run_lanes).add(tid)
        elif ph == "i" and isinstance(name, str):
            if ev.get("s") == "t" and name in _MARKERS:
                marks.setdefault(name, []).append((ts, (pid, tid)))
            elif name in _WAITING_EVENTS:
                pool(pid).waiting.append((name, ts))
            elif name in _BREAKER:
                pool(pid).breaker.append((name, ts))
        elif ph == "C" and name == "queue depth":
            counters.append((ts, pid, args))
            end = max(end, ts)
    for pid, p in pools.items():
        p.name = names.get(pid, p.name)
    # Workers first, then the hybrid algorithms that feed the backends, then the backends.
    order = {"workers": 0, "hybrid": 1, "backend": 2}
    ordered = sorted(pools.values(), key=lambda p: (order[p.kind], p.name, p.pid))
    return _Parsed(ordered, bars, marks, counters, end)


def timeline_figure(trace: TraceInput, *, title: str | None = None) -> Figure:
    """Draw a trace as a Gantt chart per pool with the queue depth beneath; return the figure.

    Use it to look at or change the picture before saving it; :func:`render_timeline` draws
    and saves in one call.

    Args:
        trace: A trace file's path, its parsed JSON object, or its list of events.
        title: A title above the chart (default: none).

    Returns:
        A :class:`matplotlib.figure.Figure` on an Agg canvas (no ``pyplot`` state). Its axes
        are one Gantt panel per pool, top to bottom, then the queue depth panel; each panel's
        y label names its pool.

    Raises:
        OSError: If the trace cannot be read.
        TraceValidationError: If the trace is not trace JSON.
    """
    parsed = _parse(trace)
    end = parsed.end
    scale, unit = (1e3, "ms") if end < 2e6 else (1e6, "s")

    layouts = [(p, p.bands()) for p in parsed.pools]
    heights = [max(sum(b.rows for b in bands), _MIN_PANEL_ROWS) for _p, bands in layouts]
    rows = sum(heights) or _MIN_PANEL_ROWS
    gantt_inches = min(_ROW_INCHES * rows + 0.4, _MAX_GANTT_INCHES)
    queue_rows = rows * _QUEUE_INCHES / gantt_inches
    fig = Figure(
        figsize=(13, gantt_inches + _QUEUE_INCHES + 1.0),
        layout=ConstrainedLayoutEngine(h_pad=0.02, hspace=0.0),
    )
    FigureCanvasAgg(fig)
    ratios = [*(heights or [_MIN_PANEL_ROWS]), queue_rows]
    axes: list[Axes] = list(
        fig.subplots(
            len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios}, squeeze=False
        )[:, 0]
    )
    panels, queue = axes[:-1], axes[-1]

    if not layouts:
        empty = panels[0]
        empty.set_yticks([])
        empty.text(0.5, 0.5, "no task ran", ha="center", va="center", transform=empty.transAxes)
    else:
        for ax, (pool, bands), height in zip(panels, layouts, heights, strict=True):
            _draw_pool(ax, pool, bands, height, parsed, scale)

    fig.legend(
        handles=_legend_handles(parsed), loc="outside right upper", fontsize=9,
        alignment="left", frameon=False, handletextpad=0.6,
    )  # fmt: skip
    legend = fig.legends[-1]
    for text in legend.get_texts():
        if text.get_text() in _HEADINGS:
            text.set_fontweight("bold")
    if title:
        fig.suptitle(title, fontsize=12)

    times, stacks = _queue_depth(parsed.counters)
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
    _side_label(queue, "queue depth\n(tasks waiting\nin all pools,\nby priority)")
    queue.tick_params(labelsize=9)
    queue.set_xlabel(f"time since the scheduler started ({unit})", fontsize=10)
    queue.set_xlim(0, max(end / scale, 1e-9))
    queue.set_ylim(bottom=0)
    queue.grid(alpha=0.3)
    return fig


_HEADINGS = ("colour: priority", "how a run ended")


def _legend_handles(parsed: _Parsed) -> list[Patch | Line2D]:
    """One legend in two parts: what the colours mean, then what the markers and lines mean."""

    def heading(text: str) -> Patch:
        return Patch(visible=False, label=text)

    handles: list[Patch | Line2D] = [heading(_HEADINGS[0])]
    handles += [Patch(facecolor=PRIORITY_COLORS[p], label=p.name) for p in _PRIORITIES]
    if any(_BATCH in by_kind for by_kind in parsed.bars.values()):
        handles.append(
            Patch(facecolor="none", edgecolor="#333333", hatch="///", label="backend job")
        )
    handles += [heading(""), heading(_HEADINGS[1])]
    handles.append(Patch(visible=False, label="completed: a bar with no marker"))
    seen = set(parsed.marks) | {n for p in parsed.pools for n, _ts in p.waiting}
    for name, (marker, colour, label) in _MARKERS.items():
        if name in seen:
            handles.append(
                Line2D([], [], marker=marker, color=colour, markeredgecolor="white",
                       markersize=8, linestyle="none", label=label)
            )  # fmt: skip
    breakers = {n for p in parsed.pools for n, _ts in p.breaker}
    for name, (style, label) in _BREAKER.items():
        if name in breakers:
            handles.append(Line2D([], [], color="#000000", linestyle=style, label=label))
    return handles


def _side_label(ax: Axes, text: str) -> None:
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=10, labelpad=8)


def _draw_pool(
    ax: Axes, pool: _Pool, bands: list[_Band], height: float, parsed: _Parsed, scale: float
) -> None:
    where: dict[int, tuple[float, float]] = {}  # tid -> (top, row height)
    for band in bands:
        for i, tid in enumerate(band.lanes):
            where[tid] = (band.lane_top(i), band.row_height)
    for tid, (top, row) in where.items():
        for kind, spans in parsed.bars.get((pool.pid, tid), {}).items():
            ranges = [(start / scale, max(width / scale, 0.0)) for start, width in spans]
            extent = (top + 0.1 * row, 0.8 * row)
            if kind == _BATCH:
                ax.broken_barh(
                    ranges, extent, facecolors="none", edgecolors="#333333", hatch="///",
                    linewidth=0.6,
                )  # fmt: skip
                continue
            member = TaskPriority.__members__.get(kind, TaskPriority.NORMAL)
            # Thin rows (many lanes in little height) go without the white edges that
            # separate neighbouring bars, or the edges would hide the colour.
            ax.broken_barh(
                ranges, extent, facecolors=PRIORITY_COLORS[member],
                edgecolors="white" if row >= 0.5 else "none", linewidth=0.3,
            )  # fmt: skip
    for name, points in parsed.marks.items():
        marker, colour, _label = _MARKERS[name]
        kept = [
            (ts / scale, where[tid][0] + where[tid][1] / 2)
            for ts, (pid, tid) in points
            if pid == pool.pid and tid in where
        ]
        if kept:
            ax.scatter(
                [x for x, _y in kept], [y for _x, y in kept], marker=marker, s=30, c=colour,
                edgecolors="white", linewidths=0.5, zorder=3, clip_on=False,
            )  # fmt: skip
    queued = next((b for b in bands if b.label == "while queued"), None)
    if queued is not None:
        for name in _WAITING_EVENTS:
            xs = [ts / scale for n, ts in pool.waiting if n == name]
            if xs:
                marker, colour, _label = _MARKERS[name]
                ax.scatter(
                    xs, [queued.top + 0.5] * len(xs), marker=marker, s=30, c=colour,
                    edgecolors="white", linewidths=0.5, zorder=3, clip_on=False,
                )  # fmt: skip
    for name, ts in pool.breaker:
        style, _label = _BREAKER[name]
        ax.axvline(ts / scale, color="#000000", linestyle=style, linewidth=1.2, zorder=4)

    for band in bands[1:]:
        ax.axhline(band.top, color="#999999", linewidth=0.5)
    ax.set_ylim(height, 0)  # first lane on top
    ax.set_yticks(
        [b.top + b.rows / 2 for b in bands],
        [f"{b.label} ({len(b.lanes)})" if b.lanes else b.label for b in bands],
        fontsize=9,
    )
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelsize=9)
    ax.grid(axis="x", alpha=0.3)
    _side_label(ax, pool.title())


def render_timeline(
    trace: TraceInput,
    output_png: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Draw a trace as a Gantt chart with the queue depth beneath, and save it as a PNG.

    See :func:`timeline_figure` for what the picture shows.

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
    fig = timeline_figure(trace, title=title)
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
