"""RemoteSampler and RemoteEstimator against a real ``logosq serve`` with an Aer backend:
Qiskit's containers come back, and qiskit-algorithms' VQE runs on them unchanged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("msgspec")
pytest.importorskip("qiskit")
pytest.importorskip("qiskit_aer")
pytest.importorskip("scipy")

import numpy as np
from _proxy import DroppingProxy
from qiskit import QuantumCircuit
from qiskit.circuit.library import real_amplitudes
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    PrimitiveResult,
    StatevectorEstimator,
)
from qiskit.primitives.containers import BitArray
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp

from logosq_os_scheduler import SchedulerError, TaskStatus
from logosq_os_scheduler.client import (
    BlockingSchedulerClient,
    RemoteEstimator,
    RemoteSampler,
    SchedulerClient,
)

pytestmark = [pytest.mark.service, pytest.mark.qiskit, pytest.mark.slow]

AER = [{"kind": "aer", "name": "aer"}]


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def test_remote_sampler_on_a_bell_circuit(make_server: Any) -> None:
    srv = make_server(backends=AER)
    with BlockingSchedulerClient(srv.url, srv.tokens["root"]) as client:
        sampler = RemoteSampler(client, default_shots=500, backend="aer")
        assert isinstance(sampler, BaseSamplerV2)
        theta = real_amplitudes(2, reps=1)
        theta.measure_all()
        job = sampler.run([bell(), (theta, np.zeros((3, theta.num_parameters)), 100)])
        result = job.result()
        assert isinstance(result, PrimitiveResult) and job.status() is JobStatus.DONE
        meas = result[0].data.meas
        assert isinstance(meas, BitArray) and meas.num_shots == 500
        counts = meas.get_counts()
        assert set(counts) == {"00", "11"}  # entangled: the qubits always agree
        assert 150 < counts["00"] < 350
        # All parameters zero: every shot of every parameter set reads 00.
        swept = result[1].data.meas
        assert swept.shape == (3,) and swept.num_shots == 100
        assert all(swept.get_counts(i) == {"00": 100} for i in range(3))
        # Each bound circuit was one circuit task of this user on the server.
        circuits = client.tasks(status=TaskStatus.COMPLETED)
        assert len(circuits) == 4 and {v.kind for v in circuits} == {"circuit"}
        assert {v.backend for v in circuits} == {"aer"}


def test_qiskit_algorithms_vqe_runs_unchanged_on_remote_estimator(make_server: Any) -> None:
    qa = pytest.importorskip("qiskit_algorithms")
    from qiskit_algorithms.optimizers import COBYLA

    from logosq_os_scheduler.workflows import H2_FCI_ELECTRONIC_ENERGY, h2_ansatz, h2_hamiltonian

    h2 = h2_hamiltonian()
    reference = qa.VQE(
        StatevectorEstimator(), h2_ansatz(), COBYLA(maxiter=40), initial_point=[0.5]
    ).compute_minimum_eigenvalue(h2)
    srv = make_server(backends=AER)
    with BlockingSchedulerClient(srv.url, srv.tokens["root"]) as client:
        estimator = RemoteEstimator(client, default_precision=0.01, backend="aer")
        assert isinstance(estimator, BaseEstimatorV2)
        ours = qa.VQE(
            estimator, h2_ansatz(), COBYLA(maxiter=40), initial_point=[0.5]
        ).compute_minimum_eigenvalue(h2)
        # Every evaluation ran as circuit tasks of this user on the server.
        bases = len(client.tasks(limit=10_000)) / ours.cost_function_evals
        assert bases == int(bases) >= 2
    assert reference.eigenvalue == pytest.approx(H2_FCI_ELECTRONIC_ENERGY, abs=1e-3)
    # 10,000 shots per basis: each estimate's standard error is below 3 mHa.
    assert ours.eigenvalue == pytest.approx(reference.eigenvalue, abs=0.015)
    assert ours.optimal_point[0] == pytest.approx(reference.optimal_point[0], abs=0.2)


async def test_remote_estimator_from_async_code_and_its_refusals(make_server: Any) -> None:
    srv = make_server(backends=AER)
    async with SchedulerClient(srv.url, srv.tokens["root"]) as client:
        estimator = RemoteEstimator(client, default_precision=0.02, backend="aer")
        qc = QuantumCircuit(2)
        qc.x(0)  # |01>: <ZI> = +1, <IZ> = -1, <ZZ> = -1
        observables = [SparsePauliOp("IZ"), SparsePauliOp("ZI"), SparsePauliOp("ZZ")]
        result = await estimator.run([(qc, observables)])
        np.testing.assert_allclose(result[0].data.evs, [-1.0, 1.0, -1.0], atol=1e-9)
        assert result[0].metadata["shots"] == 2500
        with pytest.raises(ValueError, match="precision"):
            estimator.run([(qc, observables, None, 0.0)])
    with pytest.raises(ValueError, match="default_precision"):
        RemoteEstimator(client, default_precision=0.0)
    unused = SchedulerClient(srv.url, srv.tokens["root"])
    with pytest.raises(SchedulerError, match="has not run yet"):
        RemoteSampler(unused).run([bell()])
    await unused.aclose()


def test_a_seeded_remote_sampler_repeats_its_counts(make_server: Any) -> None:
    srv = make_server(backends=AER)
    circuit = real_amplitudes(3, reps=1)
    circuit.measure_all()
    values = np.linspace(0.3, 2.1, circuit.num_parameters)
    with BlockingSchedulerClient(srv.url, srv.tokens["root"]) as client:
        sampler = RemoteSampler(client, backend="aer", options={"seed_simulator": 11})
        first = sampler.run([(circuit, values, 300)]).result()[0].data.meas.get_counts()
        again = sampler.run([(circuit, values, 300)]).result()[0].data.meas.get_counts()
        assert first == again and sum(first.values()) == 300
        assert len(first) > 2  # a spread of outcomes, repeated exactly: the seed reached Aer


def test_cancelling_a_remote_job_cancels_its_tasks_on_the_server(make_server: Any) -> None:
    slow = [{"kind": "mock", "name": "slow", "latency": 60.0, "max_circuits_per_job": 1}]
    srv = make_server(backends=slow)
    with BlockingSchedulerClient(srv.url, srv.tokens["root"]) as client:
        job = RemoteSampler(client, backend="slow").run([bell(), bell(), bell()])
        for _ in range(1500):
            if len(client.tasks()) == 3:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the job's tasks never reached the server")
        assert job.status() is JobStatus.RUNNING
        assert job.cancel() is True
        for _ in range(1500):
            if job.in_final_state() and {v.status for v in client.tasks()} == {
                TaskStatus.CANCELLED
            }:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"still {[v.status for v in client.tasks()]} after the job's cancel")
        assert job.status() is JobStatus.CANCELLED


async def test_a_job_cancelled_while_its_batch_is_on_the_way_cancels_what_it_made(
    make_server: Any,
) -> None:
    slow = [{"kind": "mock", "name": "slow", "latency": 60.0, "max_circuits_per_job": 1}]
    srv = make_server(backends=slow)
    token = srv.tokens["root"]
    async with (
        DroppingProxy(srv.port, b"POST /v1/tasks/batch", hold=True) as proxy,
        SchedulerClient(proxy.url, token) as client,
        SchedulerClient(srv.url, token) as direct,
    ):
        job = RemoteSampler(client, backend="slow").run([bell(), bell(), bell()])
        await proxy.held.wait()  # the server made the tasks; the answer has not arrived
        assert len(await direct.tasks()) == 3
        assert job.cancel() is True
        proxy.release()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert {v.status for v in await direct.tasks()} == {TaskStatus.CANCELLED}
