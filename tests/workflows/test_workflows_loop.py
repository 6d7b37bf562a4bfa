"""HybridWorkflow on the real runtime with scripted backends: data flow, batching, stop
conditions, progress, timings on a manual clock, failures and cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from _scripted import ScriptedBackend, spec
from logosq_os_scheduler import (
    InvalidTaskError,
    ManualClock,
    QuantumScheduler,
    SchedulerConfig,
    TaskFailedError,
    TaskPriority,
)
from logosq_os_scheduler.backends import CircuitJob, JobOutcome
from logosq_os_scheduler.workflows import (
    HybridWorkflow,
    IterationRecord,
    WorkflowError,
    WorkflowProgress,
    WorkflowStep,
    run_workflow,
    start_workflow,
)


def config(**kw: Any) -> SchedulerConfig:
    base: dict[str, Any] = {"workers": 2, "batch_window": 0.05, "retry_backoff": 0}
    base.update(kw)
    return SchedulerConfig(**base)


def qubits_as_counts(jobs: Sequence[CircuitJob]) -> list[JobOutcome]:
    """Each circuit's counts name its width, so outputs can be traced back to circuits."""
    return [{format(j.circuit.num_qubits, "b"): j.shots} for j in jobs]


async def test_each_step_gets_the_previous_output_and_iterations_chain() -> None:
    seen: list[tuple[str, Any]] = []

    def init() -> int:  # no argument: the seed's `|| initialize_parameters()`
        seen.append(("init", None))
        return 10

    def double(x: int) -> int:
        seen.append(("double", x))
        return 2 * x

    async def plus_one(x: int) -> int:
        seen.append(("plus_one", x))
        return x + 1

    wf = (
        HybridWorkflow("chain")
        .add_step(WorkflowStep.classical("init", init, once=True))
        .add_step(WorkflowStep.classical("double", double))
        .add_step(WorkflowStep.classical("plus_one", plus_one))
        .with_iterations(3)
    )
    async with QuantumScheduler(config=config()) as s:
        result = await run_workflow(s, wf)
    # Iteration 0: init -> 10, double -> 20, plus_one -> 21. Later iterations skip init and
    # start from the previous iteration's last output.
    assert seen == [
        ("init", None),
        ("double", 10),
        ("plus_one", 20),
        ("double", 21),
        ("plus_one", 42),
        ("double", 43),
        ("plus_one", 86),
    ]
    assert result.value == 87
    assert [r.output for r in result.history] == [21, 43, 87]
    assert dict(result.history[0].outputs) == {"init": 10, "double": 20, "plus_one": 21}
    assert dict(result.history[1].outputs) == {"double": 42, "plus_one": 43}
    assert result.stop_reason == "iterations" and result.iterations == 3
    assert len(result.task_ids) == 7 and len(set(result.task_ids)) == 7
    assert [len(r.task_ids) for r in result.history] == [3, 2, 2]
    assert result.task_ids == tuple(t for r in result.history for t in r.task_ids)


async def test_initial_input_goes_to_the_first_step_of_the_first_iteration() -> None:
    wf = (
        HybridWorkflow("initial")
        .add_step(WorkflowStep.classical("add", lambda xs: [*xs, len(xs)]))
        .with_initial([])
        .with_iterations(4)
    )
    async with QuantumScheduler(config=config()) as s:
        result = await run_workflow(s, wf)
    assert result.value == [0, 1, 2, 3]


async def test_a_list_of_circuits_is_one_batch_and_its_counts_keep_the_order() -> None:
    backend = ScriptedBackend("qpu", 8, per_job=16, script=qubits_as_counts)
    widths = [3, 1, 4, 2]

    def build(_: object) -> list[Any]:
        return [spec(n) for n in widths]

    wf = (
        HybridWorkflow("batch")
        .add_step(WorkflowStep.quantum("measure", build, shots=50))
        .add_step(WorkflowStep.classical("widths", lambda cs: [int(next(iter(c)), 2) for c in cs]))
        .with_iterations(2)
    )
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("qpu", backend)
        result = await run_workflow(s, wf)
    assert result.history[0].outputs["measure"] == [{"11": 50}, {"1": 50}, {"100": 50}, {"10": 50}]
    assert result.value == widths
    # Submitted together, the four circuits of an iteration ran as one backend job.
    quantum_ids = [[t for t in r.task_ids if t != r.task_ids[-1]] for r in result.history]
    assert backend.batches == quantum_ids


async def test_a_single_circuit_step_outputs_its_counts_and_honours_shots_and_pinning() -> None:
    a = ScriptedBackend("a", 4)
    b = ScriptedBackend("b", 4)
    wf = HybridWorkflow("pinned").add_step(
        WorkflowStep.quantum("bell", lambda _: spec(2, (0, 1)), shots=77, backend="b")
    )
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("a", a)
        await s.register_backend("b", b)
        result = await run_workflow(s, wf)
    assert result.value == {"00": 77}
    assert a.batches == [] and len(b.batches) == 1


async def test_the_workflow_priority_reaches_every_task_and_a_step_may_override_it() -> None:
    wf = (
        HybridWorkflow("prio")
        .add_step(WorkflowStep.classical("low", lambda x: x))
        .add_step(WorkflowStep.classical("urgent", lambda x: x, priority=TaskPriority.HIGH))
        .with_priority(TaskPriority.LOW)
        .with_iterations(3)
    )
    async with QuantumScheduler(config=config()) as s:
        await run_workflow(s, wf)
        by_priority = dict(s.metrics().by_priority)
    assert by_priority.get(TaskPriority.LOW) == 3
    assert by_priority.get(TaskPriority.HIGH) == 3
    assert by_priority.get(TaskPriority.NORMAL, 0) == 0


async def test_until_stops_after_the_iteration_that_satisfies_it() -> None:
    asked: list[int] = []

    def enough(history: Sequence[IterationRecord]) -> bool:
        asked.append(len(history))
        return history[-1].output >= 5

    wf = (
        HybridWorkflow("until")
        .add_step(WorkflowStep.classical("inc", lambda x: x + 1))
        .with_initial(0)
        .with_iterations(100)
        .until(enough)
    )
    async with QuantumScheduler(config=config()) as s:
        result = await run_workflow(s, wf)
    assert result.value == 5 and result.iterations == 5
    assert result.stop_reason == "condition"
    assert asked == [1, 2, 3, 4, 5]


async def test_until_converged_waits_for_patience_small_changes() -> None:
    # Outputs 8, 4, 2, 1, 0.5, 0.25, ...: changes 4, 2, 1, 0.5, 0.25 ...
    wf = (
        HybridWorkflow("converge")
        .add_step(WorkflowStep.classical("halve", lambda x: x / 2))
        .with_initial(16.0)
        .with_iterations(50)
        .until_converged(0.5, patience=2)
    )
    async with QuantumScheduler(config=config()) as s:
        result = await run_workflow(s, wf)
    # Changes of 0.5 (1 -> 0.5) and 0.25 (0.5 -> 0.25) are the first two in a row <= 0.5.
    assert [r.output for r in result.history] == [8.0, 4.0, 2.0, 1.0, 0.5, 0.25]
    assert result.stop_reason == "condition"


async def test_progress_is_reported_after_every_iteration() -> None:
    reports: list[WorkflowProgress] = []
    wf = (
        HybridWorkflow("progress")
        .add_step(WorkflowStep.classical("square", lambda x: x * x))
        .with_initial(2)
        .with_iterations(3)
        .on_progress(reports.append)
    )
    async with QuantumScheduler(config=config()) as s:
        await run_workflow(s, wf)
    assert [(p.iteration, p.total, p.value) for p in reports] == [
        (1, 3, 4),
        (2, 3, 16),
        (3, 3, 256),
    ]
    assert reports[-1].fraction == 1.0 and reports[0].workflow == "progress"


async def test_timings_are_read_on_the_scheduler_clock() -> None:
    clock = ManualClock()

    async def slow(x: int) -> int:
        clock.advance(1.5)
        return x

    async def slower(x: int) -> int:
        clock.advance(2.0)
        return x

    wf = (
        HybridWorkflow("timed")
        .add_step(WorkflowStep.classical("a", slow))
        .add_step(WorkflowStep.classical("b", slower))
        .with_initial(0)
        .with_iterations(2)
    )
    async with QuantumScheduler(config=config(), clock=clock) as s:
        result = await run_workflow(s, wf)
    assert [dict(r.step_seconds) for r in result.history] == [{"a": 1.5, "b": 2.0}] * 2
    assert [r.duration for r in result.history] == [3.5, 3.5]
    assert result.elapsed == 7.0
    assert result.step_seconds == {"a": 3.0, "b": 4.0}


async def test_a_failing_step_fails_the_workflow_with_where_and_why() -> None:
    def explode(x: int) -> int:
        if x == 2:
            raise ValueError("bad parameters")
        return x + 1

    wf = (
        HybridWorkflow("fails")
        .add_step(WorkflowStep.classical("step", explode))
        .with_initial(0)
        .with_iterations(5)
    )
    async with QuantumScheduler(config=config()) as s:
        with pytest.raises(WorkflowError) as info:
            await run_workflow(s, wf)
    err = info.value
    assert err.workflow == "fails" and err.step == "step" and err.iteration == 2
    assert [r.output for r in err.history] == [1, 2]
    assert isinstance(err.__cause__, TaskFailedError)
    assert isinstance(err.__cause__.__cause__, ValueError)
    assert "bad parameters" in str(err)


async def test_a_raising_callback_fails_the_workflow() -> None:
    def callback(_: WorkflowProgress) -> None:
        raise RuntimeError("display broke")

    wf = (
        HybridWorkflow("cb")
        .add_step(WorkflowStep.classical("s", lambda x: x))
        .on_progress(callback)
    )
    async with QuantumScheduler(config=config()) as s:
        with pytest.raises(WorkflowError) as info:
            await run_workflow(s, wf)
    assert info.value.step is None and isinstance(info.value.__cause__, RuntimeError)


async def test_cancelling_the_workflow_cancels_the_tasks_it_has_out() -> None:
    backend = ScriptedBackend("qpu", 4, per_job=8)
    backend.hold = asyncio.Event()  # jobs wait here until released
    wf = (
        HybridWorkflow("cancel")
        .add_step(WorkflowStep.quantum("measure", lambda _: [spec(2), spec(2), spec(2)]))
        .with_iterations(10)
    )
    async with QuantumScheduler(config=config(batch_window=0)) as s:
        await s.register_backend("qpu", backend)
        handle = start_workflow(s, wf)
        await backend.started.wait()  # the first job is running at the backend
        assert handle.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await handle
        backend.hold.set()
        await s.join()
        metrics = s.metrics()
    assert handle.done() and handle.cancel() is False
    assert len(handle.task_ids) == 3
    assert metrics.cancelled == 3 and metrics.completed == 0


async def test_cancelling_the_awaiting_task_cancels_a_running_classical_step() -> None:
    started = asyncio.Event()
    never = asyncio.Event()

    async def blocks(_: object) -> None:
        started.set()
        await never.wait()

    wf = HybridWorkflow("cancel2").add_step(WorkflowStep.classical("wait", blocks))
    async with QuantumScheduler(config=config()) as s:
        runner = asyncio.ensure_future(run_workflow(s, wf))
        await started.wait()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await s.join()
        assert s.metrics().cancelled == 1


async def test_the_handle_can_be_waited_on_and_cancelled_from_another_thread() -> None:
    release = threading.Event()

    def step(x: int) -> int:
        release.wait(5)
        return x + 1

    wf = (
        HybridWorkflow("threads")
        .add_step(WorkflowStep.classical("s", step, executor="thread"))
        .with_initial(1)
    )
    async with QuantumScheduler(config=config()) as s:
        handle = start_workflow(s, wf)
        outcome: list[object] = []
        waiter = threading.Thread(target=lambda: outcome.append(handle.result(5).value))
        waiter.start()
        release.set()
        result = await handle
        await asyncio.to_thread(waiter.join)
        with pytest.raises(Exception, match="await the handle"):
            handle.result()
    assert result.value == 2 and outcome == [2]


def test_steps_and_workflows_validate_their_fields() -> None:
    with pytest.raises(InvalidTaskError, match="one positional argument"):
        WorkflowStep.classical("two", lambda a, b: a)
    with pytest.raises(InvalidTaskError, match="shots"):
        WorkflowStep.quantum("q", lambda _: None, shots=0)
    with pytest.raises(InvalidTaskError, match="callable"):
        WorkflowStep.classical("x", 3)  # type: ignore[arg-type]
    wf = HybridWorkflow("w").add_step(WorkflowStep.classical("a", lambda x: x))
    with pytest.raises(InvalidTaskError, match="already has a step named 'a'"):
        wf.add_step(WorkflowStep.classical("a", lambda x: x))
    with pytest.raises(InvalidTaskError, match="iterations"):
        wf.with_iterations(0)
    with pytest.raises(InvalidTaskError, match="tolerance"):
        wf.until_converged(-1.0)
    with pytest.raises(InvalidTaskError, match="priority"):
        wf.with_priority("urgent")  # type: ignore[arg-type]
    assert repr(wf) == "<HybridWorkflow 'w' [a:classical] x1>"


async def test_an_empty_workflow_is_refused() -> None:
    async with QuantumScheduler(config=config()) as s:
        with pytest.raises(InvalidTaskError, match="no steps"):
            await run_workflow(s, HybridWorkflow("empty"))


def test_the_workflow_machinery_imports_with_the_standard_library_alone() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from logosq_os_scheduler.workflows import HybridWorkflow, WorkflowStep, run_hybrid\n"
        "heavy = {'qiskit', 'qiskit_aer', 'numpy', 'scipy'}\n"
        "loaded = heavy & {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
