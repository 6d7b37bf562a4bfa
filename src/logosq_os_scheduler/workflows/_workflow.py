"""HybridWorkflow: a loop of classical and quantum steps, each run as scheduler tasks.

A workflow is a list of steps run in order, iteration after iteration. Every step runs as one
task (classical) or a set of tasks submitted together (quantum), so each gets the workflow's
priority, routing, batching and retries. The driver loop itself is a plain coroutine: it holds
no worker slot while it waits, so a workflow never starves its own classical steps.

Data flow, precisely:

* Step ``j > 0`` of an iteration gets the output of step ``j - 1`` of the same iteration.
* Step ``0`` of iteration ``i > 0`` gets the output of the last step of iteration ``i - 1``.
* Step ``0`` of iteration ``0`` gets the workflow's initial input (``with_initial``, default
  ``None``).
* A step built with ``once=True`` runs in iteration ``0`` only; in later iterations it is
  skipped and passes its input through unchanged (the seed's ``init_params`` step).
* A classical step's function is called with its input if it takes one positional argument,
  and with no argument if it takes none (the seed writes ``|| initialize_parameters()``).
* A quantum step's ``circuit_builder`` is called with its input and returns one circuit or a
  list of circuits. A list is submitted together, so the scheduler can batch it into one
  backend job; the step's output is the counts ``{bitstring: n}`` of the one circuit, or the
  list of counts in the order of the circuits.

The iteration's output is the output of its last step. After each iteration the progress
callback (if any) is called, then the stop condition (if any) is asked whether to stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import enum
import functools
import inspect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .._coerce import HintingEnumType, coerce_enum
from .._context import TaskContext, _current_task
from .._errors import InvalidTaskError, SchedulerError
from .._result import TaskResult
from .._task import Task, TaskPriority, transient

if TYPE_CHECKING:
    from .._handle import TaskHandle
    from .._protocols import WorkflowRuntime

__all__ = [
    "HybridWorkflow",
    "IterationRecord",
    "StepKind",
    "WorkflowError",
    "WorkflowHandle",
    "WorkflowProgress",
    "WorkflowResult",
    "WorkflowStep",
    "run_workflow",
    "start_workflow",
]

StopReason = Literal["iterations", "condition"]


class WorkflowError(SchedulerError):
    """A workflow stopped because one of its steps (or its callback) failed.

    The step's own error (for a task, its :class:`~logosq_os_scheduler.TaskError`) is
    ``__cause__``.

    Attributes:
        workflow: The workflow's name.
        step: The step that failed, or None when the progress callback or the stop
            condition raised.
        iteration: The 0-based iteration it failed in.
        history: The iterations that completed before the failure.
    """

    def __init__(
        self,
        workflow: str,
        step: str | None,
        iteration: int,
        problem: str,
        history: tuple[IterationRecord, ...],
    ) -> None:
        where = f"step {step!r}" if step is not None else "its callback"
        super().__init__(
            f"workflow {workflow!r} failed in {where} of iteration {iteration}: {problem}"
        )
        self.workflow = workflow
        self.step = step
        self.iteration = iteration
        self.history = history


class StepKind(enum.Enum, metaclass=HintingEnumType):
    """What a workflow step runs."""

    CLASSICAL = "classical"
    QUANTUM = "quantum"


def _takes_input(fn: Callable[..., Any], field: str, where: str) -> bool:
    """Whether ``fn`` is called with the step's input (one positional argument) or without.

    Raises:
        InvalidTaskError: If it can be called neither way.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True  # a builtin without a signature: assume it takes the input
    try:
        sig.bind(None)
    except TypeError:
        pass
    else:
        return True
    try:
        sig.bind()
    except TypeError:
        raise InvalidTaskError(
            field,
            f"{getattr(fn, '__name__', fn)!r} must take one positional argument (the previous "
            "step's output) or none",
            where=where,
        ) from None
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowStep:
    """One step of a :class:`HybridWorkflow`. Build it with :meth:`classical` or :meth:`quantum`.

    Attributes:
        name: The step's name, unique within its workflow.
        kind: Classical or quantum.
        function: The classical step's function (sync or async), else None.
        circuit_builder: The quantum step's builder, else None.
        shots: Shots per circuit (quantum steps).
        backend: The backend the quantum step's circuits are pinned to, or None to route.
        priority: This step's priority, or None for the workflow's.
        once: Whether the step runs in the first iteration only.
        executor: Where a classical step's function runs (see ``TaskBuilder.with_executor``),
            or None for the scheduler's choice.
        takes_input: Whether the function is called with the previous output.

    Raises:
        InvalidTaskError: If ``kind`` or ``priority`` is not a member, a member's name (any
            case) or a member's value (the other fields are checked by :meth:`classical` and
            :meth:`quantum`).
    """

    name: str
    kind: StepKind
    function: Callable[..., Any] | None = None
    circuit_builder: Callable[[Any], Any] | None = None
    shots: int = 1024
    backend: str | None = None
    priority: TaskPriority | None = None
    once: bool = False
    executor: str | None = None
    takes_input: bool = True

    def __post_init__(self) -> None:
        # The enum fields follow the package's one coercion rule even when the step is built
        # directly; classical() and quantum() have already checked them (the fast path).
        if type(self.kind) is not StepKind:
            object.__setattr__(
                self,
                "kind",
                coerce_enum(
                    StepKind, self.kind, field="kind", error=_error("WorkflowStep", "kind")
                ),
            )
        if self.priority is not None and type(self.priority) is not TaskPriority:
            object.__setattr__(self, "priority", _check_priority(self.priority, "WorkflowStep"))

    @staticmethod
    def classical(
        name: str,
        function: Callable[..., Any],
        *,
        once: bool = False,
        priority: TaskPriority | None = None,
        executor: str | None = None,
    ) -> WorkflowStep:
        """A step that runs ``function`` as a classical task.

        Args:
            name: The step's name.
            function: Called with the previous step's output (or with no argument, if it
                takes none); may be ``async def``. What it returns is the step's output.
            once: Run in the first iteration only (an initialisation step).
            priority: Override the workflow's priority for this step.
            executor: Where the function runs (``"inline"``, ``"thread"``, ...).

        Raises:
            InvalidTaskError: If a field is malformed (the message names it, as in
                ``invalid WorkflowStep.classical(priority=...)``).
        """
        call = "WorkflowStep.classical"
        _check_name(name, call)
        if not callable(function):
            raise _error(call, "function")(
                "function", f"must be callable, got {type(function).__name__}"
            )
        return WorkflowStep(
            name=name,
            kind=StepKind.CLASSICAL,
            function=function,
            priority=_check_priority(priority, call),
            once=_check_bool("once", once, call),
            executor=executor,
            takes_input=_takes_input(function, "function", f"{call}(function=...)"),
        )

    @staticmethod
    def quantum(
        name: str,
        circuit_builder: Callable[[Any], Any],
        *,
        shots: int = 1024,
        backend: str | None = None,
        once: bool = False,
        priority: TaskPriority | None = None,
    ) -> WorkflowStep:
        """A step that builds circuits from its input and runs them as quantum tasks.

        Args:
            name: The step's name.
            circuit_builder: Called with the previous step's output; returns a circuit
                (``QuantumCircuit``, OpenQASM text, ...) or a list of circuits, or an
                awaitable of either. It runs on the event loop: keep it quick.
            shots: Shots per circuit.
            backend: Pin the circuits to this backend (default: the routing rules decide).
            once: Run in the first iteration only.
            priority: Override the workflow's priority for this step.

        Raises:
            InvalidTaskError: If a field is malformed (the message names it, as in
                ``invalid WorkflowStep.quantum(shots=...)``).
        """
        call = "WorkflowStep.quantum"
        _check_name(name, call)
        if not callable(circuit_builder):
            raise _error(call, "circuit_builder")(
                "circuit_builder", f"must be callable, got {type(circuit_builder).__name__}"
            )
        if not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0:
            raise _error(call, "shots")("shots", f"must be a positive integer, got {shots!r}")
        if backend is not None and (not isinstance(backend, str) or not backend):
            raise _error(call, "backend")("backend", f"must be a backend name, got {backend!r}")
        return WorkflowStep(
            name=name,
            kind=StepKind.QUANTUM,
            circuit_builder=circuit_builder,
            shots=shots,
            backend=backend,
            priority=_check_priority(priority, call),
            once=_check_bool("once", once, call),
        )


def _error(call: str, param: str | None = None) -> Callable[[str, str], InvalidTaskError]:
    """The InvalidTaskError of a bad value given to ``call`` (as its ``param``, when the call
    takes several): its message names the call the user wrote."""
    where = call if param is None else f"{call}({param}=...)"
    return functools.partial(InvalidTaskError, where=where)


def _check_name(name: object, call: str) -> None:
    if not isinstance(name, str) or not name:
        raise _error(call, "name")("name", f"must be a non-empty string, got {name!r}")


def _check_bool(field: str, value: object, call: str) -> bool:
    if not isinstance(value, bool):
        raise _error(call, field)(field, f"must be True or False, got {value!r}")
    return value


def _check_priority(priority: object, call: str) -> TaskPriority | None:
    """None, or the priority by the package's one rule (a member, a name, a value)."""
    if priority is None or type(priority) is TaskPriority:
        return priority
    return coerce_enum(TaskPriority, priority, field="priority", error=_error(call, "priority"))


@dataclasses.dataclass(frozen=True, slots=True)
class IterationRecord:
    """What one iteration of a workflow did.

    Attributes:
        index: The iteration's 0-based index.
        output: The output of its last step (the next iteration's input).
        outputs: The output of every step that ran, by step name (``once`` steps appear in
            iteration 0 only).
        started_at: When it started, on the scheduler's clock (seconds).
        finished_at: When it finished, on the scheduler's clock.
        step_seconds: How long each step took, by step name (submission to last result).
        task_ids: The scheduler tasks it ran, in submission order.
    """

    index: int
    output: Any
    outputs: Mapping[str, Any]
    started_at: float
    finished_at: float
    step_seconds: Mapping[str, float]
    task_ids: tuple[int, ...]

    @property
    def duration(self) -> float:
        """Seconds the iteration took."""
        return self.finished_at - self.started_at


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowProgress:
    """Where a running workflow is, as given to its progress callback after each iteration.

    Attributes:
        workflow: The workflow's name.
        iteration: How many iterations have completed (1 after the first).
        total: The most iterations it will run (``with_iterations``).
        value: The last iteration's output.
        elapsed: Seconds since the workflow started, on the scheduler's clock.
    """

    workflow: str
    iteration: int
    total: int
    value: Any
    elapsed: float

    @property
    def fraction(self) -> float:
        """Completed share of the iteration budget, from 0 to 1."""
        return self.iteration / self.total if self.total else 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowResult:
    """What a finished workflow produced.

    Attributes:
        name: The workflow's name.
        value: The final output (the last iteration's output).
        history: Every iteration, in order.
        stop_reason: ``"iterations"`` if it ran its full budget, ``"condition"`` if its stop
            condition ended it early.
        started_at: When it started, on the scheduler's clock.
        finished_at: When it finished, on the scheduler's clock.
        task_ids: Every scheduler task it ran, in submission order.
    """

    name: str
    value: Any
    history: tuple[IterationRecord, ...]
    stop_reason: StopReason
    started_at: float
    finished_at: float
    task_ids: tuple[int, ...]

    @property
    def iterations(self) -> int:
        """How many iterations ran."""
        return len(self.history)

    @property
    def elapsed(self) -> float:
        """Seconds from start to finish."""
        return self.finished_at - self.started_at

    @property
    def step_seconds(self) -> dict[str, float]:
        """Total seconds spent in each step over all iterations, by step name."""
        totals: dict[str, float] = {}
        for record in self.history:
            for name, seconds in record.step_seconds.items():
                totals[name] = totals.get(name, 0.0) + seconds
        return totals


StopCondition = Callable[[Sequence[IterationRecord]], bool]
ProgressCallback = Callable[[WorkflowProgress], None]


class HybridWorkflow:
    """A hybrid quantum-classical loop: steps run in order, for a number of iterations.

    Build it step by step (every method returns the workflow) and run it with
    ``await run_workflow(scheduler, workflow)``::

        workflow = (
            HybridWorkflow("vqe_h2")
            .add_step(WorkflowStep.classical("init_params", init, once=True))
            .add_step(WorkflowStep.quantum("measure_energy", build_circuits, shots=4096))
            .add_step(WorkflowStep.classical("update_params", optimizer_step))
            .with_iterations(100)
            .until_converged(1e-6, value=lambda out: out.energy)
        )

    See the module documentation for exactly what each step receives. A workflow can be run
    several times; each run starts afresh.

    Args:
        name: The workflow's name (used in task names and errors).

    Raises:
        InvalidTaskError: From any method given a bad value, naming the call and the field
            (``invalid HybridWorkflow.with_iterations: ...``).
    """

    __slots__ = ("_name", "_steps", "_iterations", "_stop", "_priority", "_progress", "_initial")

    def __init__(self, name: str) -> None:
        _check_name(name, "HybridWorkflow")
        self._name = name
        self._steps: list[WorkflowStep] = []
        self._iterations = 1
        self._stop: StopCondition | None = None
        self._priority = TaskPriority.NORMAL
        self._progress: ProgressCallback | None = None
        self._initial: Any = None

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self._name

    @property
    def steps(self) -> tuple[WorkflowStep, ...]:
        """The steps, in order."""
        return tuple(self._steps)

    @property
    def iterations(self) -> int:
        """The iteration budget."""
        return self._iterations

    @property
    def priority(self) -> TaskPriority:
        """The priority of the workflow's tasks (a step may override it)."""
        return self._priority

    def add_step(self, step: WorkflowStep) -> HybridWorkflow:
        """Append a step. Step names must be unique within the workflow."""
        error = _error("HybridWorkflow.add_step")
        if not isinstance(step, WorkflowStep):
            raise error("step", f"expected a WorkflowStep, got {type(step).__name__}")
        if any(s.name == step.name for s in self._steps):
            raise error("step", f"the workflow already has a step named {step.name!r}")
        self._steps.append(step)
        return self

    def with_iterations(self, iterations: int) -> HybridWorkflow:
        """Set the most iterations to run (default 1)."""
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
            raise _error("HybridWorkflow.with_iterations")(
                "iterations", f"must be a positive integer, got {iterations!r}"
            )
        self._iterations = iterations
        return self

    def with_priority(self, priority: TaskPriority) -> HybridWorkflow:
        """Set the priority of every task the workflow submits (default ``NORMAL``).

        Args:
            priority: A :class:`TaskPriority`, or its name in any case or its value.
        """
        self._priority = coerce_enum(
            TaskPriority,
            priority,
            field="priority",
            error=_error("HybridWorkflow.with_priority"),
        )
        return self

    def with_initial(self, value: object) -> HybridWorkflow:
        """Set the input of the first step of the first iteration (default None)."""
        self._initial = value
        return self

    def until(self, condition: StopCondition) -> HybridWorkflow:
        """Stop early once ``condition(history)`` returns True.

        It is asked after every iteration, with every iteration so far (oldest first); the
        iteration that satisfied it is the last one.
        """
        if not callable(condition):
            raise _error("HybridWorkflow.until")(
                "until", f"must be callable, got {type(condition).__name__}"
            )
        self._stop = condition
        return self

    def until_converged(
        self,
        tolerance: float,
        *,
        value: Callable[[Any], float] = float,
        patience: int = 1,
    ) -> HybridWorkflow:
        """Stop early once the iteration output has stopped changing.

        Stops after an iteration when, for the last ``patience`` pairs of consecutive
        iterations, ``abs(value(output_i) - value(output_i-1)) <= tolerance``.

        Args:
            tolerance: The largest change that counts as converged (>= 0).
            value: Extracts the number to watch from an iteration's output (default
                ``float``).
            patience: How many consecutive small changes are needed.
        """
        if (
            not isinstance(tolerance, (int, float))
            or isinstance(tolerance, bool)
            or not math.isfinite(tolerance)
            or tolerance < 0
        ):
            raise _error("HybridWorkflow.until_converged", "tolerance")(
                "tolerance", f"must be a finite number >= 0, got {tolerance!r}"
            )
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise _error("HybridWorkflow.until_converged", "patience")(
                "patience", f"must be a positive integer, got {patience!r}"
            )

        def converged(history: Sequence[IterationRecord]) -> bool:
            if len(history) <= patience:
                return False
            values = [float(value(r.output)) for r in history[-patience - 1 :]]
            return all(abs(b - a) <= tolerance for a, b in itertools.pairwise(values))

        return self.until(converged)

    def on_progress(self, callback: ProgressCallback) -> HybridWorkflow:
        """Call ``callback(progress)`` after every iteration, on the scheduler's loop.

        It must be quick and must not block; an exception from it fails the workflow.
        """
        if not callable(callback):
            raise _error("HybridWorkflow.on_progress")(
                "on_progress", f"must be callable, got {type(callback).__name__}"
            )
        self._progress = callback
        return self

    async def run(
        self,
        scheduler: WorkflowRuntime,
        *,
        priority: TaskPriority | None = None,
        backend: str | None = None,
        optimizer: object | None = None,
    ) -> WorkflowResult:
        """Run the workflow to its end: what a hybrid task with this workflow as its
        algorithm (``Task.hybrid(name).with_algorithm(workflow)``) runs. As such a task on a
        scheduler with a journal, it goes on from its last finished iteration after a restart
        (its steps' functions must then be top-level defs). ``priority``, ``backend`` and
        ``optimizer`` are the task's; the workflow's steps keep their own."""
        return await run_workflow(scheduler, self)

    def __repr__(self) -> str:
        steps = ", ".join(f"{s.name}:{s.kind.value}" for s in self._steps)
        return f"<HybridWorkflow {self._name!r} [{steps}] x{self._iterations}>"


class _Run:
    """One run of a workflow: the tasks it has out, so that they can be cancelled."""

    def __init__(self, scheduler: WorkflowRuntime, workflow: HybridWorkflow) -> None:
        self.scheduler = scheduler
        self.workflow = workflow
        self.outstanding: list[TaskHandle[Any]] = []
        self.task_ids: list[int] = []
        self.progress: WorkflowProgress | None = None

    def cancel_outstanding(self) -> None:
        for handle in self.outstanding:
            if not handle.done():
                handle.cancel()
        self.outstanding.clear()

    def _submit(self, builder: Any, iteration_ids: list[int]) -> TaskHandle[Any]:
        handle: TaskHandle[Any] = self.scheduler.submit_nowait(transient(builder))
        self.outstanding.append(handle)
        self.task_ids.append(handle.task_id)
        iteration_ids.append(handle.task_id)
        return handle

    async def _wait(self, handles: Sequence[TaskHandle[Any]]) -> list[TaskResult[Any]]:
        # Every handle was submitted before the first wait, so waiting in order costs the
        # time of the slowest; the first failure raises and the caller cancels the rest.
        results = [await h for h in handles]
        self.outstanding.clear()
        return results

    async def run_step(self, step: WorkflowStep, iteration: int, value: Any, ids: list[int]) -> Any:
        wf = self.workflow
        priority = step.priority if step.priority is not None else wf.priority
        name = f"{wf.name}/{step.name}[{iteration}]"
        meta = {"workflow": wf.name, "step": step.name, "iteration": iteration}
        if step.kind is StepKind.CLASSICAL:
            fn = step.function
            assert fn is not None
            builder = Task.classical(name).with_priority(priority).with_metadata(**meta)
            if step.takes_input:
                builder = builder.with_function(fn, value)
            else:
                builder = builder.with_function(fn)
            if step.executor is not None:
                builder = builder.with_executor(step.executor)
            (result,) = await self._wait([self._submit(builder, ids)])
            return result.value
        build = step.circuit_builder
        assert build is not None
        circuits = build(value)
        if inspect.isawaitable(circuits):
            circuits = await circuits
        single = not isinstance(circuits, (list, tuple))
        batch = [circuits] if single else list(circuits)
        handles = []
        for k, circuit in enumerate(batch):
            builder = (
                Task.quantum(name if single else f"{name}.{k}")
                .with_circuit(circuit)
                .with_shots(step.shots)
                .with_priority(priority)
                .with_metadata(**meta)
            )
            if step.backend is not None:
                builder = builder.with_backend(step.backend)
            handles.append(self._submit(builder, ids))
        # The step's circuits are all in: no need to wait out the batch window for more.
        self.scheduler.flush_batches()
        results = await self._wait(handles)
        counts = [r.value for r in results]
        return counts[0] if single else counts

    async def run(self) -> WorkflowResult:
        wf = self.workflow
        steps = wf.steps
        if not steps:
            raise InvalidTaskError(
                "steps",
                f"workflow {wf.name!r} has no steps: add them with add_step(...)",
                where=f"HybridWorkflow {wf.name!r}",
            )
        now = self.scheduler.clock.now
        started = now()
        history: list[IterationRecord] = []
        value = wf._initial
        stop_reason: StopReason = "iterations"
        first = 0
        # Run as a hybrid task's algorithm, the workflow saves where it is after every
        # iteration, and goes on from there after its scheduler restarted (journal).
        task = _current_task.get()
        context = None if task is None or task.algorithm is not wf else TaskContext(task)
        if context is not None:
            saved = context.saved_state
            if isinstance(saved, dict) and saved.get("kind") == "workflow":
                first = saved["next"]
                value = saved["value"]
                history = list(saved["history"])
                self.task_ids.extend(saved["task_ids"])
        try:
            for i in range(first, wf.iterations):
                it_started = now()
                outputs: dict[str, Any] = {}
                seconds: dict[str, float] = {}
                ids: list[int] = []
                for step in steps:
                    if step.once and i > 0:
                        continue
                    t0 = now()
                    try:
                        value = await self.run_step(step, i, value, ids)
                    except Exception as exc:
                        # A task's error, a refused submission, or the builder's own bug.
                        problem = (
                            str(exc)
                            if isinstance(exc, SchedulerError)
                            else (f"{type(exc).__name__}: {exc}")
                        )
                        raise WorkflowError(wf.name, step.name, i, problem, tuple(history)) from exc
                    outputs[step.name] = value
                    seconds[step.name] = now() - t0
                record = IterationRecord(
                    index=i,
                    output=value,
                    outputs=outputs,
                    started_at=it_started,
                    finished_at=now(),
                    step_seconds=seconds,
                    task_ids=tuple(ids),
                )
                history.append(record)
                if context is not None:
                    context.save_state(
                        {
                            "kind": "workflow",
                            "next": i + 1,
                            "value": value,
                            "history": tuple(history),
                            "task_ids": tuple(self.task_ids),
                        }
                    )
                try:
                    self.progress = WorkflowProgress(
                        wf.name, i + 1, wf.iterations, value, now() - started
                    )
                    if wf._progress is not None:
                        wf._progress(self.progress)
                    stop = wf._stop is not None and bool(wf._stop(history))
                except Exception as exc:
                    raise WorkflowError(
                        wf.name, None, i, f"{type(exc).__name__}: {exc}", tuple(history)
                    ) from exc
                if stop:
                    stop_reason = "condition"
                    break
        finally:
            # Cancelled, failed or done: nothing this run submitted may outlive it.
            self.cancel_outstanding()
        return WorkflowResult(
            name=wf.name,
            value=value,
            history=tuple(history),
            stop_reason=stop_reason,
            started_at=started,
            finished_at=now(),
            task_ids=tuple(self.task_ids),
        )


async def run_workflow(scheduler: WorkflowRuntime, workflow: HybridWorkflow) -> WorkflowResult:
    """Run a workflow on a scheduler and return its result.

    Must be awaited on the scheduler's event loop. Cancelling the awaiting task cancels every
    task the workflow has out, then the cancellation propagates.

    Args:
        scheduler: The scheduler that runs the steps' tasks.
        workflow: The workflow.

    Returns:
        The final value, per-iteration history, timings and the ids of every task it ran.

    Raises:
        WorkflowError: If a step's task failed, was cancelled or timed out (its error is
            ``__cause__``), or the progress callback or stop condition raised.
        InvalidTaskError: If the workflow has no steps.
    """
    if not isinstance(workflow, HybridWorkflow):
        raise _error("run_workflow", "workflow")(
            "workflow", f"expected a HybridWorkflow, got {type(workflow).__name__}"
        )
    return await _Run(scheduler, workflow).run()


class WorkflowHandle:
    """A workflow started with :func:`start_workflow`: await it, watch it, or cancel it.

    ``await handle`` returns the :class:`WorkflowResult` (or raises what the run raised);
    :meth:`result` blocks a thread other than the scheduler's until then.
    """

    __slots__ = ("_run", "_task", "_loop", "_future")

    def __init__(self, run: _Run, task: asyncio.Task[WorkflowResult]) -> None:
        self._run = run
        self._task = task
        self._loop = task.get_loop()
        # Mirrors the run's outcome for threads that wait with result().
        self._future: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
        task.add_done_callback(self._mirror)

    def _mirror(self, task: asyncio.Task[WorkflowResult]) -> None:
        if task.cancelled():
            self._future.cancel()
        elif (exc := task.exception()) is not None:
            self._future.set_exception(exc)
        else:
            self._future.set_result(task.result())

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self._run.workflow.name

    @property
    def progress(self) -> WorkflowProgress | None:
        """The progress after the last completed iteration, or None before the first."""
        return self._run.progress

    @property
    def task_ids(self) -> tuple[int, ...]:
        """The tasks submitted so far."""
        return tuple(self._run.task_ids)

    def done(self) -> bool:
        """Whether the run has ended (finished, failed or cancelled)."""
        return self._future.done()

    def cancel(self) -> bool:
        """Cancel the run and every task it has out. Safe to call from any thread.

        Returns:
            True if the run was still going.
        """
        if self._future.done():
            return False
        if _on_loop(self._loop):
            self._task.cancel()
        else:
            self._loop.call_soon_threadsafe(self._task.cancel)
        return True

    def __await__(self) -> Any:
        return self._task.__await__()

    def result(self, timeout: float | None = None) -> WorkflowResult:
        """Block the calling thread (not the scheduler's) until the run ends.

        Raises:
            SchedulerError: If called on the scheduler's event-loop thread.
            TimeoutError: If ``timeout`` seconds pass first.
            concurrent.futures.CancelledError: If the run was cancelled.
        """
        if _on_loop(self._loop):
            raise SchedulerError("WorkflowHandle.result() on the event loop: await the handle")
        return self._future.result(timeout)

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<WorkflowHandle {self.name!r} {state}>"


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def start_workflow(scheduler: WorkflowRuntime, workflow: HybridWorkflow) -> WorkflowHandle:
    """Start a workflow in the background and return its handle at once.

    Must be called on the scheduler's event loop.

    Raises:
        InvalidTaskError: If ``workflow`` is not a HybridWorkflow.
    """
    if not isinstance(workflow, HybridWorkflow):
        raise _error("start_workflow", "workflow")(
            "workflow", f"expected a HybridWorkflow, got {type(workflow).__name__}"
        )
    run = _Run(scheduler, workflow)
    task = asyncio.get_running_loop().create_task(run.run(), name=f"workflow:{workflow.name}")
    return WorkflowHandle(run, task)
