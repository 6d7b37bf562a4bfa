"""The canonical encoding of signed fields: exact, injective, and fuzzed with hypothesis."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import subprocess
import sys
from typing import Any

import pytest
from _signing_helpers import completed
from hypothesis import given, settings
from hypothesis import strategies as st

from logosq_os_scheduler import SchedulerError, Task, TaskResult, TaskStatus
from logosq_os_scheduler.backends import CircuitSpec
from logosq_os_scheduler.security import (
    DOMAIN,
    MalformedRecordError,
    OpaqueValue,
    SignedRecord,
    UnsignableValueError,
    circuit_digest,
)
from logosq_os_scheduler.security._encoding import (
    MAX_DEPTH,
    canonical_text,
    decode_value,
    encode_value,
    parse_json,
)

pytestmark = pytest.mark.security


def text_of(value: object, *, strict: bool = False) -> str:
    return canonical_text(encode_value(value, strict=strict))


# --- exactness ------------------------------------------------------------------------------


def test_values_python_calls_equal_encode_differently() -> None:
    groups = [
        [1, 1.0, True, "1", (1,), [1], {1}],
        [0, 0.0, -0.0, False, None, "", b"", (), [], frozenset(), {}],
        [math.inf, -math.inf, math.nan, "inf", "nan"],
        [{"a": 1}, {"a": 1.0}, [("a", 1)], {("a",): 1}],
        [2**63, 2**63 - 1, float(2**63), -(2**63), -(2**63) + 1],
    ]
    for group in groups:
        texts = [text_of(v) for v in group]
        assert len(set(texts)) == len(texts), group


def test_floats_are_exact_and_ints_of_any_size_survive() -> None:
    for x in (0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -0.0):
        back = decode_value(encode_value(x))
        assert isinstance(back, float) and back.hex() == x.hex()
    assert math.isnan(decode_value(encode_value(math.nan)))  # type: ignore[arg-type]
    for n in (2**63, -(2**200), 10**5000):  # 10**5000 is past str(int)'s digit limit
        assert decode_value(encode_value(n)) == n
    assert encode_value(2**63 - 1) == 2**63 - 1  # plain JSON number while it fits in 63 bits


def test_the_canonical_text_is_ordered_and_ascii() -> None:
    assert text_of({"b": 1, "a": [1, (2,)]}) == '{"$m":{"a":[1,{"$t":[2]}],"b":1}}'
    assert text_of({2: "x", 1: "y"}) == '{"$d":[[1,"y"],[2,"x"]]}'
    assert text_of({"b", "a"}) == '{"$s":["a","b"]}'
    assert text_of("é\ud800") == '"\\u00e9\\ud800"'  # lone surrogates too
    assert text_of(1.5) == '{"$f":"0x1.8000000000000p+0"}'


def test_subclasses_encode_as_their_base_type() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Colour(enum.StrEnum):
        RED = "red"

    assert text_of(Level.HIGH) == text_of(3)
    assert text_of(Colour.RED) == text_of("red")
    assert text_of(TaskStatus.COMPLETED) != text_of("completed")  # a plain Enum is an object


def test_objects_are_recorded_by_type_and_data_unless_strict() -> None:
    np = pytest.importorskip("numpy")

    @dataclasses.dataclass
    class Point:
        x: float
        y: tuple[int, ...]

    big = np.arange(5000, dtype=np.float64)
    encoded = encode_value({"p": Point(1.5, (2,)), "a": big, "s": TaskStatus.FAILED})
    back = decode_value(encoded)
    assert isinstance(back, dict)
    assert isinstance(back["p"], OpaqueValue) and back["p"].kind == "object"
    assert back["p"].type_name.endswith("Point")
    # Every element of a long array is signed: none elided as repr() would.
    a = back["a"]
    assert isinstance(a, OpaqueValue) and a.type_name == "numpy.ndarray"
    data = decode_value(parse_json(a.data))
    assert isinstance(data, dict) and len(data["values"]) == 5000 and data["shape"] == (5000,)
    assert back["s"] == OpaqueValue("object", "logosq_os_scheduler._task.TaskStatus", '"FAILED"')
    # Encoding what was decoded gives the same text: a record read back still verifies.
    assert canonical_text(encode_value(back)) == canonical_text(encoded)
    with pytest.raises(UnsignableValueError, match=r"at value\['a'\].*numpy.ndarray"):
        encode_value({"a": big}, strict=True)


def test_cycles_depth_and_broken_objects_are_refused_with_the_path() -> None:
    d: dict[str, object] = {}
    d["self"] = [d]
    with pytest.raises(UnsignableValueError, match=r"at value\['self'\]\[0\].*itself"):
        encode_value(d)
    deep: object = 0
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(UnsignableValueError, match="deep"):
        encode_value(deep)
    shallow: object = 0
    for _ in range(MAX_DEPTH - 1):
        shallow = [shallow]
    assert decode_value(encode_value(shallow)) == shallow

    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    with pytest.raises(UnsignableValueError, match="no repr for you"):
        encode_value([BadRepr()], field="metadata")

    class Same:
        def __repr__(self) -> str:
            return "Same()"

        def __hash__(self) -> int:
            return id(self)

    with pytest.raises(UnsignableValueError, match="same encoding"):
        encode_value({Same(), Same()})


@pytest.mark.parametrize(
    "encoded",
    [
        {"$f": 1},
        {"$i": "zz"},
        {"$b": "***"},
        {"$t": 1},
        {"$d": [[1]]},
        {"$r": {"type": "x"}},
        {"$o": {"type": "x", "data": 1, "extra": 2}},
        {"$m": {}, "$t": []},
        {"plain": "object"},
        {"$q": 1},
    ],
)
def test_decoding_refuses_what_the_encoder_never_writes(encoded: Any) -> None:
    with pytest.raises(MalformedRecordError):
        decode_value(encoded)


# --- circuit digests --------------------------------------------------------------------------


def test_digests_of_text_bytes_and_specs() -> None:
    qasm = "OPENQASM 3.0;\nqubit[2] q;\n"
    assert circuit_digest(qasm) == circuit_digest(qasm)
    assert circuit_digest(qasm) != circuit_digest(qasm + " ")
    assert circuit_digest(qasm).startswith("qasm-sha256:") and len(circuit_digest(qasm)) == 76
    assert circuit_digest(b"\x00") != circuit_digest("\x00")
    assert circuit_digest(CircuitSpec(2, [(0, 1)])) == circuit_digest(CircuitSpec(2, ((0, 1),)))
    assert circuit_digest(CircuitSpec(2)) != circuit_digest(CircuitSpec(2, ((0, 1),)))
    with pytest.raises(UnsignableValueError, match=r"cannot digest a builtins\.int"):
        circuit_digest(42)


@pytest.mark.qiskit
def test_qpy_digests_ignore_names_and_cover_every_gate() -> None:
    qiskit = pytest.importorskip("qiskit")

    def bell(name: str | None = None, angle: float = 0.0) -> Any:
        qc = qiskit.QuantumCircuit(2, 2, name=name)
        qc.h(0)
        qc.cx(0, 1)
        qc.rz(angle, 1)
        qc.measure([0, 1], [0, 1])
        return qc

    a = circuit_digest(bell())
    assert a.startswith("qpy13-sha256:")
    assert circuit_digest(bell("named")) == a  # Qiskit numbers unnamed circuits: not content
    assert circuit_digest(bell(angle=1e-12)) != a
    qc = bell()
    qc.metadata = {"run": object()}  # metadata JSON cannot hold counts by its type
    assert circuit_digest(qc) == circuit_digest(qc) != a


# --- hypothesis: the encoder never escapes its contract --------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
hashables = st.recursive(
    scalars.filter(lambda v: not (isinstance(v, float) and math.isnan(v))),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=20,
)


class _Weird:
    """A user type: lenient signing records its repr; strict signing refuses it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"_Weird({self.text!r})"


class _Raising:
    def __repr__(self) -> str:
        raise ValueError("repr refused")


anything = st.recursive(
    scalars | st.builds(_Weird, st.text(max_size=5)) | st.builds(_Raising) | st.just(object),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


def _typed(v: object) -> object:
    """An independent model of "the same data": type and value, floats by their bits."""
    if v is None or isinstance(v, (bool, str, bytes)):
        return (type(v).__name__, v)
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("float", v.hex())
    if isinstance(v, list):
        return ("list", tuple(_typed(x) for x in v))
    if isinstance(v, tuple):
        return ("tuple", tuple(_typed(x) for x in v))
    if isinstance(v, (set, frozenset)):
        return ("set", tuple(sorted((_typed(x) for x in v), key=repr)))
    if isinstance(v, dict):
        items = ((_typed(k), _typed(x)) for k, x in v.items())
        return ("dict", tuple(sorted(items, key=repr)))
    raise AssertionError(type(v))


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_encoding_round_trips_exactly(value: object) -> None:
    encoded = encode_value(value, strict=True)
    text = canonical_text(encoded)
    assert text.isascii()
    back = decode_value(parse_json(text))
    assert _typed(back) == _typed(value)
    assert canonical_text(encode_value(back, strict=True)) == text


@settings(max_examples=300, deadline=None)
@given(json_like, json_like)
def test_two_values_share_an_encoding_only_if_they_are_the_same_data(a: object, b: object) -> None:
    same_text = text_of(a, strict=True) == text_of(b, strict=True)
    assert same_text == (_typed(a) == _typed(b))


def _result(value: object, metadata: dict[str, object]) -> TaskResult[Any]:
    task = Task.classical("fuzz").with_function(print).with_metadata(**metadata).build()
    return TaskResult(completed(task, value, (1.0, 2.0, 3.0)))


@pytest.fixture(scope="module")
def signers() -> tuple[Any, Any]:
    """A lenient and a strict signer with one key (module scope: hypothesis reuses them)."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from logosq_os_scheduler.security import ResultSigner

    key = ed25519.Ed25519PrivateKey.generate()
    return ResultSigner(key, wall_clock=lambda: 5.0), ResultSigner(key, strict=True)


@settings(max_examples=200, deadline=None)
@given(
    json_like, st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), json_like, max_size=3)
)
def test_signing_fuzzed_values_round_trips(
    signers: tuple[Any, Any], value: object, metadata: dict[str, object]
) -> None:
    from logosq_os_scheduler.security import verify_result

    fuzz_signer = signers[0]
    result = _result(value, metadata)
    record = fuzz_signer.sign_result(result)
    result.signature = record.signature
    assert verify_result(result, fuzz_signer.public_key, record=record)
    back = SignedRecord.from_json(record.to_json())
    assert verify_result(back, fuzz_signer.public_key)
    assert back.payload() == record.payload()
    assert record.payload().startswith(DOMAIN)


@settings(max_examples=200, deadline=None)
@given(anything, st.booleans())
def test_signing_anything_raises_only_scheduler_errors(
    signers: tuple[Any, Any], value: object, strict: bool
) -> None:
    from logosq_os_scheduler.security import verify_result

    signer = signers[1] if strict else signers[0]
    try:
        record = signer.sign_result(_result(value, {}))
    except SchedulerError:
        return
    assert verify_result(SignedRecord.from_json(record.to_json()), signer.public_key)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_reading_arbitrary_text_as_a_record_raises_only_malformed_record_error(
    text: str | bytes,
) -> None:
    with contextlib.suppress(MalformedRecordError):
        SignedRecord.from_json(text)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "$f",
                        "$i",
                        "$t",
                        "$b",
                        "$s",
                        "$m",
                        "$d",
                        "$o",
                        "$r",
                        "type",
                        "data",
                        "repr",
                        "x",
                    ]
                ),
                inner,
                max_size=3,
            )
        ),
        max_leaves=10,
    )
)
def test_decoding_arbitrary_json_raises_only_malformed_record_error(encoded: Any) -> None:
    try:
        back = decode_value(encoded)
    except MalformedRecordError:
        return
    encode_value(back)  # whatever decodes, encodes


# --- the package's face ---------------------------------------------------------------------


def test_security_all_lists_exactly_the_public_names() -> None:
    import logosq_os_scheduler.security as security

    public = {n for n in dir(security) if not n.startswith("_")}
    assert set(security.__all__) == public
    errors = [getattr(security, n) for n in security.__all__ if n.endswith("Error")]
    assert len(errors) == 4 and all(issubclass(e, SchedulerError) for e in errors)


def test_importing_security_does_not_import_cryptography() -> None:
    code = (
        "import sys\n"
        "import logosq_os_scheduler.security as s\n"
        "assert 'cryptography' not in sys.modules, 'imported too early'\n"
        "print(s.circuit_digest('OPENQASM 3.0;'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("qasm-sha256:")


def test_signing_without_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from logosq_os_scheduler.security import ResultSigner

    monkeypatch.setitem(sys.modules, "cryptography", None)  # as if it were not installed
    with pytest.raises(SchedulerError, match=r"logosq-os-scheduler\[security\]") as info:
        ResultSigner("key.pem")
    assert isinstance(info.value, ImportError)
