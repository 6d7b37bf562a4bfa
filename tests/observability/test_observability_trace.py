"""Trace recording and Chrome trace / Perfetto export: exact layouts on the sans-I/O core with a
manual clock, and a real run of a few hundred mixed-priority tasks whose trace must validate
against independently recorded state histories."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from logosq_os_scheduler import (
    LoopClock,
    ManualClock,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskCancelledError,
    TaskFailedError,
    TaskPriority,
    TaskStatus,
    TaskTimeoutError,
)
from logosq_os_scheduler.core import SchedulerCore
from logosq_os_scheduler.observability._listeners import (
    ListenerChain,
    add_listener,
    remove_listener,
)
from logosq_os_scheduler.observability._trace import (
    TraceRecorder,
    TraceValidationError,
    load_trace,
    validate_trace,
)

S = TaskStatus
P = TaskPriority
History = dict[int, list[tuple[float, TaskStatus]]]


class HistoryLog:
    """An independent transition listener: the reference the trace is checked against."""

    def __init__(self) -> None:
        self.by_task: History = {}
        self.order: list[tuple[float, int, TaskStatus, TaskPriority]] = []

    def __call__(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        self.by_task.setdefault(task.task_id, []).append((now, new))
        self.order.append((now, task.task_id, new, task.priority))


def quantum(name: str, priority: TaskPriority = P.NORMAL) -> Task[Any]:
    qasm = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; h q[0];'
    return Task.quantum(name).with_circuit(qasm).with_priority(priority).build()


def events_of(trace: dict[str, object]) -> list[dict[str, Any]]:
    events = trace["traceEvents"]
    assert isinstance(events, list)
    return events


def by_phase(events: list[dict[str, Any]], ph: str, cat: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["ph"] == ph and (cat is None or e.get("cat") == cat)]


# -- exact layout on the sans-I/O core -----------------------------------------------------------


def test_core_run_with_retry_preemption_reroute_and_batch_exports_exactly() -> None:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(workers=2), clock)
    aer = core.add_pool("aer", 1, direct=False)
    ibm = core.add_pool("ibm", 1, direct=False)
    recorder = TraceRecorder.attach(core)
    log = HistoryLog()
    add_listener(core, log)

    c = Task.classical("prep").with_function(len, "ab").build()
    p = Task.classical("optimise").with_function(len, "ab").with_priority(P.LOW).build()
    u = Task.classical("calibrate").with_function(len, "ab").with_priority(P.CRITICAL).build()
    q1 = quantum("vqe-step", P.HIGH)
    q2 = quantum("sample", P.LOW)
    assert core.admit(c, core.classical, 0.0) is True
    assert core.admit(p, core.classical, 0.0) is True
    assert core.admit(q1, aer, 0.0) is False  # a backend's tasks leave in jobs
    assert core.admit(q2, aer, 0.0) is False
    assert core.take_batch(aer, 0.0, 2) == [q1, q2]  # one job of two circuits
    # t=1: the job fails; q1 is retried on aer, q2 rerouted to ibm.
    core.job_done(aer, 2, 0.0, 1.0)
    core.requeue(q1, aer, 1.0)
    core.requeue(q2, ibm, 1.0)
    assert core.take_batch(aer, 1.0, 2) == [q1]
    assert core.take_batch(ibm, 1.0, 2) == [q2]
    recorder.record_instant("aer", "breaker open", 1.0, failures=5)
    # t=2: both circuits complete; an urgent task arrives and p yields at a checkpoint.
    for q, pool in ((q1, aer), (q2, ibm)):
        core.transition(q, S.COMPLETED, 2.0)
        core.job_done(pool, 1, 1.0, 2.0)
    assert core.admit(u, core.classical, 2.0) is False
    p.resume = "at its checkpoint"
    core.preempt(p, core.classical, 2.0)
    assert core.next_ready(core.classical, 2.0) is u
    # t=2.5: c fails; p resumes in the freed slot, continuing its attempt.
    core.transition(c, S.FAILED, 2.5)
    core.release_task(c, 2.5)
    assert core.next_ready(core.classical, 2.5) is p
    p.resume = None
    for t, when in ((u, 3.0), (p, 4.0)):
        core.transition(t, S.COMPLETED, when)
        core.release_task(t, when)
    recorder.record_batch("aer", [q1.task_id, q2.task_id], 0.0, 1.0, job_id="job-1")
    recorder.record_batch("aer", [q1.task_id], 1.0, 2.0, job_id="job-2")
    recorder.record_batch("ibm", [q2.task_id], 1.0, 2.0, job_id="job-3")

    trace = recorder.chrome_trace()
    validate_trace(trace, log.by_task)
    validate_trace(trace, recorder.histories())
    assert recorder.histories() == log.by_task
    events = events_of(trace)

    names = {(e["pid"], e["tid"], e["name"]): e["args"].get("name") for e in by_phase(events, "M")}
    assert names[(1, 0, "process_name")] == "classical"
    assert names[(2, 0, "process_name")] == "aer"
    assert names[(3, 0, "process_name")] == "ibm"
    assert names[(1, 2, "thread_name")] == "worker 2"
    assert names[(2, 2, "thread_name")] == "lane 2"
    assert names[(2, 1001, "thread_name")] == "batches 1"

    runs = sorted(
        (e["pid"], e["ts"], e["tid"], e["dur"], e["args"]["task_id"], e["args"]["attempt"],
         e["args"]["outcome"], e["name"])
        for e in by_phase(events, "X", "task")
    )  # fmt: skip
    assert runs == [
        (1, 0.0, 1, 2e6, p.task_id, 1, "preempted", f"LOW {p.task_id}"),
        (1, 0.0, 2, 2.5e6, c.task_id, 1, "failed", f"NORMAL {c.task_id}"),
        (1, 2e6, 1, 1e6, u.task_id, 1, "completed", f"CRITICAL {u.task_id}"),
        (1, 2.5e6, 2, 1.5e6, p.task_id, 1, "completed", f"LOW {p.task_id}"),  # resumed
        (2, 0.0, 1, 1e6, q1.task_id, 1, "queued", f"HIGH {q1.task_id}"),
        (2, 0.0, 2, 1e6, q2.task_id, 1, "queued", f"LOW {q2.task_id}"),
        (2, 1e6, 1, 1e6, q1.task_id, 2, "completed", f"HIGH {q1.task_id}"),
        (3, 1e6, 1, 1e6, q2.task_id, 2, "completed", f"LOW {q2.task_id}"),
    ]
    # The trace's attempt numbers are the core's own count.
    assert (q1.attempts, q2.attempts, p.attempts) == (2, 2, 1)

    waits = sorted(
        (e["args"]["task_id"], e["pid"], e["ts"], e["args"]["outcome"], e["name"])
        for e in by_phase(events, "b", "queue")
    )
    assert waits == sorted(
        [
            (c.task_id, 1, 0.0, "running", "queued NORMAL"),
            (p.task_id, 1, 0.0, "running", "queued LOW"),
            (u.task_id, 1, 2e6, "running", "queued CRITICAL"),
            (q1.task_id, 2, 0.0, "running", "queued HIGH"),
            (q1.task_id, 2, 1e6, "running", "queued HIGH"),
            (q2.task_id, 2, 0.0, "running", "queued LOW"),
            (q2.task_id, 3, 1e6, "running", "queued LOW"),  # the pool it waited in: ibm
        ]
    )
    (preempted,) = by_phase(events, "b", "preempted")
    assert (preempted["pid"], preempted["ts"], preempted["args"]["outcome"]) == (
        1,
        2e6,
        "running",
    )

    instants = [
        (e["name"], e["pid"], e["tid"], e["s"], e["ts"], e["args"].get("task_id"))
        for e in by_phase(events, "i")
    ]
    assert instants == [
        ("retry", 2, 1, "t", 1e6, q1.task_id),
        ("retry", 2, 2, "t", 1e6, q2.task_id),
        ("rerouted", 3, 0, "p", 1e6, q2.task_id),
        ("breaker open", 2, 0, "p", 1e6, None),
        ("preempted", 1, 1, "t", 2e6, p.task_id),
        ("failed", 1, 2, "t", 2.5e6, c.task_id),
        ("resumed", 1, 0, "p", 2.5e6, p.task_id),
    ]
    rerouted = next(e for e in by_phase(events, "i") if e["name"] == "rerouted")
    assert rerouted["args"]["from"] == "aer"

    batches = [
        (e["pid"], e["tid"], e["ts"], e["dur"], e["args"]["task_ids"], e["args"]["job_id"])
        for e in by_phase(events, "X", "batch")
    ]
    assert batches == [
        (2, 1001, 0.0, 1e6, [q1.task_id, q2.task_id], "job-1"),
        (2, 1001, 1e6, 1e6, [q1.task_id], "job-2"),
        (3, 1001, 1e6, 1e6, [q2.task_id], "job-3"),
    ]

    depth = sorted(
        ((e["pid"], e["ts"], e["args"]) for e in by_phase(events, "C")), key=lambda d: d[:2]
    )
    zero = dict.fromkeys(["CRITICAL", "HIGH", "NORMAL", "LOW", "IDLE"], 0)
    assert depth == [
        (1, 0.0, zero),  # queued and started at once: the counter shows no wait
        (1, 2e6, {**zero, "LOW": 1}),  # p waits preempted; u came and went at once
        (1, 2.5e6, zero),
        (2, 0.0, zero),  # the job took both circuits at once; the retry waited no time
        (3, 1e6, zero),
    ]
    other = trace["otherData"]
    assert isinstance(other, dict)
    assert (other["tasks"], other["finished"], other["dropped_events"]) == (5, 5, 0)


def test_unfinished_tasks_end_at_the_export_horizon() -> None:
    clock = ManualClock(10.0)
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    recorder = TraceRecorder.attach(core)
    running = Task.classical("long").with_function(len, "x").build()
    waiting = Task.classical("next").with_function(len, "y").with_priority(P.CRITICAL).build()
    core.admit(running, core.classical, 10.0)
    core.admit(waiting, core.classical, 11.0)
    clock.set(12.5)
    trace = recorder.chrome_trace()
    validate_trace(trace, recorder.histories())
    events = events_of(trace)
    (run,) = by_phase(events, "X", "task")
    assert (run["ts"], run["dur"], run["args"]["outcome"]) == (0.0, 2.5e6, "unfinished")
    wait = next(
        e for e in by_phase(events, "e", "queue") if e["args"]["task_id"] == waiting.task_id
    )
    assert wait["ts"] == 2.5e6
    assert by_phase(events, "C")[-1]["args"]["CRITICAL"] == 1


def test_recording_begun_mid_run_marks_the_first_span() -> None:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    task = Task.classical("early").with_function(len, "x").build()
    core.admit(task, core.classical, 0.0)
    clock.set(1.0)
    recorder = TraceRecorder.attach(core)  # the task is RUNNING already
    core.transition(task, S.COMPLETED, 2.0)
    trace = recorder.chrome_trace()
    validate_trace(trace)
    (run,) = by_phase(events_of(trace), "X", "task")
    assert run["args"]["began_before_trace"] is True
    assert (run["ts"], run["dur"], run["args"]["outcome"]) == (0.0, 2e6, "completed")


def test_max_events_keeps_a_prefix_and_counts_what_it_dropped() -> None:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    recorder = TraceRecorder.attach(core, max_events=5)
    tasks = [Task.classical(f"t{i}").with_function(len, "x").build() for i in range(3)]
    for t in tasks:
        core.admit(t, core.classical, 0.0)
    for i, t in enumerate(tasks):
        clock.set(float(i + 1))
        core.transition(t, S.COMPLETED, clock.now())
        core.release_task(t, clock.now())
        core.next_ready(core.classical, clock.now())
    # 9 changes in all: 3 admissions, 3 starts, 3 completions.
    assert (len(recorder), recorder.dropped) == (5, 4)
    trace = recorder.chrome_trace()
    validate_trace(trace, recorder.histories())
    other = trace["otherData"]
    assert isinstance(other, dict)
    assert other["dropped_events"] == 4
    # Kept: t0's whole life and the admissions of t1 and t2, which stay queued in the trace.
    events = events_of(trace)
    assert [e["args"]["outcome"] for e in by_phase(events, "X", "task")] == ["completed"]
    waits = [(e["args"]["task_id"], e["args"]["outcome"]) for e in by_phase(events, "b", "queue")]
    ids = [t.task_id for t in tasks]
    assert waits == [(ids[0], "running"), (ids[1], "unfinished"), (ids[2], "unfinished")]


def test_listeners_chain_and_detach_independently() -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), ManualClock())
    log = HistoryLog()
    core.listener = log
    first = TraceRecorder.attach(core)
    second = TraceRecorder.attach(core)
    assert isinstance(core.listener, ListenerChain)
    task = Task.classical("t").with_function(len, "x").build()
    core.admit(task, core.classical, 0.0)
    assert len(first) == len(second) == len(log.order) == 2
    first.detach()
    assert not first.attached
    core.transition(task, S.COMPLETED, 1.0)
    assert (len(first), len(second), len(log.order)) == (2, 3, 3)
    second.detach()
    assert core.listener is log  # the original listener is back on its own
    assert remove_listener(core, second.record) is False
    assert remove_listener(core, log) is True
    assert core.listener is None


def test_attach_rejects_what_is_not_a_scheduler() -> None:
    with pytest.raises(TypeError, match="QuantumScheduler or a SchedulerCore"):
        TraceRecorder.attach(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_events"):
        TraceRecorder(max_events=0)


# -- the validator catches what it should ---------------------------------------------------------


def _small_trace() -> tuple[dict[str, object], History]:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    recorder = TraceRecorder.attach(core)
    t1 = Task.classical("a").with_function(len, "x").build()
    t2 = Task.classical("b").with_function(len, "x").build()
    core.admit(t1, core.classical, 0.0)
    core.admit(t2, core.classical, 0.0)
    core.transition(t1, S.COMPLETED, 1.0)
    core.release_task(t1, 1.0)
    core.next_ready(core.classical, 1.0)
    core.transition(t2, S.COMPLETED, 3.0)
    core.release_task(t2, 3.0)
    return recorder.chrome_trace(), recorder.histories()


def test_validator_reports_overlaps_gaps_unmatched_ends_and_history_mismatch() -> None:
    trace, histories = _small_trace()
    validate_trace(trace, histories)

    overlapping = json.loads(json.dumps(trace))
    runs = by_phase(overlapping["traceEvents"], "X", "task")
    runs[1]["ts"] = 0.5e6  # the second task now starts while the first still runs
    with pytest.raises(TraceValidationError) as info:
        validate_trace(overlapping)
    text = "\n".join(info.value.problems)
    assert "overlaps" in text
    assert "starts before the previous task slice on the lane ends" in text
    assert "leaves a gap before" not in text
    assert "overlaps the running span" in text  # its own queue span now overlaps its run

    unmatched = json.loads(json.dumps(trace))
    unmatched["traceEvents"] = [
        e for e in unmatched["traceEvents"] if not (e["ph"] == "e" and e["args"]["task_id"] == 2)
    ]
    unmatched["traceEvents"] = [e for e in unmatched["traceEvents"] if e["ph"] != "e"]
    with pytest.raises(TraceValidationError, match="never ends"):
        validate_trace(unmatched)

    shifted = {tid: [(t + 0.25, s) for t, s in h] for tid, h in histories.items()}
    with pytest.raises(TraceValidationError, match="history says"):
        validate_trace(trace, shifted)

    unnamed = json.loads(json.dumps(trace))
    unnamed["traceEvents"] = [e for e in unnamed["traceEvents"] if e.get("name") != "thread_name"]
    with pytest.raises(TraceValidationError, match="has no thread_name"):
        validate_trace(unnamed)

    with pytest.raises(TraceValidationError, match="no traceEvents"):
        validate_trace({"nothing": []})


def test_load_trace_reads_files_objects_and_bare_lists(tmp_path: Path) -> None:
    trace, _ = _small_trace()
    path = tmp_path / "t.trace.json"
    path.write_text(json.dumps(trace))
    from_file, other = load_trace(path)
    assert from_file == trace["traceEvents"]
    assert other == trace["otherData"]
    from_list, none = load_trace(events_of(trace))
    assert (from_list, none) == (trace["traceEvents"], {})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TraceValidationError, match="not JSON"):
        load_trace(tmp_path / "bad.json")


# -- a real run ---------------------------------------------------------------------------------


def add(a: int, b: int) -> int:
    return a + b


async def aadd(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def boom(i: int) -> None:
    raise ValueError(f"task {i} fails on purpose")


async def wait_for(event: asyncio.Event) -> str:
    await event.wait()
    return "released"


@pytest.mark.virtual_time
async def test_real_run_trace_validates_against_histories(tmp_path: Path) -> None:
    rng = random.Random(7)
    log = HistoryLog()
    # Aging off: the order check below is of strict priority, whatever virtual time passes.
    config = SchedulerConfig(workers=4, aging_threshold=None)
    async with QuantumScheduler(config=config, clock=LoopClock()) as s:
        recorder = TraceRecorder.attach(s)
        add_listener(s, log)
        gate = asyncio.Event()
        # Four tasks hold all four workers, so the whole burst below waits in the queue.
        gates = [
            await s.submit(Task.classical("gate").with_function(wait_for, gate)) for _ in "1234"
        ]
        never = asyncio.Event()  # never set: tasks waiting on it end by timing out
        runs_into_timeout = await s.submit(
            Task.classical("stuck")
            .with_function(wait_for, never)
            .with_priority(P.CRITICAL)
            .with_timeout(4)
        )
        plan: list[tuple[str, Any]] = []
        for i in range(300):
            priority = rng.choice(list(TaskPriority))
            builder = Task.classical(f"t{i}").with_priority(priority)
            if i % 20 == 3:
                plan.append(("fail", await s.submit(builder.with_function(boom, i))))
            elif i % 20 == 11:
                builder = builder.with_function(wait_for, never).with_timeout(2)
                plan.append(("queued-timeout", await s.submit(builder)))
            elif i % 2:
                plan.append(("ok", await s.submit(builder.with_function(aadd, i, 1))))
            else:
                plan.append(("ok", await s.submit(builder.with_function(add, i, 1))))
        # A second of virtual time: the burst's peak gets an instant of its own in the trace.
        await asyncio.sleep(1.0)
        for k in range(0, 300, 37):
            if plan[k][0] == "ok":
                assert plan[k][1].cancel() is True
                plan[k] = ("cancel", plan[k][1])
        # The queued time-outs fire while every worker is still held.
        for kind, handle in plan:
            if kind == "queued-timeout":
                with pytest.raises(TaskTimeoutError):
                    await handle
        assert gates[0].cancel() is True  # a running task cancelled
        gate.set()
        with pytest.raises(TaskTimeoutError):
            await runs_into_timeout  # started when a worker freed, then ran past its deadline
        await s.join()
        metrics = s.metrics()
        path = recorder.export_chrome_trace(tmp_path / "run.trace.json")

    for kind, handle in plan:
        if kind == "ok":
            assert (await handle).value == int(handle.name[1:]) + 1
        elif kind == "fail":
            with pytest.raises(TaskFailedError):
                await handle
        elif kind == "cancel":
            with pytest.raises(TaskCancelledError):
                await handle

    trace = json.loads(path.read_text())
    validate_trace(trace, log.by_task)
    assert recorder.histories() == log.by_task
    events = events_of(trace)

    # Each task's last span ends in its final status, and the totals match the snapshot.
    last: dict[int, tuple[float, int, str]] = {}
    for e in events:
        if e["ph"] in ("X", "b") and e.get("cat") in ("task", "queue"):
            # A zero-length wait and the run after it start at one instant: the run is later.
            key = (e["ts"], 1 if e["ph"] == "X" else 0, e["args"]["outcome"])
            tid = e["args"]["task_id"]
            last[tid] = max(last.get(tid, key), key)
    finals = Counter(outcome for _, _, outcome in last.values())
    assert len(last) == metrics.submitted == 305
    assert finals == {
        "completed": metrics.completed,
        "failed": metrics.failed,
        "cancelled": metrics.cancelled,
        "timed_out": metrics.timed_out,
    }
    assert (metrics.failed, metrics.timed_out, metrics.cancelled) == (15, 16, 9)
    instants = Counter(e["name"] for e in by_phase(events, "i"))
    assert (instants["failed"], instants["timed_out"], instants["cancelled"]) == (15, 16, 9)

    # One track per worker: four lanes, never more than the four slots.
    workers = [e for e in by_phase(events, "M") if e["name"] == "thread_name" and e["pid"] == 1]
    assert sorted(e["args"]["name"] for e in workers) == [f"worker {i}" for i in range(1, 5)]

    # The queue depth counter peaked with the whole burst waiting at once.
    peak = max(sum(e["args"].values()) for e in by_phase(events, "C"))
    assert peak == 301
    assert sum(by_phase(events, "C")[-1]["args"].values()) == 0

    # Queued work started in strict priority order (aging is off).
    gate_ids = {h.task_id for h in gates}
    started = [
        priority
        for _, tid, status, priority in log.order
        if status is S.RUNNING and tid not in gate_ids
    ]
    assert started == sorted(started, reverse=True)
    assert len(started) == metrics.completed + metrics.failed - 3 + 1  # + the stuck task


async def test_quantum_run_with_batches_retries_and_reroutes_validates() -> None:
    from _scripted import ScriptedBackend, all_zeros, spec
    from logosq_os_scheduler import BackendUnavailableError, TransientBackendError
    from logosq_os_scheduler.backends import CircuitJob, JobOutcome

    calls = {"n": 0}

    def flaky(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        calls["n"] += 1
        if calls["n"] % 3 == 1:
            raise TransientBackendError("flaky", "connection reset")
        return all_zeros(jobs)

    def gone(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        raise BackendUnavailableError("gone", "down for maintenance")

    backends = [
        ScriptedBackend("flaky", 5, per_job=4, script=flaky),
        ScriptedBackend("steady", 5, per_job=2),
        # The quickest on paper, so work goes there first, and has to move.
        ScriptedBackend("gone", 5, script=gone, job_seconds=0.0001),
    ]
    log = HistoryLog()
    config = SchedulerConfig(workers=2, batch_window=0, retry_backoff=0, breaker_cooldown=60)
    priorities = list(TaskPriority)
    async with QuantumScheduler(config=config) as s:
        for backend in backends:
            await s.register_backend(backend.name, backend)
        recorder = TraceRecorder.attach(s)
        add_listener(s, log)
        handles = []
        for i in range(40):
            builder = Task.quantum(f"q{i}").with_circuit(spec(2)).with_shots(10)
            handles.append(await s.submit(builder.with_priority(priorities[i % 5])))
        for i in range(10):
            handles.append(await s.submit(Task.classical(f"c{i}").with_function(abs, -i)))
        await s.join()
        m = s.metrics()
        trace = recorder.chrome_trace()

    validate_trace(trace, log.by_task)
    assert [h.status for h in handles] == [S.COMPLETED] * 50
    events = events_of(trace)
    processes = {e["args"]["name"] for e in by_phase(events, "M") if e["name"] == "process_name"}
    assert processes == {"classical", "flaky", "steady", "gone"}
    instants = Counter(e["name"] for e in by_phase(events, "i"))
    assert m.retries > 0 and m.breaker_trips == 1
    # Every retry is a run that went back to a queue; reroutes of running work show as such
    # (queued work moved off a tripped backend changes pool without a status change).
    assert instants["retry"] == m.retries
    assert 1 <= instants["rerouted"] <= m.reroutes
    runs_per_task = Counter(e["args"]["task_id"] for e in by_phase(events, "X", "task"))
    assert all(runs_per_task[h.task_id] == h.attempts for h in handles)
