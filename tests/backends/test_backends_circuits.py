"""normalize_circuit and analyze_circuit: OpenQASM 2/3 parsing, error locations, requirements."""

from __future__ import annotations

import subprocess
import sys

import pytest

from logosq_os_scheduler import InvalidTaskError
from logosq_os_scheduler.backends import (
    CircuitParseError,
    CircuitRequirements,
    CircuitSpec,
    _circuits,
    analyze_circuit,
    normalize_circuit,
)

BELL_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""

BELL_QASM3 = """// a Bell pair
OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""

# `for` with a single-statement body makes Qiskit's native OpenQASM 3 importer panic.
PANICS_NATIVE_IMPORTER = """OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
for int i in [0:1] h q[i];
"""


# --- requirements, no Qiskit needed ----------------------------------------------------------


def test_spec_bell_star_triangle() -> None:
    bell = analyze_circuit(CircuitSpec(2, [(0, 1)]))
    assert bell == CircuitRequirements(2, frozenset({(0, 1)}), False, 1)
    star = analyze_circuit(CircuitSpec(5, [(0, 1), (0, 2), (3, 0), (0, 4)]))
    assert (star.max_degree, star.dense) == (4, True)
    chain3 = analyze_circuit(CircuitSpec(4, [(0, 1), (0, 2), (0, 3)]))
    assert (chain3.max_degree, chain3.dense) == (3, False)
    triangle = analyze_circuit(CircuitSpec(3, [(0, 1), (2, 1), (0, 2)]))
    assert (triangle.max_degree, triangle.dense) == (2, True)
    assert triangle.interactions == frozenset({(0, 1), (1, 2), (0, 2)})


def test_spec_validation() -> None:
    with pytest.raises(InvalidTaskError, match="num_qubits >= 1"):
        CircuitSpec(0)
    with pytest.raises(InvalidTaskError, match="distinct qubits"):
        CircuitSpec(2, [(0, 0)])
    with pytest.raises(InvalidTaskError, match=r"range\(2\)"):
        CircuitSpec(2, [(0, 2)])


def test_objects_with_num_qubits_pass_through() -> None:
    class Opaque:
        num_qubits = 7

    opaque = Opaque()
    assert normalize_circuit(opaque) is opaque
    assert analyze_circuit(opaque).num_qubits == 7
    spec = CircuitSpec(3)
    assert normalize_circuit(spec) is spec


@pytest.mark.parametrize("bad", [None, 3, b"OPENQASM 2.0;", {"num_qubits": 2}])
def test_unsupported_types_are_invalid(bad: object) -> None:
    with pytest.raises(InvalidTaskError) as info:
        normalize_circuit(bad)
    assert info.value.field == "circuit"


def test_empty_text_is_invalid() -> None:
    with pytest.raises(InvalidTaskError, match="empty"):
        normalize_circuit("  \n ")


def test_importing_backends_does_not_import_qiskit() -> None:
    code = (
        "import sys, logosq_os_scheduler.backends as b;"
        "b.MockBackend(); b.QiskitBackend;"
        "print('qiskit' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_qasm_text_without_qiskit_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qiskit", None)  # makes `import qiskit` fail
    _circuits._parse_qasm_cached.cache_clear()
    try:
        with pytest.raises(InvalidTaskError, match=r"logosq-os-scheduler\[qiskit\]"):
            normalize_circuit(BELL_QASM2 + "// not cached\n")
    finally:
        _circuits._parse_qasm_cached.cache_clear()


def test_the_panic_guard_converts_only_pyo3_panics() -> None:
    panic_type = type("PanicException", (BaseException,), {"__module__": "pyo3_runtime"})

    def panics() -> None:
        raise panic_type("called `Option::unwrap()` on a `None` value")

    with pytest.raises(Exception, match="Rust panic") as info:
        _circuits.call_guarding_panics(panics, what="parser")
    assert isinstance(info.value.__cause__, panic_type)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _circuits.call_guarding_panics(interrupted, what="parser")


def test_version_header_detection() -> None:
    with pytest.raises(CircuitParseError, match=r"unsupported OpenQASM version 4\.0") as info:
        normalize_circuit("OPENQASM 4.0;\nqubit q;\n")
    assert info.value.line == 1
    with pytest.raises(CircuitParseError, match="must be the first statement") as info:
        normalize_circuit("qubit q;\n\nOPENQASM 3.0;\n")
    assert info.value.line == 3


# --- with Qiskit ---------------------------------------------------------------------------


@pytest.fixture
def qiskit():  # type: ignore[no-untyped-def]
    return pytest.importorskip("qiskit")


@pytest.mark.qiskit
@pytest.mark.parametrize("text", [BELL_QASM2, BELL_QASM3])
@pytest.mark.parametrize("parser", ["reference", "fast"])
def test_bell_programs_parse(qiskit, text: str, parser: str) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qiskit_qasm3_import")
    qc = normalize_circuit(text, qasm3_parser=parser)  # type: ignore[arg-type]
    assert isinstance(qc, qiskit.QuantumCircuit)
    assert qc.count_ops() == {"h": 1, "cx": 1, "measure": 2}
    assert analyze_circuit(qc) == CircuitRequirements(2, frozenset({(0, 1)}), False, 1)
    # Each call returns its own copy, even from the parse cache.
    assert normalize_circuit(text) is not normalize_circuit(text)


@pytest.mark.qiskit
@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        (BELL_QASM2.replace("h q[0];", "h q[0]"), 6, 1, "needed ';'"),
        (BELL_QASM2.replace("h q[0];", "foo q[0];"), 5, 1, "'foo' is not defined"),
        (BELL_QASM2.replace("cx q[0],q[1];", "cx q[0],q[7];"), 6, 11, "out-of-range"),
    ],
)
def test_malformed_qasm2_names_the_line(qiskit, text, line, column, problem) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CircuitParseError) as info:
        normalize_circuit(text)
    err = info.value
    assert (err.qasm_version, err.line, err.column, err.field) == (2, line, column, "circuit")
    assert problem in str(err)
    assert f"line {line}" in str(err)


@pytest.mark.qiskit
@pytest.mark.parametrize("parser", ["reference", "fast"])
@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        # ANTLR reports this with an empty message: the position comes from its token.
        (BELL_QASM3.replace("h q[0];", "h q[0]"), 7, 1, "unexpected 'cx', expected ';'"),
        (BELL_QASM3.rstrip().rstrip(";"), 8, 14, "unexpected end of the program"),
        (BELL_QASM3.replace("h q[0];", "foo q[0];"), 6, 1, "gate 'foo' is not defined"),
        # The converter fails with a bare IndexError: the span comes from the traceback.
        (BELL_QASM3.replace("h q[0];", "h q[5];"), 6, 3, "IndexError"),
        (BELL_QASM3.replace("h q[0];", "$$ q[0];"), 6, 1, "token recognition error"),
    ],
)
def test_malformed_qasm3_names_the_line(qiskit, parser, text, line, column, problem) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qiskit_qasm3_import")
    _circuits._parse_qasm_cached.cache_clear()
    with pytest.raises(CircuitParseError) as info:
        normalize_circuit(text, qasm3_parser=parser)
    err = info.value
    assert (err.qasm_version, err.line, err.column) == (3, line, column)
    assert problem in err.problem


@pytest.mark.qiskit
def test_a_native_importer_panic_is_caught_and_reported(qiskit) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qiskit_qasm3_import")
    import warnings

    import qiskit.qasm3

    # The panic is real: a BaseException that `except Exception` would let through.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qiskit.qasm3.ExperimentalWarning)
        with pytest.raises(Exception, match="Rust panic") as info:
            _circuits.call_guarding_panics(
                lambda: qiskit.qasm3.loads_experimental(PANICS_NATIVE_IMPORTER), what="importer"
            )
    assert type(info.value.__cause__).__name__ == "PanicException"
    assert not isinstance(info.value.__cause__, Exception)
    # Through normalize_circuit the panic becomes a fallback, and the reference importer
    # reports the problem with its line.
    with pytest.raises(CircuitParseError) as parse_info:
        normalize_circuit(PANICS_NATIVE_IMPORTER, qasm3_parser="fast")
    assert parse_info.value.line == 4


@pytest.mark.qiskit
def test_analyze_qiskit_circuits(qiskit) -> None:  # type: ignore[no-untyped-def]
    star = qiskit.QuantumCircuit(5)
    for t in range(1, 5):
        star.cx(0, t)
    req = analyze_circuit(star)
    assert (req.num_qubits, req.max_degree, req.dense) == (5, 4, True)

    triangle = qiskit.QuantumCircuit(3)
    triangle.cz(0, 1)
    triangle.cz(1, 2)
    triangle.cz(2, 0)
    assert analyze_circuit(triangle).dense

    toffoli = qiskit.QuantumCircuit(3)
    toffoli.ccx(0, 1, 2)
    assert analyze_circuit(toffoli).interactions == frozenset({(0, 1), (0, 2), (1, 2)})

    # Declared on 6 qubits, acting on 2: it needs 2. Barriers neither use nor join qubits.
    sparse = qiskit.QuantumCircuit(6, 2)
    sparse.h(2)
    sparse.barrier()
    sparse.cx(2, 4)
    sparse.measure([2, 4], [0, 1])
    assert analyze_circuit(sparse) == CircuitRequirements(2, frozenset({(2, 4)}), False, 1)

    # Interactions inside control flow count, on the outer qubits.
    flow = qiskit.QuantumCircuit(3, 1)
    flow.measure(0, 0)
    with flow.if_test((flow.clbits[0], 1)):
        flow.cx(1, 2)
    assert analyze_circuit(flow) == CircuitRequirements(3, frozenset({(1, 2)}), False, 1)

    assert analyze_circuit(qiskit.QuantumCircuit(3)).num_qubits == 1  # nothing used: 1


@pytest.mark.qiskit
def test_analysing_text_is_analysing_its_circuit(qiskit) -> None:  # type: ignore[no-untyped-def]
    star = qiskit.QuantumCircuit(5)
    for t in range(1, 5):
        star.cx(0, t)
    text = qiskit.qasm2.dumps(star)
    first = analyze_circuit(text)
    assert first == analyze_circuit(star)
    assert (first.num_qubits, first.max_degree, first.dense) == (5, 4, True)
    # Sent again, the same program gives the same answer (from the cache: the parsed circuit
    # is only read, so a copy handed out earlier and modified changes nothing).
    copy = normalize_circuit(text)
    copy.cx(1, 2)
    assert analyze_circuit(text) == first
    with pytest.raises(InvalidTaskError, match="empty"):
        analyze_circuit("   ")


@pytest.mark.qiskit
async def test_tasks_of_the_same_program_share_its_parse_and_leave_no_cycles(qiskit) -> None:  # type: ignore[no-untyped-def]
    import gc

    from logosq_os_scheduler import MockBackend, QuantumScheduler, Task

    # What the scheduler hands to backends is the parser's own circuit, shared...
    shared = _circuits.shared_circuit(BELL_QASM2)
    assert _circuits.shared_circuit(BELL_QASM2) is shared
    # ...while a caller of normalize_circuit gets a copy of its own to change.
    mine = normalize_circuit(BELL_QASM2)
    assert mine is not shared
    mine.x(0)
    assert len(shared.data) == 4 and len(mine.data) == 5

    # A Qiskit circuit is a reference cycle: a copy per task would leave one for the cyclic
    # collector per task. Tasks of the same text leave none.
    async with QuantumScheduler() as s:
        await s.register_backend("mock", MockBackend("mock", num_qubits=4, seed=1))
        await (await s.submit(Task.quantum("warm").with_circuit(BELL_QASM2).with_shots(10)))
        gc.collect()
        gc.disable()
        try:
            handles = [
                s.submit_nowait(Task.quantum(f"b{i}").with_circuit(BELL_QASM2).with_shots(10))
                for i in range(200)
            ]
            results = [await h for h in handles]
            del handles
            freed = gc.collect()
        finally:
            gc.enable()
    assert all(sum(r.value.values()) == 10 for r in results)
    assert freed < 50, f"{freed} objects in reference cycles after 200 tasks"
