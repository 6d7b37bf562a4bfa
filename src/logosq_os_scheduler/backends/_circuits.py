"""Circuits as the scheduler takes them: parsing OpenQASM, and deriving what a circuit needs.

A quantum task's circuit arrives as a Qiskit ``QuantumCircuit``, as OpenQASM 2 or OpenQASM 3
source text, or (for backends that need no gates, like :class:`MockBackend` in the core
profile) as a :class:`CircuitSpec`. :func:`normalize_circuit` turns text into a
``QuantumCircuit`` once, at submit, so that a malformed program is rejected there with a
:class:`CircuitParseError` naming its line, never later on a backend. :func:`analyze_circuit`
derives the :class:`~logosq_os_scheduler.backends.CircuitRequirements` that routing matches
against backends.

Qiskit is imported only when text is parsed or a ``QuantumCircuit`` is analyzed; a
:class:`CircuitSpec` needs nothing beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import types
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from .._errors import InvalidTaskError, PermanentBackendError
from .._task import has_num_qubits, unsupported_circuit
from ._aer_worker import is_rust_panic
from ._base import CircuitRequirements

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

__all__ = [
    "CircuitParseError",
    "CircuitSpec",
    "SupportsNumQubits",
    "analyze_circuit",
    "normalize_circuit",
]

_T = TypeVar("_T")

QASM3Parser = Literal["reference", "fast"]
"""Which OpenQASM 3 importer :func:`normalize_circuit` uses (see there)."""

_QISKIT_EXTRA_HINT = "install the qiskit extra: pip install 'logosq-os-scheduler[qiskit]'"

# Instructions that occupy a qubit without acting on it: they neither make a qubit "used" nor
# join two qubits into an interaction.
_NON_OPERATIONS = frozenset({"barrier"})

# Bounded so that a stream of distinct programs cannot grow memory without limit; repeated
# submissions of the same text (a common pattern: one ansatz, many tasks) parse once.
_PARSE_CACHE_SIZE = 256


@runtime_checkable
class SupportsNumQubits(Protocol):
    """Anything that says how many qubits it needs: every circuit the scheduler accepts."""

    @property
    def num_qubits(self) -> int:
        """How many qubits the circuit declares."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitSpec:
    """A circuit described only by its shape, for backends that run no gates.

    Use it with :class:`~logosq_os_scheduler.backends.MockBackend` when Qiskit is not
    installed (the core profile), or in tests and benchmarks where only the scheduling
    matters. A mock samples bitstrings of ``num_qubits`` bits for it.

    Args:
        num_qubits: Qubits the circuit uses (at least 1).
        interactions: Pairs of qubit indices joined by a two-qubit gate (they tell how dense
            the circuit is; only ``with_all_to_all()`` on the task demands all-to-all).

    Raises:
        InvalidTaskError: If ``num_qubits`` is not a positive int, or an interaction names a
            qubit outside ``range(num_qubits)`` or joins a qubit to itself.
    """

    num_qubits: int
    interactions: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        n = self.num_qubits
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidTaskError("circuit", f"CircuitSpec needs num_qubits >= 1, got {n!r}")
        pairs: list[tuple[int, int]] = []
        try:
            items = list(self.interactions)
        except TypeError:
            raise InvalidTaskError(
                "circuit",
                f"CircuitSpec interactions must be pairs of qubits, got {self.interactions!r}",
            ) from None
        for pair in items:
            if (
                not isinstance(pair, (tuple, list))
                or len(pair) != 2
                or not all(isinstance(q, int) and not isinstance(q, bool) for q in pair)
            ):
                raise InvalidTaskError(
                    "circuit", f"CircuitSpec interaction {pair!r} must be a pair of qubit indices"
                )
            a, b = pair
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise InvalidTaskError(
                    "circuit",
                    f"CircuitSpec interaction {pair!r} must join two distinct qubits in range({n})",
                )
            pairs.append((a, b))
        # Frozen: normalise through object.__setattr__ so any iterable of pairs is accepted.
        object.__setattr__(self, "interactions", tuple(pairs))


class CircuitParseError(InvalidTaskError):
    """An OpenQASM program could not be parsed or converted to a circuit.

    ``field`` is always ``"circuit"``; the message names the line, the column and the problem.

    Attributes:
        qasm_version: ``2`` or ``3``.
        line: The 1-based line of the problem, or None when the parser gave no position.
        column: The 1-based column, or None when unknown.
    """

    def __init__(
        self, qasm_version: int, line: int | None, column: int | None, problem: str
    ) -> None:
        where = f"OpenQASM {qasm_version} program"
        if line is not None:
            where += f", line {line}"
            if column is not None:
                where += f", column {column}"
        else:
            where += " (the parser did not say which line)"
        super().__init__("circuit", f"{where}: {problem}")
        self.qasm_version = qasm_version
        self.line = line
        self.column = column


def normalize_circuit(
    circuit: object, *, qasm3_parser: QASM3Parser = "reference"
) -> SupportsNumQubits:
    """Turn a submitted circuit into the object backends take.

    * A Qiskit ``QuantumCircuit`` is returned as is.
    * OpenQASM text is parsed into a new ``QuantumCircuit``. The version comes from the
      ``OPENQASM 2.0;`` / ``OPENQASM 3.0;`` header (comments may precede it); text without a
      header is read as OpenQASM 3, whose specification makes the header optional.
      OpenQASM 2 is read with Qiskit's legacy ``qelib1.inc`` semantics, so programs written
      for ``qiskit.QuantumCircuit.from_qasm_str`` load unchanged.
    * A :class:`CircuitSpec`, or any other object with an ``int`` ``num_qubits`` (a backend's
      own circuit type), is returned as is.

    Parsed programs are kept in a small bounded cache keyed by their text; each call returns
    its own copy, so callers may modify the result.

    Args:
        circuit: The circuit as submitted.
        qasm3_parser: ``"reference"`` (default) uses ``qiskit.qasm3.loads``
            (qiskit-qasm3-import, pure Python). ``"fast"`` first tries Qiskit's experimental
            native importer (much faster) and falls back to the reference importer whenever it
            fails, for any reason including a Rust panic, so errors are always reported by the
            reference importer. The native importer prints its own diagnostics to stderr when it
            fails.

    Returns:
        A ``QuantumCircuit`` for circuits and text; other accepted objects unchanged.

    Raises:
        CircuitParseError: If OpenQASM text is malformed (names the line and the problem).
        InvalidTaskError: If the circuit is of an unsupported type, the text is empty, or
            OpenQASM text is given without the qiskit extra installed.
    """
    if qasm3_parser not in ("reference", "fast"):
        raise InvalidTaskError(
            "qasm3_parser", f"must be 'reference' or 'fast', got {qasm3_parser!r}"
        )
    if isinstance(circuit, str):
        parsed = _parse_qasm_cached(circuit, qasm3_parser)
        return parsed.copy()  # type: ignore[no-any-return]
    if has_num_qubits(circuit):  # a QuantumCircuit, a CircuitSpec, a backend's own circuit
        return circuit  # type: ignore[return-value]
    raise unsupported_circuit(circuit)


def shared_circuit(circuit: object) -> SupportsNumQubits:
    """:func:`normalize_circuit` without the copy: OpenQASM text gives the parser's cached
    circuit itself, shared by every task that submitted the same program. What the
    scheduler hands to backends (which must not change a circuit they are given: the same
    one is sent again on a retry), never to a caller who may change it.

    A Qiskit circuit is a reference cycle (the circuit and its scope interface), which only
    the cyclic collector frees: a copy per task made a batch of submits leave thousands of
    them for it (a full collection of 360 ms in a server that had run 50,000 tasks).
    """
    if isinstance(circuit, str):
        return _parse_qasm_cached(circuit, "reference")  # type: ignore[no-any-return]
    return normalize_circuit(circuit)


@functools.lru_cache(maxsize=1024)
def _analyze_spec(spec: CircuitSpec) -> CircuitRequirements:
    # A CircuitSpec is frozen and hashable: the same shape submitted again is not re-analysed.
    pairs = frozenset((min(a, b), max(a, b)) for a, b in spec.interactions)
    return CircuitRequirements.from_interactions(spec.num_qubits, pairs)


def analyze_circuit(circuit: object) -> CircuitRequirements:
    """Derive what a circuit needs from a backend.

    * ``num_qubits`` counts the qubits that carry at least one operation (a gate, a
      measurement, a reset; barriers do not count), and is at least 1. A circuit declared on
      5 qubits that touches only 2 needs 2: the transpiler places it on any 2 physical qubits
      and :meth:`QiskitBackend.prepare` drops its idle qubits when the device is smaller.
      A :class:`CircuitSpec` (or another object with ``num_qubits``) needs what it declares.
    * ``interactions`` are the pairs of qubits (by their index in the circuit) joined by any
      multi-qubit operation, every pair of a three-or-more-qubit gate included (a Toffoli
      needs all three pairs), looking inside control-flow blocks. From them
      :meth:`CircuitRequirements.from_interactions` derives the highest degree and whether
      the circuit is dense (a qubit with four or more partners, or a triangle). No circuit
      needs all-to-all connectivity by its shape: only a task's ``with_all_to_all()`` asks
      for it.

    Args:
        circuit: A ``QuantumCircuit``, OpenQASM text, a :class:`CircuitSpec`, or any object
            with ``num_qubits``.

    Returns:
        The circuit's requirements.

    Raises:
        InvalidTaskError: As :func:`normalize_circuit`, for text or unsupported objects.
    """
    if isinstance(circuit, str):
        # The same program sent again is neither parsed nor walked again (nor copied).
        return _analyze_text(circuit)
    if isinstance(circuit, CircuitSpec):
        return _analyze_spec(circuit)
    if _is_quantum_circuit(circuit):
        return _analyze_quantum_circuit(circuit)
    normalized = normalize_circuit(circuit)
    return CircuitRequirements.from_interactions(max(1, normalized.num_qubits), frozenset())


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _analyze_text(text: str) -> CircuitRequirements:
    # The parsed program from the parser's cache, walked in place: analysis only reads it.
    return _analyze_quantum_circuit(_parse_qasm_cached(text, "reference"))


# --- QuantumCircuit analysis ---------------------------------------------------------------


def measured_circuit(backend: str, circuit: object) -> Any:
    """``circuit`` as a Qiskit circuit a sampling backend (a provider's Sampler, Braket) can
    run: OpenQASM text parsed, and refused when it is not a circuit with gates or measures
    nothing.

    Raises:
        PermanentBackendError: Naming ``backend``, for a CircuitSpec (no gates to run), another
            object, or a circuit without measurements (it would have no counts).
    """
    qc = normalize_circuit(circuit)
    if not _is_quantum_circuit(qc):
        raise PermanentBackendError(
            backend,
            f"runs Qiskit circuits or OpenQASM text, not a {type(qc).__name__} "
            "(a CircuitSpec has no gates to run)",
        )
    if qc.num_clbits == 0:  # type: ignore[attr-defined]
        raise PermanentBackendError(
            backend,
            "the circuit measures nothing, so it has no counts: add measurements "
            "(for example qc.measure_all())",
        )
    return qc


def _is_quantum_circuit(obj: object) -> bool:
    """True if ``obj`` is a Qiskit QuantumCircuit, without importing Qiskit to find out."""
    if sys.modules.get("qiskit") is None:
        return False  # nobody can hold a QuantumCircuit without having imported qiskit
    from qiskit import QuantumCircuit

    return isinstance(obj, QuantumCircuit)


def _analyze_quantum_circuit(qc: QuantumCircuit) -> CircuitRequirements:
    active: set[int] = set()
    pairs: set[tuple[int, int]] = set()
    index = {bit: i for i, bit in enumerate(qc.qubits)}
    _collect(qc, [index[q] for q in qc.qubits], active, pairs)
    return CircuitRequirements.from_interactions(max(1, len(active)), frozenset(pairs))


def _collect(
    qc: QuantumCircuit, outer: list[int], active: set[int], pairs: set[tuple[int, int]]
) -> None:
    """Walk ``qc`` whose i-th qubit is outer qubit ``outer[i]``, recording use and pairs."""
    local = {bit: outer[i] for i, bit in enumerate(qc.qubits)}
    for instruction in qc.data:
        # The name and the control-flow flag come from Qiskit's Rust core; `.operation` would
        # build a Python gate object for every instruction (most of the cost for bound
        # parametrised circuits), so it is read only for control flow.
        if instruction.name in _NON_OPERATIONS:
            continue
        qubits = [local[q] for q in instruction.qubits]
        if instruction.is_control_flow():
            # A control-flow block's qubits are, position by position, the instruction's.
            for block in instruction.operation.blocks:
                _collect(block, qubits, active, pairs)
            continue
        active.update(qubits)
        for i, a in enumerate(qubits):
            for b in qubits[i + 1 :]:
                if a != b:
                    pairs.add((min(a, b), max(a, b)))


# --- OpenQASM parsing ---------------------------------------------------------------------

# Whitespace and comments may precede the header: `// ...` lines and `/* ... */` blocks.
_HEADER = re.compile(
    r"\A(?:\s+|//[^\n]*(?:\n|\Z)|/\*.*?\*/)*OPENQASM\s+(?P<version>[0-9]+(?:\.[0-9]+)?)\s*;",
    re.DOTALL,
)
_OPENQASM_WORD = re.compile(r"\bOPENQASM\b")


def _detect_version(text: str) -> int:
    match = _HEADER.match(text)
    if match is None:
        stray = _OPENQASM_WORD.search(text)
        if stray is not None:
            line = text.count("\n", 0, stray.start()) + 1
            raise CircuitParseError(
                3 if "OPENQASM 3" in text else 2,
                line,
                None,
                "the OPENQASM version header must be the first statement "
                "(only comments may precede it), and be written 'OPENQASM <version>;'",
            )
        return 3  # OpenQASM 3 makes the header optional
    version = match.group("version")
    major = version.split(".", 1)[0]
    if version in ("2", "2.0"):
        return 2
    if major == "3":
        return 3
    line = text.count("\n", 0, match.start("version")) + 1
    raise CircuitParseError(
        int(major) if major.isdigit() else 0,
        line,
        None,
        f"unsupported OpenQASM version {version}: OpenQASM 2.0 and 3 are supported",
    )


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse_qasm_cached(text: str, qasm3_parser: QASM3Parser) -> QuantumCircuit:
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise InvalidTaskError("circuit", "OpenQASM text is empty")
    version = _detect_version(text)
    _check_register_sizes(text, version)
    try:
        import qiskit  # noqa: F401 - imported to tell a missing extra from a parse failure
    except ImportError as exc:
        raise InvalidTaskError(
            "circuit", f"OpenQASM {version} text needs Qiskit to parse it: {_QISKIT_EXTRA_HINT}"
        ) from exc
    if version == 2:
        return _parse_qasm2(text)
    if qasm3_parser == "fast":
        fast = _try_fast_qasm3(text)
        if fast is not None:
            return fast
    return _parse_qasm3(text)


_QASM2_POSITION = re.compile(r"^<input>:(?P<line>[0-9]+),(?P<column>[0-9]+):\s*(?P<problem>.*)$")


# The most qubits or bits one register may declare. No backend comes near it, and it keeps a
# hostile declaration (qubit[1000000000]) from reaching Qiskit, whose allocation of it can
# abort the whole process.
MAX_REGISTER_SIZE = 100_000

_CONST_INT = re.compile(r"\bconst\s+u?int(?:\s*\[\s*\d+\s*\])?\s+(\w+)\s*=\s*([^;]+);")
_DECLARATION = re.compile(r"\b(?:(?:qreg|creg)\s+\w+\s*\[([^\]]*)\]|(?:qubit|bit)\s*\[([^\]]*)\])")


def _check_register_sizes(text: str, version: int) -> None:
    """Refuse register declarations larger than :data:`MAX_REGISTER_SIZE`, before parsing.

    A size must be an integer literal or (OpenQASM 3) a ``const`` integer defined by one.
    """
    consts: dict[str, str] = {m.group(1): m.group(2).strip() for m in _CONST_INT.finditer(text)}
    for match in _DECLARATION.finditer(text):
        size_text = (match.group(1) or match.group(2) or "").strip()
        resolved = consts.get(size_text, size_text)
        line = text.count("\n", 0, match.start()) + 1
        if not resolved.isdigit():
            raise CircuitParseError(
                version,
                line,
                None,
                f"register size {size_text!r} must be an integer literal or a const integer "
                "defined by one",
            )
        # Compare as text first: a number with more digits than the cap is refused without
        # converting an arbitrarily long string.
        digits = resolved.lstrip("0") or "0"
        if len(digits) > len(str(MAX_REGISTER_SIZE)) or int(digits) > MAX_REGISTER_SIZE:
            raise CircuitParseError(
                version,
                line,
                None,
                f"a register of {resolved} is larger than the {MAX_REGISTER_SIZE:,} allowed",
            )


def _parse_qasm2(text: str) -> QuantumCircuit:
    import qiskit.qasm2 as qasm2

    try:
        return call_guarding_panics(
            lambda: qasm2.loads(
                text,
                include_path=qasm2.LEGACY_INCLUDE_PATH,
                custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS,
                custom_classical=qasm2.LEGACY_CUSTOM_CLASSICAL,
                strict=False,
            ),
            what="OpenQASM 2 parser",
        )
    except (qasm2.QASM2Error, _ParserPanicError) as exc:
        message = _message_of(exc)
        match = _QASM2_POSITION.match(message)
        if match is not None:
            line, column = int(match["line"]), int(match["column"]) + 1  # Qiskit: 0-based column
            raise CircuitParseError(2, line, column, match["problem"]) from exc
        raise CircuitParseError(2, None, None, message or type(exc).__name__) from exc


def _try_fast_qasm3(text: str) -> QuantumCircuit | None:
    """The native importer's circuit, or None if it failed in any way (even a panic)."""
    import qiskit.qasm3 as qasm3

    try:
        with warnings.catch_warnings():
            # The importer announces itself as experimental on every call.
            warnings.simplefilter("ignore", qasm3.ExperimentalWarning)
            return call_guarding_panics(
                lambda: qasm3.loads_experimental(text), what="OpenQASM 3 native importer"
            )
    except Exception:
        # Deliberately broad: whatever the native importer cannot do (a syntax error, a
        # feature it lacks, a panic), the reference importer either does or explains.
        return None


def _parse_qasm3(text: str) -> QuantumCircuit:
    try:
        import qiskit.qasm3 as qasm3
        import qiskit_qasm3_import  # noqa: F401 - the reference importer qasm3.loads uses
    except ImportError as exc:
        raise InvalidTaskError(
            "circuit",
            f"OpenQASM 3 text needs the qiskit-qasm3-import package: {_QISKIT_EXTRA_HINT}",
        ) from exc
    try:
        return call_guarding_panics(lambda: qasm3.loads(text), what="OpenQASM 3 importer")
    except Exception as exc:
        line, column, problem = _locate_qasm3_error(exc, text)
        raise CircuitParseError(3, line, column, problem) from exc


_QASM3_L_C = re.compile(r"^L(?P<line>[0-9]+):C(?P<column>[0-9]+):\s*(?P<problem>.*)$", re.DOTALL)
_QASM3_LINE_COMMA = re.compile(
    r"^(?P<line>[0-9]+),(?P<column>[0-9]+):\s*(?P<problem>.*)$", re.DOTALL
)


def _locate_qasm3_error(exc: BaseException, text: str) -> tuple[int | None, int | None, str]:
    """Find the line, column (both 1-based) and problem of an OpenQASM 3 import failure.

    The reference importer reports its failures in four shapes, tried in turn:

    1. an ANTLR syntax error, whose ``QASM3ParsingError`` has an *empty* message: the position
       and the offending token are on the ``RecognitionException`` in its cause chain;
    2. a lexer error or a parser-side check: ``"L4:C0: message"``;
    3. a conversion error (``ConversionError``/``QASM3ImporterError``): ``"4,0: message"``;
    4. anything else (an ``IndexError`` deep in the converter, for ``h q[5]`` on two qubits):
       no position in the message, but the AST node being converted, which carries a span,
       is still a local of some frame of the traceback.
    """
    recognition = _find_recognition_exception(exc)
    if recognition is not None:
        token = recognition.offendingToken
        if token is not None:
            return token.line, token.column + 1, _describe_syntax_error(recognition, token)
    for err in _exception_chain(exc):
        message = _message_of(err)
        for pattern in (_QASM3_L_C, _QASM3_LINE_COMMA):
            match = pattern.match(message)
            if match is not None:
                return int(match["line"]), int(match["column"]) + 1, match["problem"].strip()
    problem = _message_of(exc) or type(exc).__name__
    if not isinstance(exc, _ParserPanicError) and type(exc).__module__.split(".")[0] not in (
        "qiskit",
        "qiskit_qasm3_import",
        "openqasm3",
    ):
        # A bare IndexError or TypeError reads better with the stage it came from.
        problem = f"could not be converted to a circuit ({type(exc).__name__}: {problem})"
    span = _innermost_span(exc)
    if span is not None:
        line, column = span
        return line, column + 1, problem
    return None, None, problem


def _message_of(err: BaseException) -> str:
    """An exception's own message: Qiskit errors keep it in ``.message`` (their ``str()``
    is the message's repr, quotes and escapes included)."""
    message = getattr(err, "message", None)
    return (message if isinstance(message, str) else str(err)).strip()


def _exception_chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _find_recognition_exception(exc: BaseException) -> _RecognitionLike | None:
    """The ANTLR RecognitionException behind a parse failure, wherever it sits in the chain."""
    for err in _exception_chain(exc):
        candidates: list[object] = [err, *err.args]
        for candidate in candidates:
            if hasattr(candidate, "offendingToken") and hasattr(candidate, "recognizer"):
                return candidate  # type: ignore[return-value]
    return None


class _TokenLike(Protocol):
    line: int
    column: int
    text: str | None
    type: int


class _RecognitionLike(Protocol):
    offendingToken: _TokenLike | None
    recognizer: object

    def getExpectedTokens(self) -> object: ...


def _describe_syntax_error(recognition: _RecognitionLike, token: _TokenLike) -> str:
    found = "end of the program" if token.type == -1 else repr(token.text)
    expected = ""
    try:
        recognizer = recognition.recognizer
        tokens = recognition.getExpectedTokens()
        rendered = tokens.toString(  # type: ignore[attr-defined]
            recognizer.literalNames,  # type: ignore[attr-defined]
            recognizer.symbolicNames,  # type: ignore[attr-defined]
        )
        # A long alternative list helps nobody; name the expectation only when it is short.
        if rendered and rendered.count(",") < 5:
            expected = f", expected {rendered.strip('{}')}"
    except Exception:
        pass
    return f"syntax error: unexpected {found}{expected}"


def _innermost_span(exc: BaseException) -> tuple[int, int] | None:
    """(line, 0-based column) of the deepest AST node with a span in ``exc``'s traceback."""
    found: tuple[int, int] | None = None
    for err in _exception_chain(exc):
        tb: types.TracebackType | None = err.__traceback__
        while tb is not None:
            node = tb.tb_frame.f_locals.get("node")
            span = getattr(node, "span", None)
            line = getattr(span, "start_line", None)
            column = getattr(span, "start_column", None)
            if isinstance(line, int) and isinstance(column, int):
                found = (line, column)
            tb = tb.tb_next
        if found is not None:
            return found
    return None


# --- Rust panics ----------------------------------------------------------------------------


class _ParserPanicError(Exception):
    """A Rust panic inside a native parser, converted into an ordinary exception."""


def call_guarding_panics(fn: Callable[[], _T], *, what: str) -> _T:
    """Call ``fn``, turning a Rust panic inside it into an ordinary exception.

    Only a pyo3 ``PanicException`` is converted; ``KeyboardInterrupt``, ``SystemExit``,
    ``asyncio.CancelledError`` and every other ``BaseException`` pass through untouched.

    Args:
        fn: The call to make (a native parser or importer).
        what: What ``fn`` is, for the error message.

    Returns:
        What ``fn`` returns.

    Raises:
        Exception: Whatever ``fn`` raises; a panic becomes a ``_ParserPanicError`` (an
            ``Exception``) whose ``__cause__`` is the panic.
    """
    try:
        return fn()
    except BaseException as exc:
        # Every pyo3 extension defines its own `pyo3_runtime.PanicException`, deriving from
        # BaseException, so it is recognised by name (see `is_rust_panic`).
        if isinstance(exc, Exception) or not is_rust_panic(exc):
            raise
        raise _ParserPanicError(f"the {what} crashed (Rust panic: {exc})") from exc
