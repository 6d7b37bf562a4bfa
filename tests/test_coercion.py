"""One rule for enum input, errors that name what the user wrote, and the seed's names.

The rule: wherever the public API takes an enum member it also takes the member's name in
any case and the member's value; nothing else (a bool is refused even where ``True == 1``).
A refusal is the site's own error (InvalidTaskError or InvalidConfigError), names the field
and lists what is accepted.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from logosq_os_scheduler import (
    BlockingScheduler,
    CircuitSpec,
    HybridWorkflow,
    InvalidConfigError,
    InvalidTaskError,
    PreemptionStrategy,
    QuantumScheduler,
    RoutingRule,
    SchedulerConfig,
    SchedulerError,
    Task,
    TaskBuilder,
    TaskPriority,
    TaskResult,
    TaskStatus,
    TaskType,
    WorkflowStep,
)
from logosq_os_scheduler.workflows import StepKind


def _step_fn(x: object) -> object:
    return x


def _build(x: object) -> object:
    return CircuitSpec(1)


@dataclasses.dataclass(frozen=True)
class Site:
    """One enum input of the public API: how to give it a value and read the member back."""

    name: str
    enum_cls: type[enum.Enum]
    give: Callable[[Any], enum.Enum | None]
    error: type[SchedulerError]
    field: str


SITES = [
    Site(
        "TaskBuilder.with_priority",
        TaskPriority,
        lambda v: Task.classical("t").with_priority(v).with_function(_step_fn, 1).build().priority,
        InvalidTaskError,
        "priority",
    ),
    Site(
        "TaskBuilder(task_type)",
        TaskType,
        lambda v: TaskBuilder("t", v).task_type,
        InvalidTaskError,
        "task_type",
    ),
    Site(
        "RoutingRule.when_priority_at_least",
        TaskPriority,
        lambda v: RoutingRule().when_priority_at_least(v).conditions[0].value,
        InvalidTaskError,
        "priority",
    ),
    Site(
        "WorkflowStep.classical(priority)",
        TaskPriority,
        lambda v: WorkflowStep.classical("s", _step_fn, priority=v).priority,
        InvalidTaskError,
        "priority",
    ),
    Site(
        "WorkflowStep.quantum(priority)",
        TaskPriority,
        lambda v: WorkflowStep.quantum("s", _build, priority=v).priority,
        InvalidTaskError,
        "priority",
    ),
    Site(
        "WorkflowStep(kind)",
        StepKind,
        lambda v: WorkflowStep("s", v, function=_step_fn).kind,
        InvalidTaskError,
        "kind",
    ),
    Site(
        "WorkflowStep(priority)",
        TaskPriority,
        lambda v: WorkflowStep("s", StepKind.CLASSICAL, function=_step_fn, priority=v).priority,
        InvalidTaskError,
        "priority",
    ),
    Site(
        "HybridWorkflow.with_priority",
        TaskPriority,
        lambda v: HybridWorkflow("w").with_priority(v).priority,
        InvalidTaskError,
        "priority",
    ),
    Site(
        "SchedulerConfig(preemption)",
        PreemptionStrategy,
        lambda v: SchedulerConfig(preemption=v).preemption,
        InvalidConfigError,
        "preemption",
    ),
    Site(
        "SchedulerConfig.replace(preemption)",
        PreemptionStrategy,
        lambda v: SchedulerConfig().replace(preemption=v).preemption,
        InvalidConfigError,
        "preemption",
    ),
    Site(
        "QuantumScheduler.with_preemption",
        PreemptionStrategy,
        lambda v: QuantumScheduler(1).with_preemption(v).config.preemption,
        InvalidConfigError,
        "preemption",
    ),
    Site(
        "QuantumScheduler.configure(preemption)",
        PreemptionStrategy,
        lambda v: QuantumScheduler(1).configure(preemption=v).config.preemption,
        InvalidConfigError,
        "preemption",
    ),
]


def _spellings(member: enum.Enum) -> list[tuple[str, object]]:
    """Every accepted way to write ``member``: itself, its name in three cases, its value."""
    name = member.name
    return [
        ("member", member),
        ("lower", name.lower()),
        ("upper", name.upper()),
        ("title", name.title()),
        ("value", member.value),
    ]


ACCEPTED = [
    pytest.param(site, member, given, id=f"{site.name}-{member.name}-{how}")
    for site in SITES
    for member in site.enum_cls
    for how, given in _spellings(member)
]


@pytest.mark.parametrize(("site", "member", "given"), ACCEPTED)
def test_a_member_its_name_in_any_case_and_its_value_are_accepted(
    site: Site, member: enum.Enum, given: object
) -> None:
    assert site.give(given) is member


class _Other(enum.IntEnum):
    ONE = 1
    TWO = 2


# Refused everywhere: bools (True == 1 notwithstanding), values of the wrong type, unknown
# names, names padded or mangled, numbers written as text, other enums' members.
REFUSED: list[object] = [
    True,
    False,
    "urgent",
    "",
    " high ",
    "hi gh",
    "3",
    3.0,
    2.5,
    -1,
    99,
    b"HIGH",
    ["HIGH"],
    object(),
    _Other.ONE,
    "\u029c\u026a\u0262\u029c",  # small capitals
    "h\u0131gh",  # a dotless i: str.upper() would make it "HIGH"
]


@pytest.mark.parametrize("given", REFUSED, ids=repr)
@pytest.mark.parametrize("site", SITES, ids=lambda s: s.name)
def test_anything_else_is_refused_naming_the_field_and_the_accepted_names(
    site: Site, given: object
) -> None:
    with pytest.raises(site.error) as info:
        site.give(given)
    err = info.value
    if isinstance(err, InvalidTaskError):
        assert err.field == site.field
    else:
        assert isinstance(err, InvalidConfigError) and err.setting == site.field
    message = str(err)
    assert site.enum_cls.__name__ in message
    assert all(m.name in message for m in site.enum_cls)
    assert repr(given) in message
    if isinstance(given, bool):
        assert "a bool is not accepted" in message


@pytest.mark.parametrize(
    "site", [s for s in SITES if s.enum_cls is not StepKind and "TaskBuilder(" not in s.name]
)
def test_none_is_refused_where_it_means_nothing(site: Site) -> None:
    if "WorkflowStep" in site.name:
        assert site.give(None) is None  # a step without a priority takes the workflow's
        return
    with pytest.raises(site.error):
        site.give(None)


def test_values_are_listed_only_where_a_name_does_not_already_reach_them() -> None:
    with pytest.raises(InvalidTaskError) as priority:
        Task.classical("t").with_priority("urgent")  # type: ignore[arg-type]
    assert "IDLE=0, LOW=1, NORMAL=2, HIGH=3, CRITICAL=4" in str(priority.value)
    with pytest.raises(InvalidConfigError) as preemption:
        SchedulerConfig(preemption="sometimes")  # type: ignore[arg-type]
    assert "NONE, COOPERATIVE, PREEMPTIVE" in str(preemption.value)
    assert "'none'" not in str(preemption.value)


# --- errors name the object and the call the user wrote ---------------------------------------


NAMED_ERRORS: list[tuple[str, Callable[[], object], str]] = [
    (
        "invalid RoutingRule.when_qubit_count_exceeds: ",
        lambda: RoutingRule().when_qubit_count_exceeds(-1),
        "n",
    ),
    (
        "invalid RoutingRule.when_priority_at_least: ",
        lambda: RoutingRule().when_priority_at_least("urgent"),  # type: ignore[arg-type]
        "priority",
    ),
    ("invalid RoutingRule.when: ", lambda: RoutingRule().when(3), "predicate"),  # type: ignore[arg-type]
    ("invalid RoutingRule.route_to: ", lambda: RoutingRule().route_to(42), "backend"),  # type: ignore[arg-type]
    ("invalid RoutingRule.route_to_any: ", lambda: RoutingRule().route_to_any(), "backends"),
    (
        "invalid RoutingRule.route_to_shortest_queue: ",
        lambda: RoutingRule().route_to("a").route_to_shortest_queue(),
        "target",
    ),
    ("invalid RoutingRule: ", lambda: RoutingRule().default().check(), "target"),
    (
        "invalid HybridWorkflow.with_iterations: ",
        lambda: HybridWorkflow("w").with_iterations(0),
        "iterations",
    ),
    (
        "invalid HybridWorkflow.with_priority: ",
        lambda: HybridWorkflow("w").with_priority("urgent"),  # type: ignore[arg-type]
        "priority",
    ),
    ("invalid HybridWorkflow(name=...): ", lambda: HybridWorkflow(""), "name"),
    ("invalid HybridWorkflow.add_step: ", lambda: HybridWorkflow("w").add_step(3), "step"),  # type: ignore[arg-type]
    ("invalid HybridWorkflow.until: ", lambda: HybridWorkflow("w").until(3), "until"),  # type: ignore[arg-type]
    (
        "invalid HybridWorkflow.until_converged(tolerance=...): ",
        lambda: HybridWorkflow("w").until_converged(-1.0),
        "tolerance",
    ),
    (
        "invalid HybridWorkflow.on_progress: ",
        lambda: HybridWorkflow("w").on_progress(3),  # type: ignore[arg-type]
        "on_progress",
    ),
    (
        "invalid WorkflowStep.classical(priority=...): ",
        lambda: WorkflowStep.classical("s", _step_fn, priority=True),  # type: ignore[arg-type]
        "priority",
    ),
    (
        "invalid WorkflowStep.classical(function=...): ",
        lambda: WorkflowStep.classical("s", lambda a, b: a),
        "function",
    ),
    (
        "invalid WorkflowStep.quantum(shots=...): ",
        lambda: WorkflowStep.quantum("s", _build, shots=0),
        "shots",
    ),
    ("invalid WorkflowStep(kind=...): ", lambda: WorkflowStep("s", "loop"), "kind"),  # type: ignore[arg-type]
    ("invalid task field 'priority': ", lambda: Task.classical("t").with_priority("x"), "priority"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("prefix", "call", "field"), NAMED_ERRORS, ids=[p for p, _, _ in NAMED_ERRORS]
)
def test_errors_name_the_object_and_the_call_the_user_wrote(
    prefix: str, call: Callable[[], object], field: str
) -> None:
    # Still an InvalidTaskError, with its field: existing `except` clauses keep working.
    with pytest.raises(InvalidTaskError) as info:
        call()
    assert str(info.value).startswith(prefix), str(info.value)
    assert info.value.field == field
    assert info.value.problem and info.value.problem in str(info.value)
    assert "invalid task field 'routing'" not in str(info.value)


# --- with_circuit refuses what submit would refuse, where it is written ------------------------


@pytest.mark.parametrize("circuit", [42, None, 3.5, b"OPENQASM 2.0;", [1, 2], object(), print])
def test_with_circuit_refuses_a_non_circuit_at_the_call(circuit: object) -> None:
    with pytest.raises(InvalidTaskError) as info:
        Task.quantum("q").with_circuit(circuit)
    assert info.value.field == "circuit"
    message = str(info.value)
    for accepted in ("QuantumCircuit", "OpenQASM", "CircuitSpec", "num_qubits"):
        assert accepted in message


class _OwnCircuit:
    """A backend's own circuit type: anything that says how many qubits it needs."""

    num_qubits = 3


class _BoolQubits:
    num_qubits = True


def test_with_circuit_accepts_what_submit_accepts() -> None:
    for circuit in (CircuitSpec(2), "OPENQASM 2.0; qreg q[1];", _OwnCircuit()):
        assert Task.quantum("q").with_circuit(circuit).build().circuit is circuit
    with pytest.raises(InvalidTaskError, match="num_qubits"):
        Task.quantum("q").with_circuit(_BoolQubits())
    with pytest.raises(InvalidTaskError, match="empty"):
        Task.quantum("q").with_circuit("   ")


def test_with_circuit_checks_without_importing_qiskit() -> None:
    code = textwrap.dedent(
        """
        import sys
        import logosq_os_scheduler as p
        try:
            p.Task.quantum("q").with_circuit(42)
        except p.InvalidTaskError:
            pass
        p.Task.quantum("q").with_circuit(p.CircuitSpec(2))
        assert "qiskit" not in sys.modules
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


# --- the seed's names: no aliases, and a failed guess says the Python spelling -----------------


def test_the_rust_constructors_are_not_copied() -> None:
    # Type::new(x) is Type(x): none of the seed's ::new spellings exists.
    for cls in (QuantumScheduler, HybridWorkflow, RoutingRule, Task):
        assert not hasattr(cls, "new"), cls


HINTED_ENUMS = [TaskPriority, TaskType, TaskStatus, StepKind, PreemptionStrategy]


@pytest.mark.parametrize(
    ("enum_cls", "member"),
    [(e, m) for e in HINTED_ENUMS for m in e],
    ids=lambda x: x.__name__ if isinstance(x, type) else x.name,
)
def test_a_member_in_the_seeds_case_names_the_python_spelling(
    enum_cls: type[enum.Enum], member: enum.Enum
) -> None:
    guess = member.name.title().replace("_", "")  # TaskPriority::High, TaskStatus::TimedOut
    guesses = {guess, member.name.title(), member.name.lower()}
    for wrong in guesses - {member.name}:
        with pytest.raises(AttributeError) as info:
            getattr(enum_cls, wrong)
        assert f"use {enum_cls.__name__}.{member.name}" in str(info.value)
        assert info.value.name == wrong


def test_enum_lookups_are_otherwise_unchanged() -> None:
    assert TaskPriority.HIGH is TaskPriority["HIGH"] is TaskPriority(3)
    assert getattr(TaskPriority, "NOPE", None) is None
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = TaskPriority.Nope  # type: ignore[attr-defined]
    assert not hasattr(TaskPriority, "_private")
    assert pickle.loads(pickle.dumps(TaskPriority.HIGH)) is TaskPriority.HIGH
    assert copy.deepcopy(StepKind.QUANTUM) is StepKind.QUANTUM


def test_python_suggests_the_step_constructors_itself() -> None:
    # WorkflowStep.Classical and Task.Quantum get CPython's own "Did you mean" (the default
    # excepthook computes it); nothing of ours is needed there.
    code = textwrap.dedent(
        """
        import sys
        from logosq_os_scheduler import Task, WorkflowStep
        for owner, name in ((WorkflowStep, "Classical"), (WorkflowStep, "Quantum"),
                            (Task, "Quantum"), (Task, "Hybrid")):
            try:
                getattr(owner, name)
            except AttributeError as exc:
                sys.__excepthook__(type(exc), exc, None)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ("classical", "quantum", "quantum", "hybrid"):
        assert f"Did you mean: '{name}'?" in out.stderr, out.stderr


@dataclasses.dataclass(frozen=True)
class Energy:
    """Stands in for a VQEResult (which needs the qiskit extra)."""

    energy: float

    @property
    def expensive(self) -> float:
        raise AssertionError("the hint must not run the value's properties")


def _energy() -> Energy:
    return Energy(-1.137)


def _result() -> TaskResult[Energy]:
    with BlockingScheduler(1) as scheduler:
        return scheduler.submit(Task.classical("vqe").with_function(_energy)).result()


def test_result_energy_says_it_is_result_value_energy() -> None:
    result = _result()
    assert result.value.energy == -1.137
    with pytest.raises(AttributeError) as info:
        _ = result.energy  # type: ignore[attr-defined]
    message = str(info.value)
    assert "result.value.energy" in message and "Energy" in message
    assert info.value.name == "energy"
    with pytest.raises(AttributeError) as prop:
        _ = result.expensive  # type: ignore[attr-defined]
    assert "result.value.expensive" in str(prop.value)
    with pytest.raises(AttributeError, match=r"^'TaskResult' object has no attribute 'nope'$"):
        _ = result.nope  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        _ = result._nope  # type: ignore[attr-defined]
    assert getattr(result, "energy", None) is None and not hasattr(result, "energy")


def test_a_task_result_still_copies_and_pickles() -> None:
    result = _result()
    for clone in (copy.copy(result), copy.deepcopy(result), pickle.loads(pickle.dumps(result))):
        assert clone.value == result.value and clone.task_id == result.task_id


def test_scheduler_close_says_aclose() -> None:
    scheduler = QuantumScheduler(1)
    with pytest.raises(AttributeError) as info:
        scheduler.close()  # type: ignore[attr-defined]
    message = str(info.value)
    assert "await scheduler.aclose()" in message and "async with" in message
    assert "BlockingScheduler" in message and info.value.name == "close"
    with pytest.raises(AttributeError, match=r"^'QuantumScheduler' object has no attribute 'x'$"):
        _ = scheduler.x  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        _ = scheduler._x  # type: ignore[attr-defined]
    assert not hasattr(scheduler, "close")
    # The hint is a descriptor on one name: the copy protocol is unaffected.
    assert copy.copy(scheduler).config is scheduler.config


async def test_the_seeds_program_in_python() -> None:
    # The README's translation table, run: QuantumScheduler::new(4).with_max_...(...)
    scheduler = (
        QuantumScheduler(4)
        .with_max_concurrent_quantum(10)
        .with_max_queue_depth(1000)
        .with_task_timeout(timedelta(seconds=3600))
        .with_preemption(PreemptionStrategy.COOPERATIVE)
    )
    assert scheduler.config.task_timeout == 3600.0
    async with scheduler:
        scheduler.set_routing_rules(
            [
                RoutingRule().when_qubit_count_exceeds(20).route_to("ibm_brisbane"),
                RoutingRule().default().route_to_shortest_queue(),
            ]
        )
        handle = await scheduler.submit(
            Task.classical("optimize_params")
            .with_priority(TaskPriority.HIGH)
            .with_function(_energy)
        )
        result = await handle
        assert result.value.energy == -1.137
        workflow = (
            HybridWorkflow("vqe_h2")
            .add_step(WorkflowStep.classical("init_params", lambda: 0.5, once=True))
            .add_step(WorkflowStep.classical("update_params", lambda p: p / 2))
            .with_iterations(3)
        )
        assert (await scheduler.run_workflow(workflow)).value == 0.0625


def test_set_routing_rules_errors_name_the_call() -> None:
    scheduler = QuantumScheduler(1)
    with pytest.raises(InvalidTaskError, match=r"^invalid QuantumScheduler.set_routing_rules: "):
        scheduler.set_routing_rules("route_to('aer')")  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError, match=r"expected RoutingRule, got 42") as info:
        scheduler.set_routing_rules([42])  # type: ignore[list-item]
    assert info.value.field == "rules"
