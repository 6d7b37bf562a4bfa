"""The signed record: the fields a signature covers, their types, and how they are read.

A :class:`SignedRecord` holds every signed field of a finished task, the signer's key
fingerprint, and the signature over ``DOMAIN + canonical JSON of the fields`` (see
:mod:`._encoding`). The fields are read the same way off a ``Task`` (the scheduler signs a
task as it ends) and off a ``TaskResult`` (signed, or checked against its record), by
:func:`common_fields`.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from .._result import TaskResult
from .._task import Task
from ._encoding import (
    DOMAIN,
    FORMAT,
    JSONValue,
    canonical_text,
    decode_value,
    encode_value,
    parse_json,
)
from ._errors import MalformedRecordError, UnsignableValueError

__all__ = [
    "SIGNED_FIELDS",
    "SignedRecord",
    "as_time",
    "checked_properties",
    "common_fields",
    "make_record",
    "type_problem",
]


@dataclasses.dataclass(frozen=True, slots=True)
class SignedRecord:
    """Every signed field of a finished task, the signer's key fingerprint, and the signature.

    Built by :class:`ResultSigner`; checked by :func:`verify_result`. Changing any field
    (``dataclasses.replace``, or mutating ``value`` in place) makes it fail verification.
    Values are held as decoded from their canonical encoding: a tuple stays a tuple, a set
    becomes a frozenset, a mapping a dict, and a value that was not plain data an
    :class:`~logosq_os_scheduler.security.OpaqueValue`.

    Attributes:
        task_id: The task's id.
        name: The task's name.
        task_type: ``"classical"``, ``"quantum"`` or ``"hybrid"``.
        priority: The priority's name (``"HIGH"``).
        status: The terminal status's value (``"completed"``).
        value: What the task produced: the counts of a quantum task, the function's return
            value otherwise.
        shots: Shots of a quantum task, else None.
        submitted_at, started_at, finished_at: Times on the scheduler's clock, in seconds.
        attempts: How many times the task was started.
        backend: The backend that ran it (quantum tasks), else None.
        backend_properties: What that backend declared about itself when the task ended.
        backends_tried: Every backend an attempt went to, in order.
        routing: The routing decision as a mapping (``RoutingDecision.as_dict()``), or None.
        circuit_digest: Digest of the circuit as submitted (see ``circuit_digest``).
        transpiled_digest: Digest of the circuit as the backend ran it (after transpilation).
        metadata: The task's labels.
        signed_at: When it was signed: seconds since the Unix epoch, on the signer's clock.
        key_id: Fingerprint of the signing key's public half (see :func:`key_fingerprint`).
        signature: The Ed25519 signature (64 bytes) over :meth:`payload`.
    """

    task_id: int
    name: str
    task_type: str
    priority: str
    status: str
    value: object
    shots: int | None
    submitted_at: float | None
    started_at: float | None
    finished_at: float | None
    attempts: int
    backend: str | None
    backend_properties: Mapping[str, object] | None
    backends_tried: tuple[str, ...]
    routing: Mapping[str, object] | None
    circuit_digest: str | None
    transpiled_digest: str | None
    metadata: Mapping[str, object]
    signed_at: float
    key_id: str
    signature: bytes = dataclasses.field(repr=False)

    def encoded_fields(self) -> dict[str, JSONValue]:
        """Every signed field in its canonical encoding, by name.

        Raises:
            UnsignableValueError: If a field was replaced by a value with no encoding.
        """
        return {name: encode_value(getattr(self, name), field=name) for name in SIGNED_FIELDS}

    def payload(self) -> bytes:
        """The exact bytes the signature covers: :data:`DOMAIN` + canonical JSON of the fields.

        Raises:
            UnsignableValueError: If a field was replaced by a value with no encoding.
        """
        return DOMAIN + canonical_text(self.encoded_fields()).encode("ascii")

    def to_json(self) -> str:
        """The record as canonical JSON text, to store or send; :meth:`from_json` reads it.

        Raises:
            UnsignableValueError: If a field was replaced by a value with no encoding.
        """
        return canonical_text(
            {
                "format": FORMAT,
                "fields": self.encoded_fields(),
                "signature": base64.b64encode(bytes(self.signature)).decode("ascii"),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedRecord:
        """Read a record written by :meth:`to_json`. Reading checks its form, not its
        signature: pass the record to :func:`verify_result` for that.

        Raises:
            MalformedRecordError: If the text is not a record of this format.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedRecordError(f"record text is not UTF-8: {exc}") from exc
        if not isinstance(text, str):
            raise MalformedRecordError(f"expected record text, got {type(text).__name__}")
        doc = parse_json(text)
        if not isinstance(doc, dict) or set(doc) != {"format", "fields", "signature"}:
            raise MalformedRecordError("expected an object with format, fields and signature")
        if doc["format"] != FORMAT:
            raise MalformedRecordError(f"format {doc['format']!r} is not {FORMAT!r}")
        fields, signature = doc["fields"], doc["signature"]
        if not isinstance(fields, dict) or set(fields) != set(SIGNED_FIELDS):
            got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
            raise MalformedRecordError(f"fields must be exactly {list(SIGNED_FIELDS)}, got {got}")
        if not isinstance(signature, str):
            raise MalformedRecordError("signature must be base64 text")
        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError) as exc:
            raise MalformedRecordError(f"signature is not base64: {exc}") from exc
        decoded = {name: decode_value(fields[name]) for name in SIGNED_FIELDS}
        problem = type_problem(decoded)
        if problem is not None:
            raise MalformedRecordError(f"field {problem[0]!r} {problem[1]}")
        return make_record(decoded, raw)


SIGNED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SignedRecord) if f.name != "signature"
)
"""The names of the signed fields, in the order of :class:`SignedRecord`."""

# What each signed field must hold (beyond None where allowed), for records built or read.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "task_id": (int,),
    "name": (str,),
    "task_type": (str,),
    "priority": (str,),
    "status": (str,),
    "value": (object,),
    "shots": (int, type(None)),
    "submitted_at": (float, type(None)),
    "started_at": (float, type(None)),
    "finished_at": (float, type(None)),
    "attempts": (int,),
    "backend": (str, type(None)),
    "backend_properties": (Mapping, type(None)),
    "backends_tried": (tuple,),
    "routing": (Mapping, type(None)),
    "circuit_digest": (str, type(None)),
    "transpiled_digest": (str, type(None)),
    "metadata": (Mapping,),
    "signed_at": (float,),
    "key_id": (str,),
}


def type_problem(fields: Mapping[str, object]) -> tuple[str, str] | None:
    """The first field holding the wrong type, as (field, problem), or None."""
    for name, types in _FIELD_TYPES.items():
        v = fields[name]
        # bool is an int to isinstance; here it is not an int (1 and True encode apart).
        if not isinstance(v, types) or (isinstance(v, bool) and int in types):
            allowed = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            return name, f"must be {allowed}, got {type(v).__name__}"
    tried = fields["backends_tried"]
    if isinstance(tried, tuple) and not all(isinstance(b, str) for b in tried):
        return "backends_tried", "must hold backend names (str)"
    return None


def make_record(fields: Mapping[str, Any], signature: bytes) -> SignedRecord:
    # Types were checked by type_problem; Any lets the checked mapping fill the typed fields.
    return SignedRecord(**fields, signature=signature)


# -- reading the signed fields off a Task or a TaskResult ---------------------------------


def _enum_value(x: object) -> object:
    return x.value if isinstance(x, enum.Enum) else x


def _enum_name(x: object) -> object:
    return x.name if isinstance(x, enum.Enum) else x


def as_time(x: object) -> object:
    # Clocks may return ints (a ManualClock set to 3); a time is signed as a float.
    if isinstance(x, int) and not isinstance(x, bool):
        return float(x)
    return x


def _routing_data(routing: object) -> object:
    if routing is None or isinstance(routing, Mapping):
        return routing
    as_dict = getattr(routing, "as_dict", None)
    if not callable(as_dict):
        raise UnsignableValueError(
            "routing",
            f"expected a routing decision with as_dict() or a mapping, got "
            f"{type(routing).__name__}",
        )
    try:
        data = as_dict()
    except Exception as exc:
        raise UnsignableValueError("routing", f"as_dict() raised {exc!r}") from exc
    if not isinstance(data, Mapping):
        raise UnsignableValueError(
            "routing", f"as_dict() returned a {type(data).__name__}, not a mapping"
        )
    return data


def common_fields(obj: Task[Any] | TaskResult[Any]) -> dict[str, object]:
    """The signed fields a Task and a TaskResult both hold, read the same way from each.

    Raises:
        UnsignableValueError: If a field cannot be read (say, it was replaced by an object
            of another kind).
    """
    try:
        return _read_fields(obj)
    except UnsignableValueError:
        raise
    except Exception as exc:
        raise UnsignableValueError("result", f"reading its fields raised {exc!r}") from exc


def _read_fields(obj: Task[Any] | TaskResult[Any]) -> dict[str, object]:
    backend = obj.backend_used if isinstance(obj, Task) else obj.backend
    return {
        "task_id": obj.task_id,
        "name": obj.name,
        "task_type": _enum_value(obj.task_type),
        "priority": _enum_name(obj.priority),
        "status": _enum_value(obj.status),
        "value": obj.value,
        "submitted_at": as_time(obj.submitted_at),
        "started_at": as_time(obj.started_at),
        "finished_at": as_time(obj.finished_at),
        "attempts": obj.attempts,
        "backend": backend,
        "backends_tried": tuple(obj.backends_tried or ()),
        "routing": _routing_data(obj.routing),
        "metadata": obj.metadata,
    }


def checked_properties(props: object) -> Mapping[str, object] | None:
    if props is None or isinstance(props, Mapping):
        return props
    raise UnsignableValueError(
        "backend_properties", f"expected a mapping or None, got {type(props).__name__}"
    )
