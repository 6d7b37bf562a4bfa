"""Submit, wait for and cancel tasks through a real server process."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

for _extra in ("httpx", "starlette", "uvicorn", "msgspec", "qiskit"):
    pytest.importorskip(_extra)

from _service_helpers import BELL_QASM3, NEEDS_SERVICE, Configure, circuit, function  # noqa: E402

pytestmark = NEEDS_SERVICE


def test_submit_and_long_poll_a_qasm2_circuit(make_server: Configure) -> None:
    srv = make_server()
    with srv.client("user_a") as user_a:
        r = user_a.post("/v1/tasks", json=circuit(shots=100, key="bell-1"))
        assert r.status_code == 201, r.text
        view = r.json()
        assert view["user"] == "user_a"
        assert view["key"] == "bell-1"
        assert view["kind"] == "circuit"
        assert view["status"] in ("queued", "running", "completed")
        done = user_a.get(f"/v1/tasks/{view['id']}", params={"wait": 30}).json()
        assert done["status"] == "completed"
        assert done["backend"] == "sim"
        assert sum(done["result"].values()) == 100
        by_key = user_a.get("/v1/tasks/key/bell-1").json()
        assert by_key["id"] == view["id"] and by_key["status"] == "completed"


def test_qasm3_and_qpy_circuits(make_server: Configure) -> None:
    from qiskit import QuantumCircuit, qpy

    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.measure_all()
    buf = io.BytesIO()
    qpy.dump(qc, buf)
    qpy_source = base64.b64encode(buf.getvalue()).decode()
    srv = make_server()
    with srv.client("user_b") as user_b:
        a = user_b.post("/v1/tasks", json=circuit(BELL_QASM3, "qasm3", shots=64)).json()
        b = user_b.post("/v1/tasks", json=circuit(qpy_source, "qpy", shots=32)).json()
        a = user_b.get(f"/v1/tasks/{a['id']}", params={"wait": 30}).json()
        b = user_b.get(f"/v1/tasks/{b['id']}", params={"wait": 30}).json()
    assert a["status"] == "completed" and sum(a["result"].values()) == 64
    assert all(len(k) == 2 for k in a["result"])
    assert b["status"] == "completed" and sum(b["result"].values()) == 32
    assert all(len(k) == 3 for k in b["result"])


def test_function_by_registered_name_and_its_failure(make_server: Configure) -> None:
    srv = make_server()
    with srv.client("user_a") as user_a:
        ok = user_a.post("/v1/tasks", json=function("square", 12)).json()
        bad = user_a.post("/v1/tasks", json=function("fail", "planned failure")).json()
        ok = user_a.get(f"/v1/tasks/{ok['id']}", params={"wait": 30}).json()
        bad = user_a.get(f"/v1/tasks/{bad['id']}", params={"wait": 30}).json()
    assert ok["status"] == "completed" and ok["result"] == 144 and ok["kind"] == "function"
    assert bad["status"] == "failed"
    assert "planned failure" in bad["error"]["message"]


def test_batch_all_or_nothing(make_server: Configure) -> None:
    srv = make_server()
    with srv.client("user_a") as user_a:
        r = user_a.post(
            "/v1/tasks/batch",
            json={"tasks": [function("square", i, key=f"sq-{i}") for i in range(20)]},
        )
        assert r.status_code == 201, r.text
        views = r.json()["tasks"]
        assert [v["key"] for v in views] == [f"sq-{i}" for i in range(20)]
        results = [user_a.get(f"/v1/tasks/{v['id']}", params={"wait": 30}).json() for v in views]
        assert [v["result"] for v in results] == [i * i for i in range(20)]
        # One bad item refuses the whole batch, naming its index; nothing of it is submitted.
        r = user_a.post(
            "/v1/tasks/batch",
            json={"tasks": [function("square", 1, key="b-0"), function("nope", key="b-1")]},
        )
        assert r.status_code == 422
        assert r.json()["detail"].startswith("tasks[1]: ")
        assert r.json()["index"] == 1 and r.json()["field"] == "function"
        assert "no function 'nope' is registered" in r.json()["detail"]
        assert user_a.get("/v1/tasks/key/b-0").status_code == 404


WIDE_QASM2 = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[5];\ncreg c[5];\nh q[0];\nmeasure q -> c;\n'
)


def test_a_batch_with_a_circuit_no_backend_can_run_admits_nothing(make_server: Configure) -> None:
    srv = make_server(backends=[{"kind": "mock", "name": "sim", "num_qubits": 3, "seed": 7}])
    with srv.client("user_a") as user_a:
        items = [circuit(key=f"w-{i}") for i in range(4)]
        items[2] = circuit(WIDE_QASM2, key="w-2")
        r = user_a.post("/v1/tasks/batch", json={"tasks": items})
        assert r.status_code == 422, r.text
        assert r.json()["index"] == 2 and r.json()["error"] == "NoRouteError"
        assert "has 3 qubits, circuit needs 5" in r.json()["detail"]
        # Nothing of it was made: no key is taken, nothing was cancelled.
        for i in range(4):
            assert user_a.get(f"/v1/tasks/key/w-{i}").status_code == 404
        mine = user_a.get("/v1/stats").json()["users"]
        assert all(row["cancelled"] == 0 for row in mine)
        # Fixed and sent again under the same keys, every item runs.
        items[2] = circuit(key="w-2")
        r = user_a.post("/v1/tasks/batch", json={"tasks": items})
        assert r.status_code == 201, r.text
        ends = [
            user_a.get(f"/v1/tasks/{v['id']}", params={"wait": 30}).json()
            for v in r.json()["tasks"]
        ]
        assert [v["status"] for v in ends] == ["completed"] * 4


def test_idempotent_submit_by_key(make_server: Configure) -> None:
    srv = make_server()
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b:
        first = user_a.post("/v1/tasks", json=function("square", 3, key="same"))
        again = user_a.post("/v1/tasks", json=function("square", 3, key="same"))
        assert first.status_code == 201 and again.status_code == 200
        assert first.json()["id"] == again.json()["id"]
        # Keys are per user: user_b's "same" is another task.
        other = user_b.post("/v1/tasks", json=function("square", 4, key="same"))
        assert other.status_code == 201
        assert other.json()["id"] != first.json()["id"]
        assert user_b.get("/v1/tasks/key/same", params={"wait": 30}).json()["result"] == 16
        assert user_a.get("/v1/tasks/key/same", params={"wait": 30}).json()["result"] == 9


def test_a_key_reused_for_another_task_is_refused_across_a_restart(
    make_server: Configure,
) -> None:
    """The same request again under its key is the first task (200); another request under
    it is a 422 that names the key and its task, alone or in a batch (then nothing of the
    batch is made), and so it stays after a restart, when the first task is in the journal."""
    srv = make_server()
    qaoa = {
        "kind": "qaoa",
        "hamiltonian": [["ZZ", 1.0], ["ZI", 0.5]],
        "optimizer": {"name": "cobyla", "maxiter": 5},
        "shots": 64,
        "key": "q1",  # the server builds its ansatz afresh (new parameters) for each request
    }
    others = [
        function("square", 4, key="k1"),
        function("square", 3, key="k1", priority="high"),
        {**function("square", 3, key="k1"), "name": "other"},
        function("square", 3, key="k1", timeout=60),
        function("append_run", 3, key="k1"),
        circuit(key="k1"),
    ]

    def check(user_a: Any, first_id: int, qaoa_id: int) -> None:
        again = user_a.post("/v1/tasks", json=function("square", 3, key="k1"))
        assert again.status_code == 200 and again.json()["id"] == first_id, again.text
        assert user_a.post("/v1/tasks", json=qaoa).json()["id"] == qaoa_id
        for other in [*others, {**qaoa, "reps": 2}]:
            r = user_a.post("/v1/tasks", json=other)
            assert r.status_code == 422, (other, r.text)
            problem = r.json()
            key = other["key"]
            task_id = qaoa_id if key == "q1" else first_id
            assert problem["detail"] == (
                f"client key {key!r} was already used for a different task (task {task_id}); "
                "send the same task again to get it back, or use a new key"
            )
            assert problem["error"] == "KeyReusedError" and problem["type"].endswith("key-reused")
            assert (problem["field"], problem["key"], problem["task_id"]) == ("key", key, task_id)
        # In a batch: refused whole, naming the entry; the same request in a batch is fine.
        r = user_a.post(
            "/v1/tasks/batch",
            json={"tasks": [function("square", 1, key="new"), function("square", 5, key="k1")]},
        )
        assert r.status_code == 422 and r.json()["index"] == 1, r.text
        assert r.json()["detail"].startswith("tasks[1]: client key 'k1' was already used")
        assert user_a.get("/v1/tasks/key/new").status_code == 404
        r = user_a.post("/v1/tasks/batch", json={"tasks": [function("square", 3, key="k1")]})
        assert r.status_code == 201 and r.json()["tasks"][0]["id"] == first_id

    with srv.client("user_a") as user_a:
        first = user_a.post("/v1/tasks", json=function("square", 3, key="k1"))
        assert first.status_code == 201, first.text
        first_id = first.json()["id"]
        qaoa_id = user_a.post("/v1/tasks", json=qaoa).json()["id"]
        check(user_a, first_id, qaoa_id)  # live (or just ended)
        for task_id in (first_id, qaoa_id):
            user_a.get(f"/v1/tasks/{task_id}", params={"wait": 60})
    assert srv.terminate() == 0
    srv.start()
    with srv.client("user_a") as user_a:
        check(user_a, first_id, qaoa_id)  # read back from the journal


def test_cancel_a_queued_task_and_a_finished_one(make_server: Configure, tmp_path) -> None:
    gate = tmp_path / "gate"
    srv = make_server(server={"workers": 1})
    with srv.client("user_a") as user_a:
        blocker = user_a.post("/v1/tasks", json=function("wait_for_file", str(gate))).json()
        queued = user_a.post("/v1/tasks", json=function("square", 5)).json()
        r = user_a.post(f"/v1/tasks/{queued['id']}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        gate.touch()
        done = user_a.get(f"/v1/tasks/{blocker['id']}", params={"wait": 30}).json()
        assert done["status"] == "completed"
        r = user_a.post(f"/v1/tasks/{blocker['id']}/cancel")
        assert r.status_code == 409
        assert r.headers["content-type"] == "application/problem+json"
        assert "already ended (completed)" in r.json()["detail"]
        assert user_a.get(f"/v1/tasks/{queued['id']}").json()["status"] == "cancelled"
