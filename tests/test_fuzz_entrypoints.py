"""Hostile input at every public entry point that exists now.

Each entry point either accepts a value or refuses it with a ``SchedulerError`` subclass
(``InvalidTaskError`` and ``InvalidConfigError`` are also ``ValueError``s, which is fine);
never a bare ``TypeError`` or ``ValueError`` from deep inside, never a crash or a hang. A
running scheduler fed a mix of good tasks and bad input runs every good task and stays
usable.

Inputs found to escape as something else are pinned by the ``xfail(strict=True)`` tests at
the end, each naming the input and what escapes; when one is fixed its test passes, strict
xfail turns that into a failure, and the marker comes off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import math
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logosq_os_scheduler import (
    BlockingScheduler,
    InvalidConfigError,
    InvalidTaskError,
    PreemptionStrategy,
    QuantumScheduler,
    SchedulerConfig,
    SchedulerError,
    Task,
    TaskBuilder,
    TaskFailedError,
    TaskPriority,
)
from logosq_os_scheduler.backends import CircuitSpec, MockBackend
from logosq_os_scheduler.core._routing import RoutingRule

HAS_QISKIT = importlib.util.find_spec("qiskit") is not None
needs_qiskit = pytest.mark.skipif(not HAS_QISKIT, reason="needs the qiskit extra")

# Above this an int is past the largest float: see the pinned OverflowError findings below.
FLOAT_SAFE_INT = 2**1000


class Opaque:
    """A user object no entry point has a use for."""

    def __repr__(self) -> str:
        return "Opaque()"


async def _coroutine_function() -> int:
    return 1


garbage_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-FLOAT_SAFE_INT, max_value=FLOAT_SAFE_INT),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.complex_numbers(max_magnitude=10),
    st.builds(Opaque),
    st.sampled_from(
        [
            timedelta(seconds=-1),
            timedelta(0),
            timedelta(microseconds=1),
            timedelta(days=3650),
            TaskPriority.HIGH,
            PreemptionStrategy.PREEMPTIVE,
            "HIGH",
            "critical",
            "inline",
            "thread",
            "auto",
            print,
            _coroutine_function,
            object,
            CircuitSpec(2),
            RoutingRule().route_to("nowhere"),
            math.nan,
            -0.0,
        ]
    ),
)
garbage = st.recursive(
    garbage_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)

KINDS: dict[str, Callable[[str], TaskBuilder[Any]]] = {
    "classical": Task.classical,
    "quantum": Task.quantum,
    "hybrid": Task.hybrid,
}
ONE_ARG_METHODS = [
    "with_priority",
    "with_function",
    "with_circuit",
    "with_shots",
    "with_timeout",
    "with_backend",
    "with_executor",
    "with_preemptible",
    "with_restartable",
    "with_qubits",
    "with_all_to_all",
    "with_retries",
    "with_algorithm",
    "with_optimizer",
]
CONFIG_FIELDS = [f.name for f in dataclasses.fields(SchedulerConfig)]


def accepts_or_refuses(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a SchedulerError is a refusal (None), anything else escaping fails.

    A refusal of a task field or a setting names it, and says what was wrong.
    """
    try:
        return fn(*args, **kwargs)
    except InvalidTaskError as exc:
        assert isinstance(exc.field, str) and exc.field and exc.problem, exc
    except InvalidConfigError as exc:
        assert isinstance(exc.setting, str) and exc.setting and exc.problem, exc
    except SchedulerError:
        pass
    return None


# --- constructors and builders ---------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(KINDS)), garbage)
def test_task_constructors(kind: str, name: object) -> None:
    builder = accepts_or_refuses(KINDS[kind], name)
    if builder is not None:
        assert isinstance(name, str) and name and builder.name == name


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(sorted(KINDS)),
    st.lists(st.tuples(st.sampled_from(ONE_ARG_METHODS), garbage), min_size=1, max_size=4),
)
def test_builder_methods(kind: str, calls: list[tuple[str, object]]) -> None:
    builder = KINDS[kind]("fuzz")
    for method, value in calls:
        returned = accepts_or_refuses(getattr(builder, method), value)
        assert returned is None or returned is builder
    accepts_or_refuses(builder.build)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(KINDS)),
    st.one_of(st.none(), garbage),
    st.one_of(st.none(), garbage),
    st.dictionaries(st.text(min_size=1, max_size=6), garbage, max_size=3),
    st.lists(garbage, max_size=3),
)
def test_builder_limits_metadata_and_function_arguments(
    kind: str,
    memory: object,
    cpu: object,
    metadata: dict[str, object],
    args: list[object],
) -> None:
    builder = KINDS[kind]("fuzz")
    accepts_or_refuses(builder.with_limits, memory_bytes=memory, cpu_seconds=cpu)
    # Labels are free-form: any value is kept as given.
    assert builder.with_metadata(**metadata) is builder
    accepts_or_refuses(builder.with_function, print, *args)
    accepts_or_refuses(builder.build)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(CONFIG_FIELDS), garbage, max_size=4))
def test_scheduler_config(settings_: dict[str, object]) -> None:
    config = accepts_or_refuses(SchedulerConfig, **settings_)
    if config is not None:
        assert config.workers >= 1
    accepts_or_refuses(SchedulerConfig().replace, **settings_)


@settings(max_examples=150, deadline=None)
@given(garbage, st.one_of(st.none(), garbage), st.one_of(st.none(), garbage))
def test_quantum_scheduler_constructor(workers: object, config: object, clock: object) -> None:
    accepts_or_refuses(QuantumScheduler, workers=workers)
    accepts_or_refuses(QuantumScheduler, config=config)
    accepts_or_refuses(QuantumScheduler, workers=workers, config=config, clock=clock)


RULE_METHODS = [
    "when_qubit_count_exceeds",
    "when_priority_at_least",
    "when",
    "route_to",
    "route_to_any",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(RULE_METHODS), garbage), min_size=1, max_size=3))
def test_routing_rule_methods(calls: list[tuple[str, object]]) -> None:
    rule = RoutingRule()
    for method, value in calls:
        accepts_or_refuses(getattr(rule, method), value)
    accepts_or_refuses(rule.check)
    # Any description is kept, as text.
    assert accepts_or_refuses(RoutingRule().when, print, calls[0][1]) is not None


@settings(max_examples=150, deadline=None)
@given(garbage)
def test_circuit_spec_qubit_counts(num_qubits: object) -> None:
    spec = accepts_or_refuses(CircuitSpec, num_qubits)
    if spec is not None:
        assert isinstance(spec.num_qubits, int) and spec.num_qubits >= 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 6), st.integers(-3, 6)), max_size=4))
def test_circuit_spec_interactions_of_pairs(pairs: list[tuple[int, int]]) -> None:
    spec = accepts_or_refuses(CircuitSpec, 4, pairs)
    if spec is not None:
        assert all(0 <= a < 4 and 0 <= b < 4 and a != b for a, b in spec.interactions)


# --- a running scheduler -------------------------------------------------------------------


def double(x: int) -> int:
    return 2 * x


async def double_async(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


class FuzzFailure(Exception):
    """What the fuzzed failing tasks raise."""


def fail(message: str) -> None:
    raise FuzzFailure(message)


good_actions = st.one_of(
    st.tuples(
        st.just("classical"),
        st.integers(-1000, 1000),
        st.sampled_from(["auto", "inline", "thread"]),
        st.sampled_from(list(TaskPriority)),
    ),
    st.tuples(st.just("async"), st.integers(-1000, 1000)),
    st.tuples(st.just("quantum"), st.integers(1, 4), st.integers(1, 300)),
)
bad_actions = st.one_of(
    st.tuples(st.just("submit"), garbage),
    st.tuples(
        st.just("builder"),
        st.sampled_from(sorted(KINDS)),
        st.sampled_from(ONE_ARG_METHODS),
        garbage,
    ),
    st.tuples(st.just("raises"), st.text(max_size=10)),
    st.tuples(st.just("too_wide"), st.integers(5, 10_000)),
    st.tuples(st.just("pinned"), st.text(min_size=1, max_size=6)),
    st.tuples(st.just("executor"), st.text(min_size=1, max_size=6)),
    st.tuples(st.just("rules"), st.lists(garbage, max_size=3)),
    st.tuples(st.just("register"), garbage, garbage),
)


def test_a_running_scheduler_survives_hostile_input_and_runs_every_good_task() -> None:
    config = SchedulerConfig(workers=2, batch_window=0, retry_backoff=0)
    expected: list[tuple[Any, Callable[[Any], bool]]] = []
    bad_tasks: list[Any] = []
    with BlockingScheduler(config=config) as scheduler:
        backend = MockBackend("mock4", num_qubits=4, seed=7)

        async def register(s: QuantumScheduler) -> None:
            await s.register_backend("mock4", backend)

        scheduler.call(register)

        def perform(action: tuple[Any, ...]) -> None:
            kind = action[0]
            if kind == "classical":
                _, x, executor, priority = action
                task = (
                    Task.classical("double")
                    .with_function(double, x)
                    .with_executor(executor)
                    .with_priority(priority)
                )
                expected.append((scheduler.submit(task), lambda v, x=x: v == 2 * x))
            elif kind == "async":
                task = Task.classical("double_async").with_function(double_async, action[1])
                expected.append((scheduler.submit(task), lambda v, x=action[1]: v == 2 * x))
            elif kind == "quantum":
                _, n, shots = action
                task = Task.quantum("q").with_circuit(CircuitSpec(n)).with_shots(shots)
                expected.append(
                    (
                        scheduler.submit(task),
                        lambda v, n=n, shots=shots: (
                            sum(v.values()) == shots and all(len(k) == n for k in v)
                        ),
                    )
                )
            elif kind == "submit":
                with pytest.raises(SchedulerError):
                    scheduler.submit(action[1])  # type: ignore[arg-type]
            elif kind == "builder":
                _, task_kind, method, value = action
                builder = accepts_or_refuses(getattr(KINDS[task_kind]("bad"), method), value)
                if builder is not None:
                    handle = accepts_or_refuses(scheduler.submit, builder)
                    if handle is not None:
                        bad_tasks.append(handle)
            elif kind == "raises":
                handle = scheduler.submit(Task.classical("fails").with_function(fail, action[1]))
                bad_tasks.append(handle)
            elif kind == "too_wide":
                with pytest.raises(SchedulerError, match="no backend can run"):
                    scheduler.submit(Task.quantum("wide").with_circuit(CircuitSpec(action[1])))
            elif kind == "pinned":
                if action[1] == "mock4":
                    return
                with pytest.raises(SchedulerError):
                    scheduler.submit(
                        Task.quantum("p").with_circuit(CircuitSpec(1)).with_backend(action[1])
                    )
            elif kind == "executor":
                if action[1] in ("auto", "inline", "thread"):
                    return
                with pytest.raises(InvalidTaskError, match="executor"):
                    scheduler.submit(
                        Task.classical("e").with_function(print).with_executor(action[1])
                    )
            elif kind == "rules":

                async def set_rules(s: QuantumScheduler, rules: Any = action[1]) -> None:
                    s.set_routing_rules(rules)

                accepts_or_refuses(scheduler.call, set_rules)
            elif kind == "register":

                async def reg(
                    s: QuantumScheduler, name: Any = action[1], obj: Any = action[2]
                ) -> None:
                    await s.register_backend(name, obj)

                with pytest.raises(SchedulerError):
                    scheduler.call(reg)

        @settings(max_examples=60, deadline=None)
        @given(st.lists(st.one_of(good_actions, bad_actions), min_size=1, max_size=10))
        def run(actions: list[tuple[Any, ...]]) -> None:
            for action in actions:
                perform(action)

        run()
        assert len(expected) >= 20  # the examples did carry good work

        for handle, check in expected:
            result = handle.result(timeout=60)
            assert check(result.value), (handle, result.value)
        for handle in bad_tasks:
            with contextlib.suppress(SchedulerError):
                handle.result(timeout=60)
        # The scheduler is still usable, and its counts add up.
        assert (
            scheduler.submit(Task.classical("after").with_function(double, 21))
            .result(timeout=60)
            .value
            == 42
        )
        scheduler.join(timeout=60)
        metrics = scheduler.metrics()
        assert metrics.completed >= len(expected) + 1
        assert metrics.completed + metrics.failed + metrics.cancelled + metrics.timed_out == (
            metrics.submitted
        )
        assert metrics.running == metrics.queued == 0


def test_failing_tasks_fail_alone() -> None:
    with BlockingScheduler(2) as scheduler:
        gate = threading.Event()
        slow = scheduler.submit(Task.classical("slow").with_function(gate.wait, 30))
        bad = [
            scheduler.submit(Task.classical(f"bad{i}").with_function(fail, str(i)))
            for i in range(20)
        ]
        for handle in bad:
            with pytest.raises(TaskFailedError) as info:
                handle.result(timeout=30)
            assert isinstance(info.value.__cause__, FuzzFailure)
        gate.set()
        assert slow.result(timeout=30).value is True


# --- OpenQASM text ----------------------------------------------------------------------------

QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""
QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""
QASM_TOKENS = [
    "OPENQASM",
    "2.0",
    "3.0",
    ";",
    "include",
    '"qelib1.inc"',
    '"stdgates.inc"',
    "qreg",
    "creg",
    "qubit",
    "bit",
    "q",
    "c",
    "[",
    "]",
    "0",
    "1",
    "2",
    "h",
    "x",
    "cx",
    "rz(pi/2)",
    "measure",
    "->",
    "=",
    ",",
    "gate",
    "{",
    "}",
    "if",
    "(",
    ")",
    "==",
    "for",
    "in",
    "barrier",
    "reset",
    "//",
    "\n",
    " ",
]


@st.composite
def mutated_programs(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from([QASM2, QASM3]))
    # At most two edits: a register size can grow at most a hundredfold (see the pinned
    # finding on large registers for why sizes must stay small here).
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["delete", "insert", "replace"]))
        char = draw(st.sampled_from([*';[]{}()q0123 \n"-/>=,.ahx', "\x00", "é"]))
        if edit == "delete":
            text = text[:i] + text[i + 1 :]
        elif edit == "insert":
            text = text[:i] + char + text[i:]
        else:
            text = text[:i] + char + text[i + 1 :]
    return text


qasm_text = st.one_of(
    mutated_programs(),
    st.lists(st.sampled_from(QASM_TOKENS), max_size=25).map(" ".join),
    st.text(max_size=60),
)


@pytest.mark.qiskit
@needs_qiskit
@settings(max_examples=250, deadline=None)
@given(qasm_text)
def test_openqasm_text_is_parsed_or_refused_with_a_located_error(text: str) -> None:
    from logosq_os_scheduler.backends import CircuitParseError, normalize_circuit

    try:
        circuit = normalize_circuit(text)
    except CircuitParseError as exc:
        assert exc.field == "circuit"
    except SchedulerError:
        pass
    else:
        assert circuit.num_qubits >= 0


@pytest.mark.qiskit
async def test_a_scheduler_fed_bad_openqasm_runs_the_good_programs() -> None:
    pytest.importorskip("qiskit")
    config = SchedulerConfig(workers=1, batch_window=0)
    texts = [QASM2, "qubit[2] q; oops", QASM3, "", "OPENQASM 2.0; qreg q[1]; h q[0];", QASM2]
    async with QuantumScheduler(config=config) as scheduler:
        await scheduler.register_backend("mock", MockBackend("mock", num_qubits=4, seed=1))
        handles = []
        for text in texts:
            try:
                handles.append(
                    await scheduler.submit(Task.quantum("q").with_circuit(text).with_shots(50))
                )
            except SchedulerError:
                continue
        results = [await h for h in handles]
    assert len(results) == 3
    assert all(sum(r.counts.values()) == 50 for r in results)


# --- findings of the first fuzzing run, fixed: each is now refused with a SchedulerError ------


@pytest.mark.parametrize(
    "call",
    [
        lambda: Task.classical("t").with_timeout(10**400),
        lambda: Task.classical("t").with_limits(cpu_seconds=10**400),
        lambda: SchedulerConfig(task_timeout=10**400),
        lambda: SchedulerConfig(aging_threshold=10**400),
        lambda: SchedulerConfig().replace(retry_backoff=10**400),
    ],
)
def test_finding_huge_int_durations_overflow(call: Callable[[], object]) -> None:
    # coerce_seconds (now _coerce.py) and _seconds (_config.py) once called float(value) unguarded.
    with pytest.raises(SchedulerError, match="too large"):
        call()


def test_finding_set_routing_rules_with_a_non_iterable() -> None:
    async def main() -> None:
        async with QuantumScheduler(1) as scheduler:
            with pytest.raises(InvalidTaskError, match="RoutingRule"):
                scheduler.set_routing_rules(None)  # type: ignore[arg-type]

    asyncio.run(main())


@pytest.mark.parametrize("interactions", [None, 5, ["x"], [(1,)], [(0, 1, 2)], [None]])
def test_finding_circuit_spec_interactions_that_are_not_pairs(interactions: object) -> None:
    with pytest.raises(SchedulerError, match="interaction"):
        CircuitSpec(3, interactions)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_rate": None},
        {"hang_rate": "0.5"},
        {"circuit_failure_rate": []},
        {"latency": None},
        {"latency": ()},
        {"latency": 10**400},
        {"coupling_map": 5},
        {"coupling_map": ["x"]},
        {"history": 2**70},
        {"seed": []},
        {"seed": "\ud800"},
    ],
)
def test_finding_mock_backend_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(SchedulerError) as info:
        MockBackend(**kwargs)  # type: ignore[arg-type]
    assert getattr(info.value, "setting", None) == next(iter(kwargs))


def test_finding_scheduler_config_with_an_unknown_setting() -> None:
    # SchedulerConfig().replace(bogus=1) named the setting; now the constructor does too.
    with pytest.raises(InvalidConfigError, match="'bogus'") as info:
        SchedulerConfig(bogus=1)  # type: ignore[call-arg]
    assert info.value.setting == "bogus"


_HUGE_REGISTERS = """
import resource, sys
# Cap the address space so that the allocation fails fast instead of swapping the machine.
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from logosq_os_scheduler import SchedulerError
from logosq_os_scheduler.backends import normalize_circuit
for text in sys.argv[1:]:
    try:
        normalize_circuit(text)
    except SchedulerError as exc:
        print("refused:", type(exc).__name__)
"""


@pytest.mark.qiskit
def test_finding_openqasm_declaring_a_huge_register_is_refused_not_allocated() -> None:
    pytest.importorskip("qiskit")
    programs = [
        "OPENQASM 3.0; qubit[1000000000] q;",
        'OPENQASM 2.0; include "qelib1.inc"; qreg q[1000000000];',
    ]
    child = subprocess.run(
        [sys.executable, "-c", _HUGE_REGISTERS, *programs],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Before the size check, Qiskit's Rust core aborted on the failed allocation (SIGABRT):
    # one submitted string took the whole scheduler process down.
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.count("refused: CircuitParseError") == 2


def test_a_label_may_be_named_self() -> None:
    # Found by the fuzz test above: with_metadata(**{"self": ...}) clashed with the method's
    # own self.
    task = Task.classical("t").with_function(abs, -1).with_metadata(self=1, kind="x").build()
    assert dict(task.metadata) == {"self": 1, "kind": "x"}


def test_a_setting_named_self_gets_the_usual_refusal() -> None:
    from logosq_os_scheduler import InvalidConfigError, QuantumScheduler, SchedulerConfig

    with pytest.raises(InvalidConfigError, match="'self': no such setting"):
        SchedulerConfig().replace(self=1)
    with pytest.raises(InvalidConfigError, match="'self': no such setting"):
        QuantumScheduler(1).configure(self=1)
