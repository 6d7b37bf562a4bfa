"""QiskitBackend on real Qiskit backends: Aer, GenericBackendV2 and offline IBM device models."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
import threading
import time
import warnings
from typing import Any

import pytest

qiskit = pytest.importorskip("qiskit")
qiskit_aer = pytest.importorskip("qiskit_aer")
fake_provider = pytest.importorskip("qiskit_ibm_runtime.fake_provider")

from qiskit import QuantumCircuit  # noqa: E402
from qiskit.providers.basic_provider import BasicSimulator  # noqa: E402
from qiskit.providers.fake_provider import GenericBackendV2  # noqa: E402
from qiskit_aer import AerSimulator  # noqa: E402

from logosq_os_scheduler import (  # noqa: E402
    InvalidConfigError,
    InvalidTaskError,
    PermanentBackendError,
    SchedulerError,
    TransientBackendError,
)
from logosq_os_scheduler.backends import (  # noqa: E402
    CircuitJob,
    CircuitSpec,
    MissingExtraError,
    PreparedCircuit,
    QiskitBackend,
    analyze_circuit,
    default_backend,
)

pytestmark = pytest.mark.qiskit

BELL_QASM2 = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
    "h q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"
)
BELL_QASM3 = (
    'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\n'
    "h q[0];\ncx q[0], q[1];\nc = measure q;\n"
)


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


def job(circuit: Any, shots: int = 4000, key: str = "k", **options: Any) -> CircuitJob:
    return CircuitJob(circuit, shots=shots, task_id=0, idempotency_key=key, options=options)


def tvd(a: dict[str, int], b: dict[str, int]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


async def test_bell_on_aer_is_half_00_half_11() -> None:
    backend = QiskitBackend(AerSimulator(), seed=1, isolation="thread")
    (counts,) = await backend.run([job(backend.prepare(bell()))])
    assert isinstance(counts, dict)
    assert set(counts) == {"00", "11"}
    assert sum(counts.values()) == 4000
    assert abs(counts["00"] - 2000) < 200  # about 6 standard deviations
    assert backend.execution == "aer" and backend.coupling_map is None and backend.all_to_all


async def test_aer_jobs_die_with_the_process_so_it_cannot_reattach() -> None:
    backend = QiskitBackend(AerSimulator(), isolation="thread")
    assert backend.supports_reattach is False
    with pytest.raises(PermanentBackendError, match="cannot submit a job by ID"):
        await backend.submit_job([job(backend.prepare(bell()))])
    with pytest.raises(PermanentBackendError, match="cannot reattach to job 'j-1'"):
        await backend.reattach("j-1")
    await backend.aclose()


async def test_qasm2_and_qasm3_programs_run() -> None:
    backend = QiskitBackend(AerSimulator(), seed=2, isolation="thread")
    outcomes = await backend.run([job(BELL_QASM2, key="a"), job(BELL_QASM3, key="b")])
    for counts in outcomes:
        assert isinstance(counts, dict) and set(counts) == {"00", "11"}
        assert sum(counts.values()) == 4000


async def test_device_model_noise_active_equals_full_and_is_close_to_native() -> None:
    device = fake_provider.FakeManilaV2()
    active = QiskitBackend(device, noise="active", seed=3, isolation="thread")
    full = QiskitBackend(device, noise="full", seed=3, isolation="thread")
    (a,) = await active.run([job(active.prepare(bell()), shots=8000)])
    (f,) = await full.run([job(full.prepare(bell()), shots=8000)])
    assert isinstance(a, dict) and isinstance(f, dict)
    # The device's noise shows: some shots land on 01 and 10.
    assert a.get("01", 0) + a.get("10", 0) > 0
    # Noise on idle qubits never touched the result: with equal seeds the counts are equal.
    assert a == f
    # The device model's own run() (its noise model built from its JSON properties rather
    # than its Target) agrees within sampling noise.
    native = device.run(active.prepare(bell()).circuit, shots=8000, seed_simulator=3).result()
    assert tvd(a, native.get_counts()) < 0.05
    assert active.execution == "aer-active-noise" and full.execution == "aer-full-noise"


def test_physical_qubits_are_found_when_a_job_needs_them_and_on_demand_otherwise() -> None:
    qc = QuantumCircuit(3, 2)
    qc.h(0)
    qc.cx(0, 2)
    qc.measure([0, 2], [0, 1])
    device = QiskitBackend(fake_provider.FakeManilaV2(), isolation="thread")  # active noise
    assert device.prepare(qc).known_physical_qubits is not None
    plain = QiskitBackend(AerSimulator(), isolation="thread")
    prepared = plain.prepare(qc)
    assert prepared.known_physical_qubits is None  # not walked for a plain simulator
    assert prepared.physical_qubits == (0, 2) and prepared.num_qubits == 2
    assert prepared.known_physical_qubits == (0, 2)


def test_the_transpile_cache_rests_while_circuits_do_not_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from logosq_os_scheduler.backends import _qiskit
    from logosq_os_scheduler.backends._qiskit import _adapter

    fingerprints: list[int] = []
    real = _qiskit._fingerprint

    def counted(qc: QuantumCircuit) -> object:
        fingerprints.append(1)
        return real(qc)

    # Patched where the backend looks it up: the adapter module, not the package.
    monkeypatch.setattr(_adapter, "_fingerprint", counted)

    def rotation(theta: float) -> QuantumCircuit:
        qc = QuantumCircuit(1, 1)
        qc.rx(theta, 0)
        qc.measure(0, 0)
        return qc

    backend = QiskitBackend(AerSimulator(), isolation="thread")
    fresh = iter(range(1, 10_000))
    for _ in range(_qiskit._CACHE_TRIAL):  # a trial of circuits that never repeat
        backend.prepare(rotation(next(fresh) / 100))
    assert len(fingerprints) == _qiskit._CACHE_TRIAL
    for _ in range(_qiskit._CACHE_REST):  # so the cache rests: no fingerprint at all
        assert isinstance(backend.prepare(rotation(next(fresh) / 100)), PreparedCircuit)
    assert len(fingerprints) == _qiskit._CACHE_TRIAL
    # Then a new trial; a circuit that repeats keeps the cache in use through it and after.
    repeated = [backend.prepare(rotation(0.5)) for _ in range(3 * _qiskit._CACHE_TRIAL)]
    assert len(fingerprints) == 4 * _qiskit._CACHE_TRIAL
    assert len({id(p.circuit) for p in repeated}) == 1  # one transpilation, shared


async def test_noise_none_on_a_device_model_is_ideal() -> None:
    backend = QiskitBackend(fake_provider.FakeManilaV2(), noise="none", seed=4, isolation="thread")
    (counts,) = await backend.run([job(bell())])
    assert isinstance(counts, dict) and set(counts) == {"00", "11"}


async def test_bell_on_fake_brisbane_runs_offline_with_noise(
    record_property: Any,
) -> None:
    backend = QiskitBackend(fake_provider.FakeBrisbane(), seed=5, isolation="thread")
    prepared = backend.prepare(bell())
    assert backend.num_qubits == 127 and len(prepared.physical_qubits) == 2
    await backend.run([job(prepared, key="warm-up")])  # builds the 2-qubit noise model once
    started = time.perf_counter()
    (counts,) = await backend.run([job(prepared)])
    per_run = time.perf_counter() - started
    record_property("fake_brisbane_bell_seconds_per_run", per_run)
    print(f"FakeBrisbane Bell, active-qubit noise: {per_run * 1e3:.1f} ms per run")
    assert isinstance(counts, dict) and sum(counts.values()) == 4000
    assert counts.get("01", 0) + counts.get("10", 0) > 0


async def test_generic_backend_v2_is_simulated_with_its_noise() -> None:
    device = GenericBackendV2(5, seed=11)
    backend = QiskitBackend(device, seed=6, isolation="thread")
    assert backend.execution == "aer-active-noise"
    assert backend.error_rate is not None
    assert backend.all_to_all  # its default coupling map joins every pair
    (counts,) = await backend.run([job(bell())])
    assert isinstance(counts, dict) and sum(counts.values()) == 4000
    assert counts.get("01", 0) + counts.get("10", 0) > 0


class CountingAer(AerSimulator):  # type: ignore[misc]
    """A real AerSimulator that records each run() call's size and shots."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[int, int]] = []

    def run(self, circuits: Any, **options: Any) -> Any:
        self.calls.append((len(circuits), options["shots"]))
        return super().run(circuits, **options)


async def test_a_job_is_one_simulator_call_per_shots_group() -> None:
    sim = CountingAer()
    backend = QiskitBackend(sim, seed=7, isolation="thread")
    prepared = backend.prepare(bell())
    jobs = [job(prepared, shots=100, key=f"a{i}") for i in range(10)]
    jobs += [job(prepared, shots=300, key=f"b{i}") for i in range(5)]
    outcomes = await backend.run(jobs)
    assert sorted(sim.calls) == [(5, 300), (10, 100)]
    assert [sum(o.values()) for o in outcomes if isinstance(o, dict)] == [100] * 10 + [300] * 5


async def test_one_bad_circuit_does_not_fail_its_neighbours() -> None:
    backend = QiskitBackend(AerSimulator(), seed=8, isolation="thread")
    unmeasured = QuantumCircuit(2)
    unmeasured.h(0)
    outcomes = await backend.run(
        [
            job(bell(), key="good-1"),
            job(CircuitSpec(2), key="spec"),
            job(BELL_QASM3.replace("h q[0];", "h q[0]"), key="malformed"),
            job(unmeasured, key="unmeasured"),
            job(bell(), shots=0, key="no-shots"),
            job(bell(), key="good-2"),
        ]
    )
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[5], dict)
    assert isinstance(outcomes[1], PermanentBackendError) and "CircuitSpec" in str(outcomes[1])
    assert isinstance(outcomes[2], InvalidTaskError) and "line 6" in str(outcomes[2])
    assert isinstance(outcomes[3], PermanentBackendError) and "measures nothing" in str(outcomes[3])
    assert isinstance(outcomes[4], PermanentBackendError) and "shots" in str(outcomes[4])


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_a_failing_simulator_call_fails_only_its_own_circuits(isolation: str) -> None:
    # In a process, the job's two calls are two requests sent before either reply is read.
    backend = QiskitBackend(AerSimulator(), seed=8, isolation=isolation)  # type: ignore[arg-type]
    try:
        prepared = backend.prepare(bell())
        outcomes = await backend.run(
            [
                job(prepared, shots=100, key="a"),
                job(prepared, shots=100, key="b", method="no_such_method"),
                job(prepared, shots=100, key="c"),
            ]
        )
        assert isinstance(outcomes[0], dict) and isinstance(outcomes[2], dict)
        assert sum(outcomes[0].values()) == sum(outcomes[2].values()) == 100
        assert isinstance(outcomes[1], PermanentBackendError)
        assert "no_such_method" in str(outcomes[1])
    finally:
        await backend.aclose()


async def test_circuits_wider_than_the_device() -> None:
    backend = QiskitBackend(fake_provider.FakeManilaV2(), seed=9, isolation="thread")
    wide = QuantumCircuit(6, 6)
    wide.h(0)
    for t in range(1, 6):
        wide.cx(0, t)
    wide.measure(range(6), range(6))
    with pytest.raises(PermanentBackendError, match="cannot transpile"):
        backend.prepare(wide)
    # Declared on 9 qubits but acting on 2: its idle qubits are dropped and it fits.
    sparse = QuantumCircuit(9, 2)
    sparse.h(3)
    sparse.cx(3, 7)
    sparse.measure([3, 7], [0, 1])
    assert analyze_circuit(sparse).num_qubits == 2
    (counts,) = await backend.run([job(backend.prepare(sparse))])
    assert isinstance(counts, dict) and sum(counts.values()) == 4000


def test_shape_and_properties_from_the_target() -> None:
    manila = QiskitBackend(fake_provider.FakeManilaV2(), isolation="thread")
    assert manila.num_qubits == 5
    # Manila is a line 0-1-2-3-4.
    assert manila.coupling_map == frozenset(
        {(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3)}
    )
    errors = sorted(p.error for p in manila.backend.target["cx"].values())
    assert manila.error_rate == pytest.approx((errors[3] + errors[4]) / 2)  # median of 8
    star = analyze_circuit(CircuitSpec(5, [(0, 1), (0, 2), (0, 3), (0, 4)]))
    assert manila.check_requirements(star) is None  # the transpiler routes it with SWAPs
    asked = dataclasses.replace(star, requires_all_to_all=True)
    assert "coupling map" in (manila.check_requirements(asked) or "")
    assert "needs 6" in (manila.check_requirements(analyze_circuit(CircuitSpec(6))) or "")
    props = manila.properties()
    assert props["name"] == "fake_manila" and props["num_qubits"] == 5
    assert props["backend_class"].endswith("FakeManilaV2")
    assert props["backend_version"] and "cx" in props["basis_gates"]
    assert props["execution"] == "aer-active-noise"


def test_prepare_reuses_its_work() -> None:
    backend = QiskitBackend(AerSimulator(), isolation="thread")
    prepared = backend.prepare(bell())
    assert isinstance(prepared, PreparedCircuit)
    assert backend.prepare(prepared) is prepared
    # An equal circuit (another object) reuses the transpilation; a different angle does not.
    assert backend.prepare(bell()).circuit is prepared.circuit
    tilted = bell()
    tilted.rz(0.25, 0)
    assert backend.prepare(tilted).circuit is not prepared.circuit
    # A delay's unit is part of the key: 100 ns and 100 dt are different circuits.
    delays = []
    for unit in ("ns", "dt", "ns"):
        c = bell()
        c.delay(100, 0, unit=unit)
        delays.append(backend.prepare(c).circuit)
    assert delays[0] is not delays[1] and delays[0] is delays[2]
    # A custom gate's name says nothing about its definition: never served from the cache.
    custom = QuantumCircuit(2, 2)
    inner = QuantumCircuit(2, name="mine")
    inner.cx(0, 1)
    custom.append(inner.to_gate(), [0, 1])
    custom.measure([0, 1], [0, 1])
    assert backend.prepare(custom).circuit is not backend.prepare(custom).circuit
    other = QiskitBackend(fake_provider.FakeManilaV2(), isolation="thread")
    again = other.prepare(prepared)  # prepared elsewhere: prepared again from its source
    assert again is not prepared and again.source is prepared.source
    assert set(again.circuit.count_ops()) <= set(other.backend.target.operation_names)


def test_prepare_many_transpiles_together_and_a_bad_circuit_fails_alone() -> None:
    backend = QiskitBackend(fake_provider.FakeManilaV2(), seed=1, isolation="thread")
    alone = QiskitBackend(fake_provider.FakeManilaV2(), seed=1, isolation="thread")
    seen = backend.prepare(bell())
    tilted = []
    for angle in (0.1, 0.2):
        c = bell()
        c.rz(angle, 1)
        tilted.append(c)
    wide = QuantumCircuit(6, 6)
    wide.h(0)
    for q in range(5):
        wide.cx(q, q + 1)
    wide.measure(range(6), range(6))
    unmeasured = QuantumCircuit(2)
    unmeasured.h(0)
    out = backend.prepare_many([bell(), tilted[0], wide, unmeasured, tilted[1]])
    assert out[0].circuit is seen.circuit  # from the transpile cache
    assert isinstance(out[2], PermanentBackendError) and "transpile" in str(out[2])
    assert isinstance(out[3], PermanentBackendError) and "measures nothing" in str(out[3])
    for got, circuit in zip((out[1], out[4]), tilted, strict=True):
        assert isinstance(got, PreparedCircuit) and got.source is circuit
        assert got.circuit == alone.prepare(circuit).circuit
        assert backend.prepare(circuit).circuit is got.circuit  # now cached too


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_prepare_and_run_prepares_in_the_thread_that_runs_the_job(isolation: str) -> None:
    """One hand-off per job: the circuits are transpiled in the thread that then simulates
    them (or talks to the worker process), not on the event loop (unless the scheduler
    runs the job alone: see the test after the template tests)."""
    threads: dict[str, int] = {}

    class Watched(QiskitBackend):
        def prepare_many(self, circuits: Any) -> list[Any]:
            threads["prepare"] = threading.get_ident()
            return super().prepare_many(circuits)

        def _request(self, *args: Any) -> Any:
            threads["simulate"] = threading.get_ident()  # what is simulated, or sent to be
            return super()._request(*args)

    device = fake_provider.FakeManilaV2()
    backend = Watched(device, seed=3, isolation=isolation)  # type: ignore[arg-type]
    reference = QiskitBackend(device, seed=3, isolation="thread")
    unmeasured = QuantumCircuit(2)
    unmeasured.h(0)
    try:
        prepared, outcomes = await backend.prepare_and_run(
            [job(bell(), key="a"), job(unmeasured, key="b"), job(bell(), shots=0, key="c")]
        )
        assert threads["prepare"] == threads["simulate"] != threading.get_ident()
        # What it ran: the transpiled circuit, as prepare() makes it (and now caches).
        assert isinstance(prepared[0], PreparedCircuit)
        assert prepared[0].circuit == reference.prepare(bell()).circuit
        assert backend.prepare(bell()).circuit is prepared[0].circuit
        assert prepared[1] is None  # could not be prepared: fails alone
        assert isinstance(outcomes[1], PermanentBackendError)
        assert "measures nothing" in str(outcomes[1])
        assert isinstance(outcomes[2], PermanentBackendError) and "shots" in str(outcomes[2])
        assert prepared[2] is None
        # Same seed, same counts as a backend that prepares first and runs after.
        assert outcomes[0] == (await reference.run([job(reference.prepare(bell()))]))[0]
        with pytest.raises(PermanentBackendError, match="max_circuits_per_job"):
            await backend.prepare_and_run([job(bell(), key=str(i)) for i in range(1001)])
    finally:
        await backend.aclose()


async def test_aprepare_matches_prepare_for_large_circuits() -> None:
    backend = QiskitBackend(AerSimulator(), seed=1, isolation="thread")
    large = QuantumCircuit(4, 4)
    for _ in range(120):
        large.h(0)
        large.cx(0, 1)
    large.measure(range(4), range(4))
    assert large.size() > 200
    prepared = await backend.aprepare(large)
    assert prepared.circuit == backend.prepare(large).circuit


async def test_the_same_seed_gives_the_same_counts() -> None:
    async def counts(seed: int) -> list[Any]:
        backend = QiskitBackend(fake_provider.FakeManilaV2(), seed=seed, isolation="thread")
        prepared = backend.prepare(bell())
        return [await backend.run([job(prepared, key=str(i))]) for i in range(3)]

    first = await counts(10)
    assert first == await counts(10)
    assert first[0] != first[1]  # each run draws its own simulator seed


def test_bad_settings() -> None:
    with pytest.raises(InvalidConfigError) as info:
        QiskitBackend(AerSimulator(), noise="loud")  # type: ignore[arg-type]
    assert info.value.setting == "noise"
    with pytest.raises(InvalidConfigError) as info:
        QiskitBackend("not a backend")
    assert info.value.setting == "backend"
    with pytest.raises(InvalidConfigError):
        QiskitBackend(AerSimulator(), optimization_level=4)


def test_default_backend_is_aer() -> None:
    backend = default_backend()
    assert isinstance(backend, QiskitBackend)
    assert (backend.name, backend.execution, backend.isolation) == ("aer", "aer", "process")


def test_default_backend_without_aer_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qiskit_aer", None)
    with pytest.raises(MissingExtraError, match=r"logosq-os-scheduler\[qiskit\]") as info:
        default_backend()
    assert isinstance(info.value, SchedulerError) and isinstance(info.value, ImportError)
    assert info.value.extra == "qiskit"


@pytest.mark.timeout(120)
async def test_process_isolation_runs_survives_a_dead_worker_and_cancellation() -> None:
    device = fake_provider.FakeManilaV2()
    threaded = QiskitBackend(device, seed=12, isolation="thread")
    isolated = QiskitBackend(device, seed=12, isolation="process")
    try:
        await isolated.start()
        prepared = isolated.prepare(bell())
        assert prepared.payload is not None
        # Same seed, same counts, wherever the simulation runs.
        expected = await threaded.run([job(threaded.prepare(bell()))])
        assert await isolated.run([job(prepared)]) == expected

        # A worker that dies fails the job transiently; the next job gets a fresh worker.
        pool = isolated._pool
        assert pool is not None
        (worker,) = pool._all
        worker.process.kill()
        worker.process.wait()
        with pytest.raises(TransientBackendError, match="worker process died"):
            await isolated.run([job(prepared)])
        (counts,) = await isolated.run([job(prepared)])
        assert isinstance(counts, dict) and sum(counts.values()) == 4000

        # Cancelled mid-job: the worker is killed, the slot given back, the next job runs.
        # (Wherever the cancellation lands, before or during the exchange, that holds.)
        heavy = [job(prepared, shots=20_000, key=str(i)) for i in range(50)]
        task = asyncio.create_task(isolated.run(heavy))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (counts,) = await isolated.run([job(prepared)])
        assert isinstance(counts, dict) and sum(counts.values()) == 4000
        processes = [w.process for w in pool._all]
        assert processes
    finally:
        await isolated.aclose()
    assert all(p.poll() is not None for p in processes)
    with pytest.raises(InvalidConfigError, match="process isolation"):
        QiskitBackend(BasicSimulator(), num_qubits=24, isolation="process")


def test_circuits_cross_to_worker_processes_as_qpy() -> None:
    from logosq_os_scheduler.backends._aer_worker import dump_circuit, load_circuit

    backend = QiskitBackend(fake_provider.FakeManilaV2(), seed=1, isolation="process")
    prepared = backend.prepare(bell())
    assert prepared.payload is not None and prepared.payload.startswith(b"QISKIT")
    assert load_circuit(prepared.payload) == prepared.circuit
    # What QPY cannot hold still crosses, as a pickle.
    odd = {"not": "a circuit"}
    assert not dump_circuit(odd).startswith(b"QISKIT")
    assert load_circuit(dump_circuit(odd)) == odd


async def test_circuits_the_cache_does_not_keep_travel_in_one_bundle() -> None:
    from logosq_os_scheduler.backends._aer_worker import Bound, load_circuits

    isolated = QiskitBackend(AerSimulator(), seed=21, isolation="process")
    threaded = QiskitBackend(AerSimulator(), seed=21, isolation="thread")
    try:
        kept = isolated.prepare(bell())  # the cache is in use: serialised once, kept
        assert kept.payload is not None
        # Kept too, but it has angles: it goes whole in the bundle the first time, as a
        # template and its angles after, so it is never serialised alone.
        turned = isolated.prepare(rotated(math.pi, 0.0))
        assert turned.payload is None
        assert isolated._request([turned], 10, {}).circuits == [0]
        assert isinstance(isolated._request([turned], 10, {}).circuits[0], Bound)
        isolated._cache_rest = 10  # the cache rests: circuits are neither kept nor serialised
        flipped = bell()  # no angles: sent whole (see the template tests below)
        flipped.x(0)
        first, second = isolated.prepare(flipped), isolated.prepare(bell())
        assert first.payload is None and second.payload is None
        request = isolated._request([first, second, first, kept], 100, {})
        assert request.circuits == [0, 1, 0, kept.payload]  # a repeat is sent once
        assert request.bundle is not None and request.bundle.startswith(b"QISKIT")
        assert load_circuits(request.bundle) == [first.circuit, second.circuit]
        # What runs in the process is what runs in a thread: same seed, same counts.
        jobs = [job(p, shots=500, key=str(i)) for i, p in enumerate([first, second, first, kept])]
        assert await isolated.run(jobs) == await threaded.run(
            [
                job(threaded.prepare(p.source), shots=500, key=j.idempotency_key)
                for p, j in zip([first, second, first, kept], jobs, strict=True)
            ]
        )
    finally:
        await isolated.aclose()


def rotated(a: float, b: float, *, entangled: bool = False) -> QuantumCircuit:
    """Two qubits turned by ry(a) and ry(b): with angles 0 or pi, a known bitstring."""
    qc = QuantumCircuit(2, 2)
    qc.ry(a, 0)
    qc.ry(b, 1)
    if entangled:
        qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


# Angles (qubit 0, qubit 1) and the bitstring each gives (qubit 0 rightmost), then the
# same with a CX after the turns (another template); a Bell circuit has no angles.
ROTATIONS = [(0.0, 0.0, "00"), (math.pi, 0.0, "01"), (0.0, math.pi, "10"), (math.pi, math.pi, "11")]


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_copies_of_one_template_run_as_one_experiment(
    isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qiskit_aer.backends.aerbackend import AerBackend

    from logosq_os_scheduler.backends._aer_worker import Bound

    calls: list[tuple[int, list[int] | None]] = []
    real = AerBackend._execute_circuits_job

    def spied(self: Any, circuits: Any, binds: Any, *args: Any, **kwargs: Any) -> Any:
        sizes = None if binds is None else [len(next(iter(b.values()), [None])) for b in binds]
        calls.append((len(circuits), sizes))
        return real(self, circuits, binds, *args, **kwargs)

    monkeypatch.setattr(AerBackend, "_execute_circuits_job", spied)
    # Level 0 keeps ry(0) as it is, so every copy has one structure.
    backend = QiskitBackend(
        AerSimulator(),
        seed=3,
        optimization_level=0,
        isolation=isolation,  # type: ignore[arg-type]
    )
    try:
        circuits = [rotated(a, b) for a, b, _ in ROTATIONS]
        circuits.insert(2, rotated(math.pi, 0.0, entangled=True))  # 01, then CX: 11
        circuits.insert(4, bell())
        prepared = [backend.prepare(c) for c in circuits]

        def kinds(request: Any) -> list[str]:
            return ["Bound" if isinstance(c, Bound) else "whole" for c in request.circuits]

        # A structure's first circuit goes whole; a template is made when it comes again.
        assert kinds(backend._request(prepared, 100, {})) == [
            *("whole", "Bound", "whole", "Bound", "whole", "Bound")
        ]
        request = backend._request(prepared, 100, {})
        assert kinds(request) == ["Bound", "Bound", "Bound", "Bound", "whole", "Bound"]
        bound = [c for c in request.circuits if isinstance(c, Bound)]
        assert len({b.template for b in bound}) == 2 and len(request.templates) == 2
        if isolation == "process":
            assert all(isinstance(t, bytes) for t in request.templates.values())

        outcomes = await backend.run(
            [job(p, shots=100, key=str(i)) for i, p in enumerate(prepared)]
        )
        expected = [bits for _, _, bits in ROTATIONS]
        expected.insert(2, "11")
        assert [o for i, o in enumerate(outcomes) if i != 4] == [{bits: 100} for bits in expected]
        assert set(outcomes[4]) == {"00", "11"} and sum(outcomes[4].values()) == 100
        if isolation == "thread":
            # One call: the first template with its four copies, the entangled one, Bell.
            assert calls == [(3, [4, 1, 1])]
    finally:
        await backend.aclose()


async def test_a_short_job_run_alone_is_prepared_and_sent_from_the_event_loop() -> None:
    """In process isolation, a job the scheduler runs alone (sole_job) whose preparation is
    known to be short is transpiled and sent from the event loop: no hand-off to a thread.
    A job to a worker that does not hold the simulator yet, one sent before anything was
    learned, one run beside others, and one expected to take long go through a thread."""
    from logosq_os_scheduler.backends._base import sole_job
    from logosq_os_scheduler.backends._qiskit import _INLINE_PREPARE_SECONDS

    threads: list[int] = []

    class Watched(QiskitBackend):
        def prepare_many(self, circuits: Any) -> list[Any]:
            threads.append(threading.get_ident())
            return super().prepare_many(circuits)

    backend = Watched(AerSimulator(), isolation="process")
    loop_thread = threading.get_ident()
    jobs = [job(rotated(a, b), shots=50, key=want) for a, b, want in ROTATIONS]
    expected = [{want: 50} for _, _, want in ROTATIONS]
    short = _INLINE_PREPARE_SECONDS / len(jobs) / 2  # seconds per circuit
    long = _INLINE_PREPARE_SECONDS / len(jobs) * 2

    async def run(alone: bool, per_circuit: float | None) -> bool:
        """Run the job; whether it was prepared on the loop."""
        backend._transpile_seconds = per_circuit
        token = sole_job.set(alone)
        try:
            prepared, outcomes = await backend.prepare_and_run(jobs)
        finally:
            sole_job.reset(token)
        assert outcomes == expected
        assert all(isinstance(p, PreparedCircuit) for p in prepared)
        return threads[-1] == loop_thread

    try:
        assert backend._transpile_seconds is None
        backend.prepare_many([rotated(0.1, 0.2), rotated(0.3, 0.4)])
        assert backend._transpile_seconds is not None and backend._transpile_seconds > 0
        assert not await run(True, short)  # the worker does not hold the simulator yet
        assert not await run(True, None)  # nothing learned
        assert await run(True, short)
        assert not await run(False, short)  # the scheduler has other work
        assert not await run(True, long)
        assert await run(True, short)
        assert len(threads) == 7
    finally:
        await backend.aclose()


async def test_a_failing_template_call_runs_its_copies_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from logosq_os_scheduler.backends import _aer_worker

    real = _aer_worker.run_now
    grouped: list[int] = []

    def refusing(simulator: Any, circuits: Any, shots: int, options: Any, binds: Any = None) -> Any:
        if binds is not None:
            grouped.append(len(circuits))
            raise RuntimeError("parameter binds refused")
        return real(simulator, circuits, shots, options)

    monkeypatch.setattr(_aer_worker, "run_now", refusing)
    backend = QiskitBackend(AerSimulator(), seed=4, optimization_level=0, isolation="thread")
    jobs = [job(backend.prepare(rotated(a, b)), shots=50, key=bits) for a, b, bits in ROTATIONS]
    outcomes = await backend.run(jobs)
    assert grouped == [2]  # the first copy as it is, a template with the other three
    assert outcomes == [{bits: 50} for _, _, bits in ROTATIONS]


def test_circuits_that_never_repeat_their_structure_make_no_template() -> None:
    from logosq_os_scheduler.backends._aer_worker import Bound

    backend = QiskitBackend(AerSimulator(), seed=5, optimization_level=0, isolation="thread")
    circuits = []
    for depth in range(1, 6):  # five structures, one circuit each
        qc = rotated(0.1, 0.2)
        for _ in range(depth):
            qc.rz(0.3, 0)
        circuits.append(backend.prepare(qc))
    request = backend._request(circuits, 10, {})
    assert not any(isinstance(c, Bound) for c in request.circuits) and not request.templates
    assert backend._templates is not None and not backend._templates._by_structure


def test_run_now_calls_only_the_job_function_it_knows() -> None:
    from qiskit_aer.backends.aerbackend import AerBackend

    from logosq_os_scheduler.backends._aer_worker import _runs_jobs_directly

    class OtherSignature(AerSimulator):  # type: ignore[misc]
        def _execute_circuits_job(self, circuits: Any, run_options: Any) -> Any:
            raise AssertionError("a job function of another shape is never called directly")

    assert _runs_jobs_directly(AerSimulator)
    assert not _runs_jobs_directly(CountingAer)  # a run() of its own
    assert not _runs_jobs_directly(OtherSignature)
    assert not _runs_jobs_directly(BasicSimulator)
    assert AerBackend.run.__qualname__ == "AerBackend.run"  # what the check looks for


async def test_a_simulator_with_its_own_run_gets_the_binds_through_it() -> None:
    sim = CountingAer()
    backend = QiskitBackend(sim, seed=6, optimization_level=0, isolation="thread")
    jobs = [job(backend.prepare(rotated(a, b)), shots=20, key=bits) for a, b, bits in ROTATIONS]
    assert await backend.run(jobs) == [{bits: 20} for _, _, bits in ROTATIONS]
    assert sim.calls == [(2, 20)]  # the first copy, and a template with three binds


def test_what_can_be_a_template() -> None:
    from qiskit.circuit import Gate, Instruction, Parameter
    from qiskit.circuit.library import CXGate, UnitaryGate

    from logosq_os_scheduler.backends._qiskit import _structure_and_angles, _template_of

    turned = rotated(0.25, -1.5, entangled=True)
    structure, angles = _structure_and_angles(turned)  # type: ignore[misc]
    assert angles == (0.25, -1.5)
    template = _template_of(turned)
    assert len(template.parameters) == 2
    assert template.assign_parameters(dict(zip(template.parameters, angles, strict=True))) == turned
    other = _structure_and_angles(rotated(2.0, 3.0, entangled=True))
    assert other is not None and other[0] == structure and other[1] == (2.0, 3.0)
    assert _structure_and_angles(rotated(2.0, 3.0))[0] != structure  # type: ignore[index]

    def refused(add: Any) -> bool:
        qc = rotated(0.5, 0.5)
        add(qc)
        return _structure_and_angles(qc) is None

    assert _structure_and_angles(bell()) is None  # no angles: nothing to bind
    assert refused(lambda qc: qc.unitary([[0, 1], [1, 0]], [0]))
    assert refused(lambda qc: qc.append(UnitaryGate([[0, 1], [1, 0]]), [1]))
    assert refused(lambda qc: qc.append(Gate("custom", 1, []), [0]))  # its definition unseen
    assert refused(lambda qc: qc.append(CXGate(ctrl_state=0), [0, 1]))
    assert refused(lambda qc: qc.rz(Parameter("unbound"), 0))
    assert refused(lambda qc: qc.delay(10, 0))
    # Named like a measurement, but not Qiskit's: its name does not say what it does.
    assert refused(lambda qc: qc.append(Instruction("measure", 1, 1, []), [0], [0]))
    big = rotated(0.5, 0.5)
    for _ in range(1000):
        big.rz(0.1, 0)
        big.rz(0.1, 1)
    assert _structure_and_angles(big) is None  # too large to be worth a template


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bytes of every circuit the worker code loads from here on."""
    from logosq_os_scheduler.backends import _aer_worker

    seen: list[bytes] = []
    real = _aer_worker.load_circuit

    def counted(data: bytes) -> Any:
        seen.append(data)
        return real(data)

    monkeypatch.setattr(_aer_worker, "load_circuit", counted)
    return seen


def test_a_template_is_loaded_once_per_receiver(loads: list[bytes]) -> None:
    from logosq_os_scheduler.backends import _aer_worker
    from logosq_os_scheduler.backends._qiskit import _template_of

    template = _template_of(rotated(0.1, 0.2))
    payload = _aer_worker.dump_circuit(template)
    cache = _aer_worker.SimulatorCache()
    first = cache.template(7, payload)
    again = cache.template(7, payload)  # sent again with the next request: not loaded again
    assert loads == [payload] and again is first
    assert first[0] == template and [p.name for p in first[1]] == ["angle[0]", "angle[1]"]


def test_run_now_gives_what_run_gives() -> None:
    from logosq_os_scheduler.backends._aer_worker import run_now

    sim = AerSimulator()
    circuits = [rotated(0.7, 1.1, entangled=True), bell()]
    direct = sim.run(circuits, shots=300, seed_simulator=11).result()
    now = run_now(sim, circuits, 300, {"seed_simulator": 11})
    assert [now.get_counts(i) for i in range(2)] == [direct.get_counts(i) for i in range(2)]


def test_a_worker_loads_a_circuit_sent_many_times_once(loads: list[bytes]) -> None:
    from logosq_os_scheduler.backends import _aer_worker

    one, other = bell(), bell()
    other.x(1)
    payload = _aer_worker.dump_circuit(one)
    request = _aer_worker.Request(
        source="s",
        sources={},
        mode="native",
        qubits=None,
        circuits=[payload, 0, payload],
        shots=10,
        options={},
        bundle=_aer_worker.dump_circuits([other]),
    )
    circuits = _aer_worker._circuits_of(request)
    assert circuits == [one, other, one] and circuits[0] is circuits[2]
    assert len(loads) == 1


async def test_a_large_reply_is_read_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle
    import types

    from logosq_os_scheduler.backends._qiskit import _pool

    readers: list[int] = []

    def loads(data: bytes) -> Any:
        readers.append(threading.get_ident())
        return pickle.loads(data)

    shim = types.SimpleNamespace(
        loads=loads, dumps=pickle.dumps, HIGHEST_PROTOCOL=pickle.HIGHEST_PROTOCOL
    )
    monkeypatch.setattr(_pool, "pickle", shim)  # the worker pool unpickles the replies
    isolated = QiskitBackend(AerSimulator(), seed=17, isolation="process")
    threaded = QiskitBackend(AerSimulator(), seed=17, isolation="thread")
    jobs = [job(bell(), shots=100, key="a")]
    try:
        monkeypatch.setattr(_pool, "_INLINE_REPLY_BYTES", 1 << 30)
        small = (await isolated.prepare_and_run(jobs))[1]
        monkeypatch.setattr(_pool, "_INLINE_REPLY_BYTES", 0)  # every reply counts as large
        large = (await isolated.prepare_and_run(jobs))[1]
    finally:
        await isolated.aclose()
    loop_thread = threading.get_ident()
    assert readers[0] == loop_thread and readers[1] != loop_thread
    assert [small, large] == [
        (await threaded.prepare_and_run(jobs))[1],
        (await threaded.prepare_and_run(jobs))[1],
    ]


async def test_a_reply_longer_than_one_read_of_the_pipe_is_read_whole() -> None:
    from logosq_os_scheduler.backends import _qiskit

    wide = QuantumCircuit(13, 13)
    wide.h(range(13))
    wide.measure(range(13), range(13))
    isolated = QiskitBackend(AerSimulator(), seed=18, isolation="process")
    threaded = QiskitBackend(AerSimulator(), seed=18, isolation="thread")
    jobs = [job(wide, shots=20_000, key="wide")]
    try:
        (counts,) = (await isolated.prepare_and_run(jobs))[1]
    finally:
        await isolated.aclose()
    assert isinstance(counts, dict) and len(counts) > 4000  # a reply of several reads
    assert len(repr(counts)) > 2 * _qiskit._READ_SIZE
    assert [counts] == list((await threaded.prepare_and_run(jobs))[1])


def test_process_isolation_on_uvloop() -> None:
    # The scheduler runs on uvloop where it is installed: the loop watches the worker's
    # pipe there too.
    uvloop = pytest.importorskip("uvloop")
    backend = QiskitBackend(AerSimulator(), seed=16, isolation="process")
    reference = QiskitBackend(AerSimulator(), seed=16, isolation="thread")
    jobs = [job(bell(), shots=200, key="a"), job(bell(), shots=300, key="b")]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            outcomes = runner.run(backend.prepare_and_run(jobs))[1]
            again = runner.run(backend.prepare_and_run(jobs))[1]
        finally:
            runner.run(backend.aclose())
    expected = asyncio.run(reference.prepare_and_run(jobs))[1]
    assert outcomes == expected
    assert [sum(o.values()) for o in again if isinstance(o, dict)] == [200, 300]


def test_process_isolation_where_the_loop_cannot_watch_pipes() -> None:
    # The Windows proactor loop has no add_reader: the helper thread reads the replies.
    class NoPipes(asyncio.SelectorEventLoop):
        def add_reader(self, *args: Any) -> None:
            raise NotImplementedError

    backend = QiskitBackend(AerSimulator(), seed=15, isolation="process")
    reference = QiskitBackend(AerSimulator(), seed=15, isolation="thread")
    jobs = [job(bell(), shots=200, key="a"), job(bell(), shots=300, key="b")]
    with asyncio.Runner(loop_factory=NoPipes) as runner:
        try:
            outcomes = runner.run(backend.prepare_and_run(jobs))[1]
        finally:
            runner.run(backend.aclose())
    assert outcomes == asyncio.run(reference.prepare_and_run(jobs))[1]
    assert [sum(o.values()) for o in outcomes if isinstance(o, dict)] == [200, 300]


def test_replies_are_split_into_frames_however_they_arrive() -> None:
    import pickle

    from logosq_os_scheduler.backends._aer_worker import frame, split_frames

    stream = frame(("ok", [("counts", {"00": 3})], 0.5)) + frame(("job-error", "permanent", "x"))
    buffer = bytearray()
    bodies: list[bytes] = []
    for k in range(0, len(stream), 7):  # in pieces that cut headers and bodies
        buffer += stream[k : k + 7]
        bodies += split_frames(buffer)
    assert [pickle.loads(b) for b in bodies] == [
        ("ok", [("counts", {"00": 3})], 0.5),
        ("job-error", "permanent", "x"),
    ]
    assert not buffer


def test_the_worker_process_reads_requests_without_importing_the_package() -> None:
    import pickle
    import subprocess

    from logosq_os_scheduler.backends import _aer_worker

    assert _aer_worker.__name__ == _aer_worker.MODULE_NAME
    request = _aer_worker.Request(
        source="aer",
        sources={"aer": pickle.dumps(("aer", AerSimulator()))},
        mode="native",
        qubits=None,
        circuits=[_aer_worker.dump_circuit(bell())],
        shots=50,
        options={"seed_simulator": 5},
    )
    worker = subprocess.run(
        [sys.executable, "-X", "importtime", _aer_worker.__file__],
        input=_aer_worker.frame(request),
        capture_output=True,
        timeout=120,
        check=True,
    )
    status, outcomes, seconds = pickle.loads(worker.stdout[8:])
    assert status == "ok" and seconds > 0
    assert outcomes[0][0] == "counts" and sum(outcomes[0][1].values()) == 50
    assert "logosq_os_scheduler" not in worker.stderr.decode()  # -X importtime lists imports


def test_process_isolation_across_event_loops() -> None:
    # A second asyncio.run() (as a blocking wrapper does) gets fresh workers, not the old
    # loop's, and nothing is left running.
    backend = QiskitBackend(AerSimulator(), seed=14, isolation="process")
    prepared = backend.prepare(bell())
    first = asyncio.run(backend.run([job(prepared, shots=100)]))
    old_processes = [w.process for w in backend._pool._all]  # type: ignore[union-attr]
    second = asyncio.run(backend.run([job(prepared, shots=100)]))
    assert all(p.poll() is not None for p in old_processes)
    for outcome in (*first, *second):
        assert isinstance(outcome, dict) and sum(outcome.values()) == 100
    asyncio.run(backend.aclose())


async def test_a_backend_that_is_not_simulated_here_runs_through_its_own_run() -> None:
    # BasicSimulator stands for any backend this package does not simulate itself (remote
    # hardware, another provider): its own run() is called, in a thread.
    with pytest.raises(InvalidConfigError, match="declares no qubit count") as refused:
        QiskitBackend(BasicSimulator())
    assert "QiskitBackend(BasicSimulator(), num_qubits=N)" in str(refused.value)  # the way out
    backend = QiskitBackend(BasicSimulator(), num_qubits=24, seed=13, simulator_threads=1)
    assert (backend.execution, backend.isolation) == ("native", "thread")
    with warnings.catch_warnings():
        # Aer's thread budget is not passed on: BasicSimulator would warn of an unused option.
        warnings.simplefilter("error")
        outcomes = await backend.run(
            [job(bell(), shots=200, key="a"), job(bell(), shots=200, key="b")]
        )
    for counts in outcomes:
        assert isinstance(counts, dict) and set(counts) == {"00", "11"}
        assert sum(counts.values()) == 200


def test_error_classification() -> None:
    from qiskit.exceptions import QiskitError

    from logosq_os_scheduler.backends._aer_worker import classify

    assert classify(MemoryError()) == "transient"
    assert classify(ConnectionResetError()) == "transient"
    assert classify(QiskitError("bad circuit")) == "permanent"
    assert classify(RuntimeError("Invalid simulation method (x).")) == "permanent"
    assert classify(ValueError("bad option")) == "permanent"

    class Unknown(Exception):
        pass

    assert classify(Unknown()) == "transient"


def test_as_backend_wraps_qiskit_backends_only() -> None:
    from logosq_os_scheduler.backends import MockBackend, as_backend

    mock = MockBackend()
    assert as_backend(mock) is mock
    wrapped = as_backend(AerSimulator(), name="aer")
    assert isinstance(wrapped, QiskitBackend) and wrapped.name == "aer"
    with pytest.raises(InvalidConfigError, match="got str"):
        as_backend("aer")
