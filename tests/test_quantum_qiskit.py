"""Real circuits through the scheduler: Aer, offline IBM device models, OpenQASM 2 and 3."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_ibm_runtime")

from qiskit import QuantumCircuit
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeBrisbane, FakeManilaV2

from logosq_os_scheduler import (
    InvalidTaskError,
    NoRouteError,
    QuantumScheduler,
    RoutingRule,
    Task,
    TaskPriority,
)

pytestmark = pytest.mark.qiskit

BELL_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0], q[1];
measure q -> c;
"""

BELL_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def ghz(n: int) -> QuantumCircuit:
    qc = QuantumCircuit(n)
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
    qc.measure_all()
    return qc


def star(n: int) -> QuantumCircuit:
    qc = QuantumCircuit(n)
    qc.h(0)
    for i in range(1, n):
        qc.cx(0, i)
    qc.measure_all()
    return qc


async def test_bell_on_the_default_simulator_and_from_openqasm_2_and_3() -> None:
    async with QuantumScheduler(2) as s:
        r = await (await s.submit(Task.quantum("bell").with_circuit(bell()).with_shots(4000)))
        assert r.backend == "aer" and set(r.value) == {"00", "11"}
        assert sum(r.value.values()) == 4000
        assert abs(r.value["00"] - 2000) < 200  # 50/50 within about 6 sigma
        for text in (BELL_QASM2, BELL_QASM3):
            q = await (await s.submit(Task.quantum("qasm").with_circuit(text).with_shots(2000)))
            assert set(q.value) == {"00", "11"} and sum(q.value.values()) == 2000
        with pytest.raises(InvalidTaskError, match="line 6") as info:
            await s.submit(Task.quantum("bad").with_circuit(BELL_QASM2.replace("cx q[0]", "cx q[")))
        assert info.value.field == "circuit"
        with pytest.raises(InvalidTaskError, match="line") as info:
            await s.submit(
                Task.quantum("bad3").with_circuit(BELL_QASM3.replace("h q[0];", "h q[0"))
            )
        assert s.metrics().submitted == 3


async def test_offline_device_models_show_their_noise_and_rules_route_real_circuits() -> None:
    async with QuantumScheduler(2) as s:
        await s.register_backend("manila", FakeManilaV2())
        await s.register_backend("ibm_brisbane", FakeBrisbane())
        await s.register_backend("aer", AerSimulator())
        s.set_routing_rules(
            [
                RoutingRule().when_qubit_count_exceeds(5).route_to("ibm_brisbane"),
                RoutingRule().when_requires_all_to_all().route_to("aer"),
                RoutingRule().default().route_to("manila"),
            ]
        )
        noisy = await s.submit(Task.quantum("bell").with_circuit(bell()).with_shots(4000))
        wide = await s.submit(Task.quantum("ghz7").with_circuit(ghz(7)).with_shots(1000))
        dense = await s.submit(
            Task.quantum("star")
            .with_circuit(star(5))
            .with_priority(TaskPriority.HIGH)
            .with_all_to_all()
        )
        # The same star, not asking for all-to-all: the line device runs it, with SWAPs.
        routed = await s.submit(Task.quantum("star-routed").with_circuit(star(5)))
        r_noisy, r_wide, r_dense = await noisy, await wide, await dense
        r_routed = await routed

    assert r_noisy.backend == "manila" and r_noisy.routing.rule_index == 2
    errors = r_noisy.value.get("01", 0) + r_noisy.value.get("10", 0)
    assert 0 < errors < 800  # the device model's noise shows, and the state is still a Bell state
    assert r_wide.backend == "ibm_brisbane"
    assert r_wide.routing.considered["manila"] == "has 5 qubits, circuit needs 7"
    assert sum(r_wide.value.values()) == 1000
    assert r_wide.value.get("0000000", 0) + r_wide.value.get("1111111", 0) > 600
    assert r_dense.backend == "aer" and r_dense.routing.rule_index == 1
    assert set(r_dense.value) == {"00000", "11111"}
    assert r_routed.backend == "manila" and r_routed.routing.rule_index == 2
    ghz_share = r_routed.value.get("00000", 0) + r_routed.value.get("11111", 0)
    assert ghz_share > 0.5 * sum(r_routed.value.values())  # noisy, and still a GHZ state


async def test_a_circuit_wider_than_every_device_fails_at_submit_naming_each() -> None:
    async with QuantumScheduler(1) as s:
        await s.register_backend("generic5", GenericBackendV2(5, seed=1))
        await s.register_backend("manila", FakeManilaV2())
        with pytest.raises(NoRouteError) as info:
            await s.submit(Task.quantum("wide").with_circuit(ghz(9)))
    assert info.value.reasons == {
        "generic5": "has 5 qubits, circuit needs 9",
        "manila": "has 5 qubits, circuit needs 9",
    }


async def test_run_options_reach_the_simulator_so_a_seeded_run_repeats() -> None:
    circuit = QuantumCircuit(3)
    circuit.h(range(3))
    circuit.measure_all()
    async with QuantumScheduler(2) as s:

        def seeded(seed: int) -> object:
            return (
                Task.quantum(f"seeded-{seed}")
                .with_circuit(circuit)
                .with_shots(500)
                .with_run_options(seed_simulator=seed)
            )

        # Submitted together, so they share a batch: the backend must still keep each
        # circuit's options (one simulator call per distinct set of options).
        handles = [s.submit_nowait(seeded(seed)) for seed in (11, 11, 12)]
        first, again, other = [(await h).value for h in handles]
        assert first == again
        assert first != other
        assert sum(first.values()) == 500 and len(first) == 8
        later = await (await s.submit(seeded(11)))
        assert later.value == first
    with pytest.raises(InvalidTaskError, match="with_shots") as info:
        Task.quantum("q").with_run_options(shots=10)
    assert info.value.field == "run_options"
    with pytest.raises(InvalidTaskError, match="only quantum"):
        Task.classical("c").with_run_options(seed_simulator=1)


async def test_the_scheduler_tells_a_backend_when_its_job_is_all_there_is() -> None:
    """sole_job is True while a job runs with no other task of the scheduler unfinished
    (the backend may then prepare it on the event loop), False beside other work."""
    import asyncio

    from logosq_os_scheduler.backends import QiskitBackend
    from logosq_os_scheduler.backends._base import sole_job

    seen: list[bool] = []

    class Watched(QiskitBackend):
        async def prepare_and_run(self, jobs: Any) -> Any:
            seen.append(sole_job.get())
            return await super().prepare_and_run(jobs)

    async def wait(gate: asyncio.Event) -> str:
        await gate.wait()
        return "done"

    gate = asyncio.Event()
    async with QuantumScheduler(2) as s:
        await s.register_backend("aer", Watched(AerSimulator(), isolation="thread"))
        task = Task.quantum("alone").with_circuit(bell()).with_shots(10)
        assert sum((await (await s.submit(task))).value.values()) == 10
        waiting = await s.submit(Task.classical("waiting").with_function(wait, gate))
        task = Task.quantum("beside").with_circuit(bell()).with_shots(10)
        assert sum((await (await s.submit(task))).value.values()) == 10
        gate.set()
        assert (await waiting).value == "done"
    assert seen == [True, False]
    assert sole_job.get() is False


async def test_connectivity_is_a_cost_dense_circuits_run_on_the_only_coupling_map() -> None:
    """A Toffoli, a CX triangle, QFT(4) to QFT(8) and a 20-qubit GHZ all route to FakeBrisbane
    when it is the only device, and run (the transpiler adds SWAPs); an explicit all-to-all
    request is still refused, with the way out in the message."""
    from qiskit.synthesis.qft import synth_qft_full

    toffoli = QuantumCircuit(3)
    toffoli.x(0)
    toffoli.x(1)
    toffoli.ccx(0, 1, 2)
    toffoli.measure_all()
    triangle = QuantumCircuit(3)
    triangle.h(0)
    triangle.cx(0, 1)
    triangle.cx(1, 2)
    triangle.cx(0, 2)
    triangle.measure_all()
    circuits = {"toffoli": toffoli, "triangle": triangle}
    for n in range(4, 9):
        qft = synth_qft_full(n)
        qft.measure_all()
        circuits[f"qft{n}"] = qft
    async with QuantumScheduler(2) as s:
        await s.register_backend("ibm_brisbane", FakeBrisbane())
        handles = {
            name: await s.submit(Task.quantum(name).with_circuit(qc).with_shots(64))
            for name, qc in circuits.items()
        }
        # 20 qubits under the device's full noise model cost a trajectory per shot: few shots.
        handles["ghz20"] = await s.submit(Task.quantum("ghz20").with_circuit(ghz(20)).with_shots(4))
        results = {name: await h for name, h in handles.items()}
        with pytest.raises(NoRouteError) as info:
            await s.submit(Task.quantum("a2a").with_circuit(triangle).with_all_to_all())
    assert {r.backend for r in results.values()} == {"ibm_brisbane"}
    for name, r in results.items():
        assert sum(r.counts.values()) == (4 if name == "ghz20" else 64), name
        assert r.routing.considered["ibm_brisbane"] == "chosen"
    toffoli_counts = results["toffoli"].counts
    assert max(toffoli_counts, key=toffoli_counts.__getitem__) == "111"  # noisy, still a Toffoli
    reason = info.value.reasons["ibm_brisbane"]
    assert "coupling map" in reason and "leave with_all_to_all() out" in reason
