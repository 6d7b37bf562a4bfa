"""Routing overhead on the routing decision: what fitting a circuit to a device's coupling
map added to it, measured from the transpiled circuit once per circuit structure."""

from __future__ import annotations

import pytest

pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_ibm_runtime")

from qiskit import QuantumCircuit
from qiskit.synthesis import synth_qft_full
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeBrisbane

from logosq_os_scheduler import QuantumScheduler, RoutingOverhead, Task
from logosq_os_scheduler.backends import QiskitBackend

pytestmark = pytest.mark.qiskit


def chain(n: int) -> QuantumCircuit:
    qc = QuantumCircuit(n)
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
    qc.measure_all()
    return qc


def triangle() -> QuantumCircuit:
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.cx(0, 2)
    qc.measure_all()
    return qc


def qft(n: int) -> QuantumCircuit:
    qc = synth_qft_full(n)
    qc.measure_all()
    return qc


async def test_the_decision_records_what_routing_added_on_brisbane() -> None:
    """A CX triangle and QFT(5) need SWAPs on heavy-hex (overhead > 0); a chain fits a path
    of the device as it is (overhead 0). Equal circuits share one measurement."""
    circuits = {"triangle": triangle(), "qft5": qft(5), "chain": chain(6), "chain_again": chain(6)}
    async with QuantumScheduler(2) as s:
        await s.register_backend("ibm_brisbane", QiskitBackend(FakeBrisbane(), noise="none"))
        handles = {
            name: await s.submit(Task.quantum(name).with_circuit(qc).with_shots(16))
            for name, qc in circuits.items()
        }
        results = {name: await h for name, h in handles.items()}
    overhead = {name: r.routing.overhead for name, r in results.items()}
    assert all(isinstance(o, RoutingOverhead) for o in overhead.values())
    tri, qft5, line = overhead["triangle"], overhead["qft5"], overhead["chain"]
    assert tri.logical_two_qubit_gates == 3 and tri.added_two_qubit_gates > 0
    assert tri.added_two_qubit_gates % 3 == 0  # SWAPs, three two-qubit gates each
    assert qft5.added_two_qubit_gates > 0 and qft5.added_depth > 0
    assert qft5.two_qubit_gates == qft5.logical_two_qubit_gates + qft5.added_two_qubit_gates
    assert (line.added_two_qubit_gates, line.added_depth) == (0, 0)
    assert (line.two_qubit_gates, line.depth) == (5, 5)
    assert overhead["chain_again"] is line  # one measurement per circuit structure
    record = results["qft5"].routing.as_dict()["overhead"]
    assert record["added_two_qubit_gates"] == qft5.added_two_qubit_gates
    assert record["logical_depth"] == qft5.logical_depth


async def test_a_backend_without_a_coupling_map_routes_nothing() -> None:
    async with QuantumScheduler(2) as s:
        await s.register_backend("aer", QiskitBackend(AerSimulator(), isolation="thread"))
        result = await (await s.submit(Task.quantum("t").with_circuit(triangle()).with_shots(8)))
    o = result.routing.overhead
    assert o is not None and (o.added_two_qubit_gates, o.added_depth) == (0, 0)
    assert o.two_qubit_gates == 3
