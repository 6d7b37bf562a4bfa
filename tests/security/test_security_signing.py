"""Result signing: round trips on real scheduler results, tampering with every signed field,
and what cannot be signed. Keys are in test_security_keys.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

pytest.importorskip("cryptography")

from _signing_helpers import SIGNED_AT, finished_result
from cryptography.hazmat.primitives.asymmetric import ed25519

from logosq_os_scheduler import (
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskResult,
    TaskStatus,
)
from logosq_os_scheduler.backends import CircuitSpec, MockBackend
from logosq_os_scheduler.security import (
    SIGNED_FIELDS,
    MalformedRecordError,
    ResultSigner,
    ResultVerificationError,
    SignedRecord,
    UnsignableValueError,
    check_result,
    circuit_digest,
    key_fingerprint,
    verify_result,
)

pytestmark = pytest.mark.security


def _classical_value(a: int, b: int) -> dict[str, object]:
    return {"sum": a + b, "pair": (a, b), "ratio": a / b, "tags": {"x", "y"}, "raw": b"\x00\xff"}


async def classical_result() -> TaskResult[Any]:
    async with QuantumScheduler(2) as scheduler:
        handle = await scheduler.submit(
            Task.classical("ratio").with_function(_classical_value, 1, 3).with_metadata(run=7)
        )
        return await handle


async def quantum_result() -> tuple[TaskResult[Any], MockBackend, CircuitSpec]:
    backend = MockBackend("mock5", num_qubits=5, seed=11)
    circuit = CircuitSpec(3, ((0, 1), (1, 2)))
    config = SchedulerConfig(workers=1, batch_window=0)
    async with QuantumScheduler(config=config) as scheduler:
        await scheduler.register_backend("mock5", backend)
        handle = await scheduler.submit(
            Task.quantum("bell-ish").with_circuit(circuit).with_shots(500).with_metadata(exp="a")
        )
        return await handle, backend, circuit


def attach(result: TaskResult[Any], record: SignedRecord) -> TaskResult[Any]:
    """What the scheduler does when signing is on: the result carries the signature."""
    result.signature = record.signature
    return result


# --- round trips -----------------------------------------------------------------------


async def test_classical_result_round_trip(signer: ResultSigner) -> None:
    result = await classical_result()
    record = signer.sign_result(result)
    attach(result, record)

    assert verify_result(result, signer.public_key, record=record)
    assert verify_result(record, signer.public_key)
    assert check_result(result, signer.public_key, record=record) is record
    # The record holds every signed field, decoded: a tuple stays a tuple, a set is frozen.
    assert record.value == {
        "sum": 4,
        "pair": (1, 3),
        "ratio": 1 / 3,
        "tags": frozenset({"x", "y"}),
        "raw": b"\x00\xff",
    }
    assert (record.task_id, record.name, record.status) == (result.task_id, "ratio", "completed")
    assert (record.task_type, record.priority) == ("classical", "NORMAL")
    assert (record.submitted_at, record.started_at, record.finished_at) == (
        result.submitted_at,
        result.started_at,
        result.finished_at,
    )
    assert record.attempts == 1 and record.backend is None and record.shots is None
    assert record.circuit_digest is None and record.transpiled_digest is None
    assert record.metadata == {"run": 7}
    assert record.signed_at == SIGNED_AT
    assert record.key_id == signer.key_id == key_fingerprint(signer.public_key)
    assert len(record.signature) == 64


async def test_quantum_counts_round_trip_signs_backend_routing_and_digests(
    signer: ResultSigner,
) -> None:
    result, backend, circuit = await quantum_result()
    props = backend.properties()
    record = signer.sign_result(
        result,
        shots=500,
        circuit_digest=circuit_digest(circuit),
        transpiled_digest=circuit_digest(circuit),
        backend_properties=props,
    )
    attach(result, record)

    assert verify_result(result, signer.public_key, record=record)
    assert record.value == result.counts and sum(record.value.values()) == 500  # type: ignore[attr-defined]
    assert record.backend == "mock5" and record.backends_tried == ("mock5",)
    assert record.backend_properties == dict(props)
    assert record.routing == result.routing.as_dict()
    assert record.routing["backend"] == "mock5"  # type: ignore[index]
    assert record.shots == 500
    assert record.circuit_digest == circuit_digest(CircuitSpec(3, ((0, 1), (1, 2))))
    assert record.circuit_digest.startswith("spec-sha256:")  # type: ignore[union-attr]


async def test_sign_task_reads_shots_and_digests_from_the_task(signer: ResultSigner) -> None:
    # The scheduler signs the Task itself, just before it moves it to COMPLETED: status and
    # finished_at are given so that nobody can see the task ended but unsigned.
    backend = MockBackend("mock5", num_qubits=5, seed=3)
    spec = CircuitSpec(2, ((0, 1),))
    async with QuantumScheduler(config=SchedulerConfig(workers=1, batch_window=0)) as scheduler:
        await scheduler.register_backend("mock5", backend)
        handle = await scheduler.submit(Task.quantum("q").with_circuit(spec).with_shots(64))
        result = await handle
    task = handle._task  # the object the scheduler integration signs
    record = signer.sign_task(
        task,
        backend_properties=backend.properties(),
        status=TaskStatus.COMPLETED,
        finished_at=task.finished_at,
    )
    attach(result, record)
    assert verify_result(result, signer.public_key, record=record)
    assert record.shots == 64
    assert record.circuit_digest == record.transpiled_digest == circuit_digest(spec)
    again = signer.sign_task(task, finished_at=task.finished_at + 1.0)  # type: ignore[operator]
    assert again.finished_at == task.finished_at + 1.0  # type: ignore[operator]
    assert not verify_result(result, signer.public_key, record=again)


@pytest.mark.qiskit
async def test_qiskit_digests_cover_the_circuit_as_submitted_and_as_transpiled(
    signer: ResultSigner,
) -> None:
    pytest.importorskip("qiskit_aer")
    from qiskit import QuantumCircuit
    from qiskit.providers.fake_provider import GenericBackendV2

    from logosq_os_scheduler.backends import QiskitBackend

    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    device = QiskitBackend(GenericBackendV2(5, seed=5), name="generic5", seed=9, isolation="thread")
    async with QuantumScheduler(config=SchedulerConfig(workers=1, batch_window=0)) as scheduler:
        await scheduler.register_backend("generic5", device)
        handle = await scheduler.submit(Task.quantum("bell").with_circuit(qc).with_shots(200))
        result = await handle
    task = handle._task
    record = signer.sign_task(task, backend_properties=device.properties())
    attach(result, record)
    assert verify_result(result, signer.public_key, record=record)
    assert record.circuit_digest == circuit_digest(qc)
    assert record.circuit_digest.startswith("qpy")  # type: ignore[union-attr]
    # The device runs a transpiled circuit (its basis gates, its layout): another digest.
    assert record.transpiled_digest == circuit_digest(task.circuit_run)
    assert record.transpiled_digest != record.circuit_digest
    assert set(record.value) <= {"00", "01", "10", "11"}  # type: ignore[arg-type]


def test_record_survives_json_and_still_verifies(signer: ResultSigner) -> None:
    record = signer.sign_result(finished_result({"counts": {"01": 3}, "e": -0.0, "n": 2**80}))
    text = record.to_json()
    back = SignedRecord.from_json(text)
    assert back == record
    assert verify_result(back, signer.public_key)
    assert SignedRecord.from_json(text.encode()) == record
    # Change one count in the text: it still reads, but no longer verifies.
    forged = SignedRecord.from_json(text.replace('"01":3', '"01":4'))
    assert forged.value == {"counts": {"01": 4}, "e": -0.0, "n": 2**80}
    assert not verify_result(forged, signer.public_key)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"format": "logosq-result-v0", "fields": {}, "signature": ""}',
        '{"format": "logosq-result-v1", "fields": {}, "signature": ""}',
        '{"format": "logosq-result-v1", "fields": {"task_id": 1.5}, "signature": ""}',
        '{"format": "logosq-result-v1", "fields": {"task_id": NaN}, "signature": ""}',
    ],
)
def test_from_json_rejects_what_is_not_a_record(text: str) -> None:
    with pytest.raises(MalformedRecordError):
        SignedRecord.from_json(text)


def test_from_json_rejects_unknown_tags_and_wrong_field_types(signer: ResultSigner) -> None:
    text = signer.sign_result(finished_result(1)).to_json()
    with pytest.raises(MalformedRecordError, match="unknown tag"):
        SignedRecord.from_json(text.replace('"value":1', '"value":{"$zz":1}'))
    with pytest.raises(MalformedRecordError, match="'attempts' must be int"):
        SignedRecord.from_json(text.replace('"attempts":1', '"attempts":"1"'))
    with pytest.raises(MalformedRecordError, match="base64"):
        SignedRecord.from_json(text.replace('"signature":"', '"signature":"!!'))


# --- tampering --------------------------------------------------------------------------


def _other(value: object) -> object:
    """A different value of the same kind, so that only the content changes."""
    if value is None:
        return "x"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 1])
    if isinstance(value, tuple):
        return (*value, "x")
    if isinstance(value, Mapping):
        return {**value, "extra": 1}
    raise AssertionError(f"no alternative for {value!r}")


async def test_tampering_with_each_signed_field_is_detected(signer: ResultSigner) -> None:
    result, backend, circuit = await quantum_result()
    record = signer.sign_result(
        result,
        shots=500,
        circuit_digest=circuit_digest(circuit),
        transpiled_digest=circuit_digest("OPENQASM 3.0;"),
        backend_properties=backend.properties(),
    )
    assert verify_result(record, signer.public_key)
    # Every field holds a value here, so each can be changed to another of its kind.
    assert all(getattr(record, name) is not None for name in SIGNED_FIELDS)
    for name in SIGNED_FIELDS:
        forged = dataclasses.replace(record, **{name: _other(getattr(record, name))})
        assert not verify_result(forged, signer.public_key), name
        with pytest.raises(ResultVerificationError):
            check_result(forged, signer.public_key)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        # Python's == calls most of these equal to the original; the encoding does not.
        ("task_id", lambda r: float(r.task_id)),
        ("attempts", lambda r: True),  # 1 and True compare equal in Python
        ("started_at", lambda r: int(r.started_at)),
        ("value", lambda r: list(r.value)),  # the list for the tuple
        ("backends_tried", lambda r: []),
        ("name", lambda r: None),
        ("value", lambda r: object()),
        ("metadata", lambda r: {"k": b"v"}),
    ],
)
def test_changing_a_fields_type_is_detected(signer: ResultSigner, field: str, change: Any) -> None:
    record = signer.sign_result(finished_result((1,)))
    forged = dataclasses.replace(record, **{field: change(record)})
    assert not verify_result(forged, signer.public_key)


def test_mutating_the_value_in_place_is_detected(signer: ResultSigner) -> None:
    record = signer.sign_result(finished_result({"00": 10, "11": 6}))
    assert verify_result(record, signer.public_key)
    record.value["00"] = 11  # type: ignore[index]
    assert not verify_result(record, signer.public_key)


def test_signature_changes_are_detected(signer: ResultSigner) -> None:
    record = signer.sign_result(finished_result(5))
    sig = bytearray(record.signature)
    for i in (0, 31, 63):
        flipped = bytearray(sig)
        flipped[i] ^= 0x01
        assert not verify_result(dataclasses.replace(record, signature=bytes(flipped)), signer)
    assert not verify_result(dataclasses.replace(record, signature=bytes(sig[:63])), signer)
    assert not verify_result(dataclasses.replace(record, signature=b""), signer)
    assert not verify_result(dataclasses.replace(record, signature="x" * 64), signer)  # type: ignore[arg-type]
    other = signer.sign_result(finished_result(6))
    assert not verify_result(dataclasses.replace(record, signature=other.signature), signer)


async def test_changing_the_result_after_signing_is_detected(signer: ResultSigner) -> None:
    changes: dict[str, object] = {
        "task_id": 999,
        "name": "other",
        "status": TaskStatus.FAILED,
        "value": {"sum": 5},
        "priority": "HIGH",
        "task_type": "quantum",
        "submitted_at": 0.5,
        "started_at": None,
        "finished_at": 1e9,
        "attempts": 2,
        "backend": "elsewhere",
        "backends_tried": ("elsewhere",),
        "routing": {"backend": "elsewhere"},
        "metadata": {"run": 8},
        "signature": b"\x00" * 64,
    }
    for name, value in changes.items():
        result = await classical_result()
        record = signer.sign_result(result)
        attach(result, record)
        assert verify_result(result, signer.public_key, record=record)
        setattr(result, name, value)
        assert not verify_result(result, signer.public_key, record=record), name
        with pytest.raises(ResultVerificationError, match=name):
            check_result(result, signer.public_key, record=record)


async def test_a_result_without_a_record_or_signature_does_not_verify(
    signer: ResultSigner,
) -> None:
    result = await classical_result()
    assert not verify_result(result, signer.public_key)  # no record attached
    record = signer.sign_result(result)
    assert not verify_result(result, signer.public_key, record=record)  # no signature on it
    assert not verify_result("not a result", signer.public_key)  # type: ignore[arg-type]


# --- what cannot be signed ----------------------------------------------------------------


def test_strict_signing_refuses_values_that_are_not_plain_data(
    key: ed25519.Ed25519PrivateKey,
) -> None:
    class Point:
        def __repr__(self) -> str:
            return "Point()"

    strict = ResultSigner(key, strict=True)
    with pytest.raises(UnsignableValueError, match=r"value\['p'\]\[1\].*Point") as info:
        strict.sign_result(finished_result({"p": [1, Point()]}))
    assert info.value.field == "value"
    # Lenient signing records the type and repr, and says so in the record.
    record = ResultSigner(key).sign_result(finished_result({"p": [1, Point()]}))
    opaque = record.value["p"][1]  # type: ignore[index]
    assert (opaque.kind, opaque.data) == ("repr", "Point()")
    assert opaque.type_name.endswith("Point")
    assert verify_result(SignedRecord.from_json(record.to_json()), key.public_key())


def test_cyclic_values_and_bad_inputs_are_refused(signer: ResultSigner) -> None:
    cycle: list[object] = [1]
    cycle.append(cycle)
    with pytest.raises(UnsignableValueError, match="contains itself"):
        signer.sign_result(finished_result(cycle))
    with pytest.raises(UnsignableValueError, match="circuit_digest"):
        signer.sign_result(finished_result(1), circuit_digest="sha256:abc")
    with pytest.raises(UnsignableValueError, match="shots"):
        signer.sign_result(finished_result(1), shots=0)
    with pytest.raises(UnsignableValueError, match="backend_properties"):
        signer.sign_result(finished_result(1), backend_properties=[1])  # type: ignore[arg-type]
    with pytest.raises(UnsignableValueError, match="result"):
        signer.sign_result("nope")  # type: ignore[arg-type]
    with pytest.raises(UnsignableValueError, match="task"):
        signer.sign_task("nope")  # type: ignore[arg-type]


def test_hostile_fields_give_false_or_a_scheduler_error(signer: ResultSigner) -> None:
    class Sneaky(list[int]):
        def __iter__(self) -> Any:
            raise RuntimeError("no iterating")

    with pytest.raises(UnsignableValueError, match="no iterating"):
        signer.sign_result(finished_result(Sneaky([1])))
    result = finished_result(1)
    record = signer.sign_result(result)
    attach(result, record)
    result.backends_tried = 5  # type: ignore[assignment]
    assert not verify_result(result, signer.public_key, record=record)
    with pytest.raises(UnsignableValueError, match="reading its fields"):
        signer.sign_result(result)
