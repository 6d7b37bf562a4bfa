"""VQE and QAOA by their parameters, on Aer, through a real server; JSON-lines logs."""

from __future__ import annotations

import json

import pytest

for _extra in ("httpx", "starlette", "uvicorn", "msgspec", "qiskit", "qiskit_aer", "scipy"):
    pytest.importorskip(_extra)

from _service_helpers import NEEDS_SERVICE, Configure, circuit  # noqa: E402

pytestmark = NEEDS_SERVICE


def test_vqe_and_qaoa_by_parameters_on_aer(make_server: Configure) -> None:
    from logosq_os_scheduler.workflows import H2_FCI_ELECTRONIC_ENERGY, h2_hamiltonian

    srv = make_server(backends=[{"kind": "aer", "name": "aer"}], server={"log_format": "json"})
    terms = [[label, float(coeff.real)] for label, coeff in h2_hamiltonian().to_list()]
    with srv.client("user_a") as user_a:
        vqe = user_a.post(
            "/v1/tasks",
            json={
                "kind": "vqe",
                "hamiltonian": terms,
                "ansatz": {"library": "real_amplitudes", "reps": 1},
                "optimizer": {"name": "cobyla", "maxiter": 80},
                "shots": None,
                "seed": 3,
            },
        )
        assert vqe.status_code == 201, vqe.text
        qaoa = user_a.post(
            "/v1/tasks",
            json={
                "kind": "qaoa",
                "hamiltonian": [["IZZ", 0.5], ["ZIZ", 0.5], ["ZZI", 0.5]],
                "reps": 1,
                "optimizer": {"name": "cobyla", "maxiter": 20},
                "shots": 512,
                "backend": "aer",
            },
        )
        assert qaoa.status_code == 201, qaoa.text
        seeded = user_a.post(
            "/v1/tasks", json=circuit(shots=64, run_options={"seed_simulator": 5}, backend="aer")
        )
        assert seeded.status_code == 201, seeded.text
        v = user_a.get(f"/v1/tasks/{vqe.json()['id']}", params={"wait": 60}).json()
        q = user_a.get(f"/v1/tasks/{qaoa.json()['id']}", params={"wait": 60}).json()
        s = user_a.get(f"/v1/tasks/{seeded.json()['id']}", params={"wait": 60}).json()
        bad = user_a.post(
            "/v1/tasks",
            json={
                "kind": "vqe",
                "hamiltonian": [["XQ", 1.0]],
                "ansatz": {"library": "efficient_su2"},
            },
        )
    assert v["status"] == "completed" and v["kind"] == "vqe", v
    assert v["result"]["energy"] == pytest.approx(H2_FCI_ELECTRONIC_ENERGY, abs=2e-2)
    assert len(v["result"]["parameters"]) == 4
    assert q["status"] == "completed" and q["kind"] == "qaoa", q
    # A QAOA names the backend its circuits ran on; an exact VQE ran on none.
    assert (q["backend"], v["backend"]) == ("aer", None)
    assert q["result"]["best_bitstring"] in {"001", "010", "100", "011", "101", "110"}
    assert sum(q["result"]["counts"].values()) == 4096  # QAOA's final sampling
    assert s["status"] == "completed" and s["backend"] == "aer" and sum(s["result"].values()) == 64
    assert bad.status_code == 422 and "I, X, Y, Z" in bad.json()["detail"]
    # The server logs JSON lines, one object each.
    lines = [line for line in srv.output().splitlines() if line.startswith("{")]
    assert lines, srv.output()
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any("serving 3 users" in r["message"] for r in records)
    assert any(r["message"] == f"listening on {srv.url}" for r in records)
