"""Result signing turned on in the scheduler: every completed task comes back signed.

These tests exercise ``QuantumScheduler.with_result_signing``; they skip until the scheduler
has it (the integration the security module proposes).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives.asymmetric import ed25519

from logosq_os_scheduler import (
    BlockingScheduler,
    QuantumScheduler,
    SchedulerClosedError,
    SchedulerConfig,
    Task,
    TaskFailedError,
)
from logosq_os_scheduler.backends import CircuitSpec, MockBackend
from logosq_os_scheduler.security import (
    ResultSigner,
    SigningKeyError,
    UnsignableValueError,
    check_result,
    circuit_digest,
    generate_key_pair,
    verify_result,
)

pytestmark = pytest.mark.security


def cyclic() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


async def test_completed_tasks_come_back_signed(tmp_path: Path) -> None:
    private_path, public_path = generate_key_pair(tmp_path / "results.pem")
    backend = MockBackend("mock4", num_qubits=4, seed=2)
    spec = CircuitSpec(3, ((0, 1),))
    config = SchedulerConfig(workers=2, batch_window=0)
    async with QuantumScheduler(config=config).with_result_signing(private_path) as scheduler:
        await scheduler.register_backend("mock4", backend)
        classical = await scheduler.submit(Task.classical("add").with_function(sum, [1, 2]))
        quantum = await scheduler.submit(Task.quantum("q").with_circuit(spec).with_shots(300))
        results = [await classical, await quantum]
    for result in results:
        assert result.signature is not None and result.signed_record is not None
        assert result.signature == result.signed_record.signature
        assert verify_result(result, public_path)
    c, q = (r.signed_record for r in results)
    assert c.value == 3 and c.status == "completed" and c.shots is None
    assert q.value == results[1].counts and q.shots == 300 and q.backend == "mock4"
    assert q.circuit_digest == q.transpiled_digest == circuit_digest(spec)
    assert q.backend_properties == dict(backend.properties())
    assert q.routing == results[1].routing.as_dict()
    assert c.finished_at == results[0].finished_at and q.finished_at == results[1].finished_at
    # Changing a result after the fact is caught.
    results[1].value["000"] = results[1].value.get("000", 0) + 1
    assert not verify_result(results[1], public_path)


def test_a_result_read_from_another_thread_is_already_signed() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signer = ResultSigner(key)
    with BlockingScheduler(2) as scheduler:
        scheduler.scheduler.with_result_signing(signer)
        gate = threading.Event()
        handles = [
            scheduler.submit(Task.classical(f"t{i}").with_function(gate.wait, 30)) for i in range(8)
        ]
        gate.set()
        for handle in handles:
            result = handle.result(timeout=30)
            check_result(result, key.public_key())


async def test_a_result_that_cannot_be_signed_fails_and_the_rest_run_on() -> None:
    signer = ResultSigner(ed25519.Ed25519PrivateKey.generate())
    async with QuantumScheduler(2).with_result_signing(signer) as scheduler:
        bad = await scheduler.submit(Task.classical("cyclic").with_function(cyclic))
        good = await scheduler.submit(Task.classical("fine").with_function(sum, [4, 5]))
        with pytest.raises(TaskFailedError) as info:
            await bad
        assert isinstance(info.value.__cause__, UnsignableValueError)
        assert "contains itself" in str(info.value)
        assert verify_result(await good, signer)
        assert scheduler.metrics().failed == 1


async def test_with_result_signing_refuses_bad_keys_and_closed_schedulers(tmp_path: Path) -> None:
    scheduler = QuantumScheduler(1)
    with pytest.raises(SigningKeyError, match="no key file"):
        scheduler.with_result_signing(tmp_path / "missing.pem")
    assert scheduler.signer is None
    await scheduler.aclose()
    with pytest.raises(SchedulerClosedError):
        scheduler.with_result_signing(ed25519.Ed25519PrivateKey.generate())
