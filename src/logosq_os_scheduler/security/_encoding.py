"""Canonical encoding: one exact byte string for every value a signed result holds.

A signature covers bytes, so a value must encode to the same bytes wherever and whenever it
is encoded, and two different values must never encode alike. Plain JSON gives neither: it
has no tuples, sets, bytes or non-finite floats, and float text differs between writers. So
values are encoded as JSON in which everything beyond null, booleans, strings, integers of up
to 63 bits and lists is a one-key object whose key is a tag:

=============================  ===========================================================
Python value                   Encoding
=============================  ===========================================================
None, bool, str                null, true / false, the string
int, ``abs(n) < 2**63``        the number
int, larger                    ``{"$i": "-0x1f..."}`` (hex text: many readers lack big ints)
float                          ``{"$f": float.hex(x)}``: exact, and ``"nan"``, ``"inf"``,
                               ``"-0x0.0p+0"`` stay distinct
list                           ``[items]``
tuple                          ``{"$t": [items]}``
bytes, bytearray, memoryview   ``{"$b": "<base64>"}``
set, frozenset                 ``{"$s": [items sorted by their canonical text]}``
mapping with only str keys     ``{"$m": {key: value}}``
other mapping                  ``{"$d": [[key, value], ...]}`` sorted by the keys' text
=============================  ===========================================================

A subclass encodes as its base type: an ``IntEnum`` member as its int, a ``StrEnum`` member as
its string, a namedtuple as a tuple, any ``Mapping`` as a mapping, a NumPy ``float64`` as a
float. The canonical text is that JSON with sorted keys, no spaces and only ASCII.

Anything else is refused with :class:`UnsignableValueError` in strict mode. Otherwise
(the default, so that a task returning a NumPy array or a dataclass can still be signed):

* an ``Enum`` member, a dataclass instance, or an object with ``tolist()`` (NumPy arrays and
  scalars) is ``{"$o": {"type": "module.Qualname", "data": ...}}``, whose data is the
  member's name, the instance's fields as a mapping, or ``{"values": x.tolist(), "shape":
  x.shape}`` (every element, none elided);
* any other object is ``{"$r": {"type": "module.Qualname", "repr": repr(x)}}``. A signed
  repr proves only that the record says so: reprs can be truncated (NumPy elides long arrays)
  or equal for different objects. Use strict mode to refuse such values instead.

Cycles and nesting deeper than :data:`MAX_DEPTH` are refused in both modes. A record read back
from JSON holds ``$o`` and ``$r`` values as :class:`OpaqueValue`, which encodes to exactly the
text it was read from, so the record still verifies.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import io
import itertools
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from ._errors import MalformedRecordError, UnsignableValueError

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

__all__ = [
    "DOMAIN",
    "FORMAT",
    "JSONValue",
    "MAX_DEPTH",
    "OpaqueValue",
    "canonical_text",
    "circuit_digest",
    "decode_value",
    "encode_value",
    "parse_json",
]

FORMAT = "logosq-result-v1"
"""The record format. A new format gets a new name; a verifier never guesses."""

DOMAIN = b"logosq-result-v1\n"
"""Prefixed to every signed payload, so a signature made here can never pass for a signature
over some other kind of message made with the same key (domain separation)."""

MAX_DEPTH = 100
"""The deepest nesting of containers a signed value may have."""

JSONValue: TypeAlias = "bool | int | str | list[JSONValue] | dict[str, JSONValue] | None"
"""What the encoding produces: JSON without floats (floats are tagged)."""

_INT_LIMIT = 1 << 63
_TAGS = frozenset({"$i", "$f", "$t", "$b", "$s", "$m", "$d", "$o", "$r"})
# The QPY format version circuit digests use when it can represent the circuit: pinned so
# that a digest does not change when Qiskit's default QPY version moves on.
_QPY_PINNED = 13
_QPY_HEADER_VERSION_BYTES = slice(7, 10)  # qiskit major, minor, patch in the file header


def canonical_text(encoded: JSONValue) -> str:
    """The canonical JSON text of an encoded value: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


@dataclasses.dataclass(frozen=True, slots=True)
class OpaqueValue:
    """A signed value that was not plain data, as a record read back from JSON holds it.

    Such values were signed as their type and data (``kind="object"``) or their repr
    (``kind="repr"``); the original object cannot be rebuilt, but this stand-in encodes to
    exactly the signed text, so the record verifies.

    Attributes:
        kind: ``"object"`` or ``"repr"``.
        type_name: The original type, ``module.Qualname``.
        data: For ``"object"``, the canonical JSON text of its encoded data; for ``"repr"``,
            the repr.
    """

    kind: str
    type_name: str
    data: str

    def encoded(self) -> JSONValue:
        """The encoding this value was signed in."""
        if self.kind == "object":
            return {"$o": {"type": self.type_name, "data": parse_json(self.data)}}
        return {"$r": {"type": self.type_name, "repr": self.data}}

    def __repr__(self) -> str:
        return f"<OpaqueValue {self.kind} of {self.type_name}: {self.data[:80]}>"


def _type_name(obj: object) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _format_path(field: str, path: tuple[str, ...]) -> str:
    return field + "".join(path)


class _Encoder:
    """One encoding pass. ``active`` holds the ids of the containers being encoded, so a
    container that holds itself is found instead of recursing until the stack runs out."""

    __slots__ = ("strict", "field", "active")

    def __init__(self, strict: bool, field: str) -> None:
        self.strict = strict
        self.field = field
        self.active: set[int] = set()

    def fail(self, path: tuple[str, ...], problem: str) -> UnsignableValueError:
        return UnsignableValueError(self.field, f"at {_format_path(self.field, path)}: {problem}")

    def encode(self, value: object, path: tuple[str, ...], depth: int) -> JSONValue:
        # Exact types first: they are nearly all values, and need no isinstance walk.
        t = type(value)
        if value is None or t is bool or t is str:
            return value  # type: ignore[return-value]
        if t is int:
            return _encode_int(value)  # type: ignore[arg-type]
        if t is float:
            return {"$f": value.hex()}  # type: ignore[attr-defined]
        # Subclasses of the plain types encode as their base type.
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return _encode_int(int(value))
        if isinstance(value, float):
            return {"$f": float(value).hex()}
        if isinstance(value, str):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, OpaqueValue):
            return value.encoded()
        if isinstance(value, (list, tuple, set, frozenset, Mapping)):
            return self.container(value, path, depth)
        if self.strict:
            raise self.fail(
                path,
                f"a {_type_name(value)} is not plain data (None, bool, int, float, str, bytes, "
                "list, tuple, set or mapping); strict signing refuses it",
            )
        return self.fallback(value, path, depth)

    def container(
        self,
        value: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any] | Mapping[Any, Any],
        path: tuple[str, ...],
        depth: int,
    ) -> JSONValue:
        if depth >= MAX_DEPTH:
            raise self.fail(path, f"nested more than {MAX_DEPTH} containers deep")
        key = id(value)
        if key in self.active:
            raise self.fail(path, "the value contains itself (a cycle)")
        self.active.add(key)
        try:
            inner = depth + 1
            if isinstance(value, Mapping):
                return self.mapping(value, path, inner)
            if isinstance(value, list):
                return [self.encode(v, (*path, f"[{i}]"), inner) for i, v in enumerate(value)]
            if isinstance(value, tuple):
                return {
                    "$t": [self.encode(v, (*path, f"[{i}]"), inner) for i, v in enumerate(value)]
                }
            items = [self.encode(v, (*path, "{...}"), inner) for v in value]
            return {"$s": self.sorted_unique(items, path, "set elements")}
        finally:
            self.active.discard(key)

    def mapping(self, value: Mapping[Any, Any], path: tuple[str, ...], depth: int) -> JSONValue:
        try:
            items = list(value.items())
        except Exception as exc:  # a broken Mapping subclass: its own error, said plainly
            raise self.fail(path, f"reading the mapping's items raised {exc!r}") from exc
        if all(isinstance(k, str) for k, _ in items):
            return {"$m": {str(k): self.encode(v, (*path, f"[{k!r}]"), depth) for k, v in items}}
        pairs = [
            [self.encode(k, (*path, "{key}"), depth), self.encode(v, (*path, f"[{k!r}]"), depth)]
            for k, v in items
        ]
        texts = [canonical_text(p[0]) for p in pairs]
        if len(set(texts)) != len(texts):
            raise self.fail(path, "two different keys have the same encoding (equal reprs?)")
        order = sorted(range(len(pairs)), key=texts.__getitem__)
        return {"$d": [pairs[i] for i in order]}

    def sorted_unique(
        self, items: list[JSONValue], path: tuple[str, ...], what: str
    ) -> list[JSONValue]:
        keyed = sorted(((canonical_text(item), item) for item in items), key=lambda p: p[0])
        for (a, _), (b, _) in itertools.pairwise(keyed):
            if a == b:
                raise self.fail(path, f"two different {what} have the same encoding (equal reprs?)")
        return [item for _, item in keyed]

    def fallback(self, value: object, path: tuple[str, ...], depth: int) -> JSONValue:
        """Encode a value that is not plain data (non-strict mode only)."""
        name = _type_name(value)
        try:
            if isinstance(value, enum.Enum):
                return {"$o": {"type": name, "data": value.name}}
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
                return {"$o": {"type": name, "data": self.container(fields, path, depth)}}
            tolist = getattr(value, "tolist", None)
            if callable(tolist):
                array: dict[str, object] = {"values": tolist()}
                shape = getattr(value, "shape", None)
                if isinstance(shape, tuple):
                    array["shape"] = shape
                return {"$o": {"type": name, "data": self.container(array, path, depth)}}
            text = repr(value)
        except UnsignableValueError:
            raise
        except Exception as exc:  # a user type's repr, tolist or field access raised
            raise self.fail(path, f"encoding a {name} raised {exc!r}") from exc
        if not isinstance(text, str):
            raise self.fail(path, f"repr() of a {name} returned a {type(text).__name__}")
        return {"$r": {"type": name, "repr": text}}


def _encode_int(n: int) -> JSONValue:
    if -_INT_LIMIT < n < _INT_LIMIT:
        return n
    # hex() is linear in the digits and has no length limit, unlike str() of an int.
    return {"$i": hex(n)}


def encode_value(value: object, *, field: str = "value", strict: bool = False) -> JSONValue:
    """Encode ``value`` in the canonical tagged form (see the module docstring).

    Args:
        value: What to encode.
        field: The signed field it belongs to, for error messages.
        strict: Refuse values that are not plain data instead of recording their type and
            data or repr.

    Raises:
        UnsignableValueError: If the value is cyclic, nested deeper than :data:`MAX_DEPTH`,
            holds two items that encode alike, or (strict) is not plain data.
    """
    encoder = _Encoder(strict, field)
    try:
        return encoder.encode(value, (), 0)
    except UnsignableValueError:
        raise
    except RecursionError as exc:  # a deep object's repr or tolist() recursing on its own
        raise encoder.fail((), "encoding recursed too deeply") from exc
    except Exception as exc:  # a subclass's own __iter__, __str__, ... raised
        raise encoder.fail((), f"reading the value raised {exc!r}") from exc


def _reject_constant(name: str) -> object:
    raise MalformedRecordError(f"JSON constant {name} is not in the canonical encoding")


def _reject_float(text: str) -> object:
    raise MalformedRecordError(f"bare JSON number {text} is not in the canonical encoding")


def parse_json(text: str) -> JSONValue:
    """Parse canonical JSON text: bare floats, NaN and Infinity are refused.

    Raises:
        MalformedRecordError: If the text is not JSON, or has a bare float or constant.
    """
    try:
        parsed: JSONValue = json.loads(
            text, parse_float=_reject_float, parse_constant=_reject_constant
        )
    except MalformedRecordError:
        raise
    except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        raise MalformedRecordError(f"not valid JSON: {exc}") from exc
    return parsed


def decode_value(encoded: JSONValue, depth: int = 0) -> object:
    """Rebuild a value from its canonical encoding (sets come back as frozensets, mappings as
    dicts, ``$o`` / ``$r`` values as :class:`OpaqueValue`).

    Raises:
        MalformedRecordError: If ``encoded`` is not in the canonical encoding.
    """
    if encoded is None or isinstance(encoded, (bool, str)):
        return encoded
    if isinstance(encoded, int):
        return encoded
    if depth > 2 * MAX_DEPTH + 2:
        raise MalformedRecordError("value nested too deeply")
    inner = depth + 1
    if isinstance(encoded, list):
        return [decode_value(v, inner) for v in encoded]
    if not isinstance(encoded, dict) or len(encoded) != 1:
        raise MalformedRecordError(f"not a canonical value: {_short(encoded)}")
    ((tag, body),) = encoded.items()
    try:
        return _decode_tagged(tag, body, inner)
    except MalformedRecordError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise MalformedRecordError(f"bad {tag} value {_short(body)}: {exc}") from exc


def _decode_tagged(tag: str, body: JSONValue, depth: int) -> object:
    if tag == "$f" and isinstance(body, str):
        return float.fromhex(body)
    if tag == "$i" and isinstance(body, str):
        return int(body, 16)
    if tag == "$t" and isinstance(body, list):
        return tuple(decode_value(v, depth) for v in body)
    if tag == "$b" and isinstance(body, str):
        return base64.b64decode(body.encode("ascii"), validate=True)
    if tag == "$s" and isinstance(body, list):
        return frozenset(decode_value(v, depth) for v in body)
    if tag == "$m" and isinstance(body, dict):
        return {k: decode_value(v, depth) for k, v in body.items()}
    if tag == "$d" and isinstance(body, list):
        out: dict[Any, object] = {}
        for pair in body:
            if not isinstance(pair, list) or len(pair) != 2:
                raise MalformedRecordError(f"$d entry is not a [key, value] pair: {_short(pair)}")
            out[decode_value(pair[0], depth)] = decode_value(pair[1], depth)
        return out
    if tag in ("$o", "$r") and isinstance(body, dict):
        type_name = body.get("type")
        if not isinstance(type_name, str):
            raise MalformedRecordError(f"{tag} value without a type: {_short(body)}")
        if tag == "$r":
            text = body.get("repr")
            if not isinstance(text, str) or set(body) != {"type", "repr"}:
                raise MalformedRecordError(f"$r value is not {{type, repr}}: {_short(body)}")
            return OpaqueValue("repr", type_name, text)
        if set(body) != {"type", "data"}:
            raise MalformedRecordError(f"$o value is not {{type, data}}: {_short(body)}")
        # Kept as canonical text: decoding checks it is well formed, the text is what was signed.
        decode_value(body["data"], depth)
        return OpaqueValue("object", type_name, canonical_text(body["data"]))
    known = "unknown tag" if tag not in _TAGS else "wrong body type for tag"
    raise MalformedRecordError(f"{known} {tag!r} in {_short({tag: body})}")


def _short(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


# --- circuit digests ----------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def circuit_digest(circuit: object) -> str:
    """A SHA-256 digest of a circuit, prefixed with how the circuit was turned into bytes.

    =====================  ==================================================================
    Circuit                Digest
    =====================  ==================================================================
    OpenQASM text          ``qasm-sha256:<hex>`` of the text as given (UTF-8)
    bytes (say, QPY)       ``bytes-sha256:<hex>`` of the bytes
    ``QuantumCircuit``     ``qpy<N>-sha256:<hex>`` of its QPY serialisation (format version
                           N), with the circuit's name and the Qiskit version left out, and
                           metadata values JSON cannot hold reduced to their type
    prepared circuit       the digest of the transpiled ``QuantumCircuit`` it holds
    :class:`CircuitSpec`   ``spec-sha256:<hex>`` of its canonical JSON
    =====================  ==================================================================

    The QPY digest is deterministic: the same circuit object always gives the same digest,
    and so do equal circuits built the same way in another process. Names are left out
    because Qiskit numbers unnamed circuits (``circuit-41``) in creation order.

    Raises:
        UnsignableValueError: If the object is none of these, or Qiskit cannot serialise it.
    """
    if isinstance(circuit, str):
        return "qasm-sha256:" + _sha256(circuit.encode("utf-8", "surrogatepass"))
    if isinstance(circuit, (bytes, bytearray, memoryview)):
        return "bytes-sha256:" + _sha256(bytes(circuit))
    qiskit_adapter = sys.modules.get("logosq_os_scheduler.backends._qiskit")
    if qiskit_adapter is not None and isinstance(circuit, qiskit_adapter.PreparedCircuit):
        return circuit_digest(circuit.circuit)
    from ..backends._circuits import CircuitSpec, _is_quantum_circuit

    if isinstance(circuit, CircuitSpec):
        spec: dict[str, JSONValue] = {
            "num_qubits": circuit.num_qubits,
            "interactions": [list(p) for p in circuit.interactions],
        }
        return "spec-sha256:" + _sha256(canonical_text(spec).encode("ascii"))
    if _is_quantum_circuit(circuit):
        return _qpy_digest(circuit)
    raise UnsignableValueError(
        "circuit",
        f"cannot digest a {_type_name(circuit)}: expected a QuantumCircuit, OpenQASM text, "
        "QPY bytes, a prepared circuit or a CircuitSpec",
    )


class _MetadataEncoder(json.JSONEncoder):
    """Circuit metadata that JSON cannot hold counts by its type alone, rather than being
    refused: a repr may hold a memory address, and copying a circuit copies its metadata, so
    only the type is the same from one digest to the next."""

    def default(self, o: object) -> object:
        return f"<{_type_name(o)}>"


def _qpy_digest(circuit: QuantumCircuit) -> str:
    from qiskit import qpy

    unnamed = circuit.copy(name="circuit")
    versions = [qpy.QPY_VERSION]
    if qpy.QPY_COMPATIBILITY_VERSION <= _QPY_PINNED < qpy.QPY_VERSION:
        versions.insert(0, _QPY_PINNED)
    last: Exception | None = None
    for version in versions:
        buf = io.BytesIO()
        try:
            qpy.dump(unnamed, buf, version=version, metadata_serializer=_MetadataEncoder)
        except Exception as exc:  # the pinned version cannot hold it, or QPY cannot at all
            last = exc
            continue
        data = bytearray(buf.getvalue())
        data[_QPY_HEADER_VERSION_BYTES] = bytes(3)
        return f"qpy{version}-sha256:" + _sha256(bytes(data))
    raise UnsignableValueError(
        "circuit", f"Qiskit cannot serialise this circuit to QPY: {last!r}"
    ) from last


def check_digest(field: str, digest: object) -> str | None:
    """Validate a digest given by a caller: None, or ``<scheme>-sha256:<64 hex digits>``.

    Raises:
        UnsignableValueError: If it is neither.
    """
    if digest is None:
        return None
    if isinstance(digest, str):
        scheme, sep, hexpart = digest.partition("-sha256:")
        if (
            sep
            and scheme.isascii()
            and scheme.isalnum()
            and len(hexpart) == 64
            and all(c in "0123456789abcdef" for c in hexpart)
        ):
            return digest
    raise UnsignableValueError(
        field, f"expected a digest from circuit_digest() ('qpy13-sha256:...'), got {digest!r}"
    )
