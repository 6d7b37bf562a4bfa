"""The timeline picture: produced from a file, an object or a bare event list, for real runs,
for traces with batches and many lanes, and for an empty trace; its panels name their pools
and its legend says what the colours and markers mean."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import imread

from logosq_os_scheduler import (
    ManualClock,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler.core import SchedulerCore
from logosq_os_scheduler.observability import TraceRecorder
from logosq_os_scheduler.observability._timeline import render_timeline, timeline_figure

pytestmark = pytest.mark.observability

S = TaskStatus


def assert_png(path: Path, min_width: int = 600) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_width and height > 200
    # Something was drawn: not a single flat colour.
    assert pixels.std() > 0.05


def panels(fig: Figure) -> dict[str, Axes]:
    """The figure's panels by their y label, top to bottom."""
    return {ax.get_ylabel(): ax for ax in fig.axes}


def tick_labels(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


PRIORITY_LEGEND = ["colour: priority", "CRITICAL", "HIGH", "NORMAL", "LOW", "IDLE"]


def boom() -> None:
    raise ValueError("fails on purpose")


async def test_timeline_of_a_real_run(tmp_path: Path) -> None:
    async with QuantumScheduler(3) as s:
        recorder = TraceRecorder.attach(s)
        gate = asyncio.Event()

        async def wait() -> None:
            await gate.wait()

        holders = [await s.submit(Task.classical("hold").with_function(wait)) for _ in "abc"]
        priorities = list(TaskPriority)
        for i in range(60):
            builder = Task.classical(f"t{i}").with_function(abs, -i)
            await s.submit(builder.with_priority(priorities[i % 5]))
        await s.submit(Task.classical("bad").with_function(boom))
        gate.set()
        await s.join()
        trace = recorder.export_chrome_trace(tmp_path / "run.trace.json")
    assert all(h.done() for h in holders)
    png = render_timeline(trace, tmp_path / "run.png", title="a real run")
    assert png == tmp_path / "run.png"
    assert_png(png)

    fig = timeline_figure(trace, title="a real run")
    assert fig.get_suptitle() == "a real run"
    # One panel for the three worker lanes, named as one group, then the queue depth.
    by_label = panels(fig)
    assert list(by_label) == [
        "classical workers\n(3 lanes)",
        "queue depth\n(tasks waiting\nin all pools,\nby priority)",
    ]
    assert tick_labels(by_label["classical workers\n(3 lanes)"]) == ["workers (3)"]
    texts = legend_texts(fig)
    assert texts[: len(PRIORITY_LEGEND)] == PRIORITY_LEGEND
    assert texts[texts.index("how a run ended") :] == [
        "how a run ended",
        "completed: a bar with no marker",
        "failed",
    ]


def test_timeline_with_batches_retries_and_many_lanes(tmp_path: Path) -> None:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(workers=60), clock)
    aer = core.add_pool("aer", 2, direct=False)
    recorder = TraceRecorder.attach(core)
    tasks = [Task.classical(f"c{i}").with_function(abs, i).build() for i in range(60)]
    for t in tasks:
        core.admit(t, core.classical, 0.0)
    qasm = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; h q[0];'
    circuits = [Task.quantum(f"q{i}").with_circuit(qasm).build() for i in range(6)]
    for q in circuits:
        core.admit(q, aer, 0.0)
    first_job = core.take_batch(aer, 0.0, 3)
    clock.set(1.0)
    for t in tasks:
        core.transition(t, S.COMPLETED, 1.0)
        core.release_task(t, 1.0)
    core.job_done(aer, 3, 0.0, 1.0)
    recorder.record_batch("aer", [q.task_id for q in first_job], 0.0, 1.0)
    for q in first_job:
        core.requeue(q, aer, 1.0)  # the job failed: every circuit in it is retried
    jobs = [core.take_batch(aer, 1.0, 3), core.take_batch(aer, 1.0, 3)]
    clock.set(2.0)
    for job, status in zip(jobs, (S.COMPLETED, S.FAILED), strict=True):
        for q in job:
            core.transition(q, status, 2.0)
        core.job_done(aer, len(job), 1.0, 2.0)
        recorder.record_batch("aer", [q.task_id for q in job], 1.0, 2.0)
    trace = recorder.chrome_trace()
    events = trace["traceEvents"]
    assert isinstance(events, list)
    # From the bare list of events as well as from the object.
    assert_png(render_timeline(events, tmp_path / "events.png"))
    assert_png(render_timeline(trace, tmp_path / "object.png"))

    # The 60 worker lanes are one group; the backend is named, its job lanes apart.
    by_label = panels(timeline_figure(trace))
    workers, backend = "classical workers\n(60 lanes)", "backend aer\n(8 lanes)"
    assert list(by_label)[:2] == [workers, backend]
    assert tick_labels(by_label[workers]) == ["workers (60)"]
    assert tick_labels(by_label[backend]) == ["jobs (2)", "circuits (6)"]
    texts = legend_texts(timeline_figure(events))
    assert texts[: len(PRIORITY_LEGEND) + 1] == [*PRIORITY_LEGEND, "backend job"]
    assert {"how a run ended", "failed", "failed, retried"} <= set(texts)


def test_timeline_of_an_empty_trace(tmp_path: Path) -> None:
    recorder = TraceRecorder()
    png = render_timeline(recorder.chrome_trace(), tmp_path / "empty.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 0
    fig = timeline_figure(recorder.chrome_trace())
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["no task ran", "nothing waited"]
