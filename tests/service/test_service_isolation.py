"""Users see only their own tasks; every bad input is a 4xx problem and the server serves on."""

from __future__ import annotations

import base64
import io

import pytest

for _extra in ("httpx", "starlette", "uvicorn", "msgspec", "qiskit"):
    pytest.importorskip(_extra)

from _service_helpers import NEEDS_SERVICE, Configure, Server, circuit, function  # noqa: E402

pytestmark = NEEDS_SERVICE


def _problem(r: object, status: int, error: str, *fragments: str) -> dict[str, object]:
    import httpx

    assert isinstance(r, httpx.Response)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = r.json()
    assert body["status"] == status
    assert body["error"] == error
    assert str(body["type"]).startswith("https://logosq.dev/problems/")
    for fragment in fragments:
        assert fragment in str(body["detail"]), body
    return body


def _still_serves(srv: Server) -> None:
    with srv.client("user_a") as user_a:
        view = user_a.post("/v1/tasks", json=function("square", 7)).json()
        done = user_a.get(f"/v1/tasks/{view['id']}", params={"wait": 30}).json()
        assert done["result"] == 49


def test_other_users_tasks_are_not_found(make_server: Configure) -> None:
    srv = make_server()
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b, srv.client("root") as root:
        mine = user_a.post("/v1/tasks", json=function("square", 2, key="private")).json()
        _problem(user_b.get(f"/v1/tasks/{mine['id']}"), 404, "UnknownTaskError", "no task with id")
        _problem(user_b.post(f"/v1/tasks/{mine['id']}/cancel"), 404, "UnknownTaskError")
        _problem(user_b.get("/v1/tasks/key/private"), 404, "UnknownTaskError")
        # The same answer as for an id nobody has: nothing says the task exists.
        missing = user_b.get("/v1/tasks/999999").json()
        assert missing["title"] == user_b.get(f"/v1/tasks/{mine['id']}").json()["title"]
        # An admin sees it, by id or by the owner's key.
        assert root.get(f"/v1/tasks/{mine['id']}").json()["user"] == "user_a"
        assert (
            root.get("/v1/tasks/key/private", params={"user": "user_a"}).json()["id"] == mine["id"]
        )
        _problem(
            user_b.get("/v1/tasks/key/private", params={"user": "user_a"}),
            403,
            "PermissionDeniedError",
            "only an admin",
        )


def test_listing_is_per_user_and_the_admin_sees_all(make_server: Configure) -> None:
    srv = make_server()
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b, srv.client("root") as root:
        a = user_a.post(
            "/v1/tasks/batch", json={"tasks": [function("square", i) for i in range(5)]}
        )
        b = user_b.post(
            "/v1/tasks/batch", json={"tasks": [function("square", i) for i in range(3)]}
        )
        a_ids = [v["id"] for v in a.json()["tasks"]]
        b_ids = [v["id"] for v in b.json()["tasks"]]
        for i in a_ids:
            user_a.get(f"/v1/tasks/{i}", params={"wait": 30})
        listed = user_a.get("/v1/tasks").json()
        assert [v["id"] for v in listed["tasks"]] == sorted(a_ids, reverse=True)
        assert {v["user"] for v in listed["tasks"]} == {"user_a"}
        assert listed["next_cursor"] is None
        # Pages: two at a time, newest first, following the cursor.
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, object] = {"limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            page = user_a.get("/v1/tasks", params=params).json()
            seen += [v["id"] for v in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(a_ids, reverse=True)
        completed = user_a.get("/v1/tasks", params={"status": "completed"}).json()["tasks"]
        assert {v["id"] for v in completed} == set(a_ids)
        assert user_b.get("/v1/tasks").json()["tasks"][0]["user"] == "user_b"
        everyone = root.get("/v1/tasks").json()["tasks"]
        assert {v["id"] for v in everyone} == set(a_ids) | set(b_ids)
        only_bob = root.get("/v1/tasks", params={"user": "user_b"}).json()["tasks"]
        assert {v["id"] for v in only_bob} == set(b_ids)
        urgent = user_a.post("/v1/tasks", json=function("square", 9, priority="high")).json()
        high = user_a.get("/v1/tasks", params={"priority": "high"}).json()["tasks"]
        assert [v["id"] for v in high] == [urgent["id"]]
        _problem(
            user_b.get("/v1/tasks", params={"user": "user_a"}),
            403,
            "PermissionDeniedError",
            "only an admin may list other users' tasks",
        )


def test_tokens(make_server: Configure) -> None:
    srv = make_server()
    with srv.client(None) as anonymous:
        _problem(anonymous.get("/v1/me"), 401, "AuthenticationError", "needs an API token")
        wrong = anonymous.get("/v1/tasks", headers={"Authorization": "Bearer lq_not-a-token"})
        _problem(wrong, 401, "AuthenticationError", "not one this server knows")
        basic = anonymous.get("/v1/tasks", headers={"Authorization": "Basic YWxpY2U6eA=="})
        _problem(basic, 401, "AuthenticationError")
        assert anonymous.get("/healthz").json() == {"status": "ok"}
    with srv.client("user_a") as user_a:
        me = user_a.get("/v1/me").json()
        assert me["user"] == "user_a" and me["groups"] == ["lab"] and me["admin"] is False
        _problem(user_a.get("/metrics"), 403, "PermissionDeniedError", "admins only")
    _still_serves(srv)


def test_bad_inputs_are_problems_and_the_server_serves_on(make_server: Configure) -> None:
    srv = make_server(server={"max_body_bytes": 20_000, "max_batch": 10, "max_qubits": 5})
    with srv.client("user_a") as user_a:
        bad_qasm = circuit("OPENQASM 2.0;\nqreg q[2];\nfoo q[0];\n")
        body = _problem(
            user_a.post("/v1/tasks", json=bad_qasm),
            422,
            "InvalidTaskError",
            "OpenQASM 2 program, line 3",
        )
        assert body["field"] == "circuit"
        _problem(
            user_a.post(
                "/v1/tasks", json=circuit("OPENQASM 3.0;\nqubit[2] q;\nnot a statement\n", "qasm3")
            ),
            422,
            "InvalidTaskError",
            "OpenQASM 3 program, line 3",
        )
        _problem(
            user_a.post("/v1/tasks", json=circuit("!!!not base64!!!", "qpy")),
            422,
            "InvalidTaskError",
            "not valid qpy",
        )
        from qiskit import QuantumCircuit, qpy

        wide_qpy = io.BytesIO()
        qpy.dump(QuantumCircuit(40), wide_qpy)
        _problem(
            user_a.post(
                "/v1/tasks", json=circuit(base64.b64encode(wide_qpy.getvalue()).decode(), "qpy")
            ),
            422,
            "InvalidTaskError",
            "has 40 qubits; this server accepts at most 5",
        )
        _problem(
            user_a.post("/v1/tasks", json=circuit("OPENQASM 2.0;\nqreg q[100000000];\n")),
            422,
            "InvalidTaskError",
            "larger than the 100,000 allowed",
        )
        _problem(
            user_a.post("/v1/tasks", json=circuit("OPENQASM 3.0;\nqubit[2] q;\n", "qasm2")),
            422,
            "InvalidTaskError",
            "format 'qasm2' but the program says OPENQASM 3",
        )
        huge = function("square", "x" * 30_000)
        _problem(user_a.post("/v1/tasks", json=huge), 413, "InvalidRequestError", "max_body_bytes")
        # A body sent in chunks, without a length up front, is cut off while it is read.
        chunks = (
            b'{"kind": "function", "function": "square", "args": ["' + b"y" * 1000
            for _ in range(40)
        )
        _problem(user_a.post("/v1/tasks", content=chunks), 413, "InvalidRequestError")
        odd_option = circuit(run_options={"shots": 5})
        body = _problem(
            user_a.post("/v1/tasks", json=odd_option), 422, "InvalidRequestError", "`shots`"
        )
        assert body["field"] == "run_options"
        batch_body = {"tasks": [function("square", 1), circuit(fmt="qasm4")]}
        body = _problem(
            user_a.post("/v1/tasks/batch", json=batch_body), 422, "InvalidRequestError", "qasm4"
        )
        assert body["field"] == "circuit" and body["index"] == 1
        unknown = function("square", 1, colour="blue")
        _problem(
            user_a.post("/v1/tasks", json=unknown),
            422,
            "InvalidRequestError",
            "unknown field `colour`",
        )
        foreign = function("square", 1, shots=10)  # shots belong to circuits
        _problem(
            user_a.post("/v1/tasks", json=foreign),
            422,
            "InvalidRequestError",
            "unknown field `shots`",
        )
        _problem(
            user_a.post("/v1/tasks", json=function("rm_rf")),
            422,
            "InvalidTaskError",
            "no function 'rm_rf' is registered",
        )
        _problem(
            user_a.post("/v1/tasks", content=b"{not json"),
            400,
            "InvalidRequestError",
            "not valid JSON",
        )
        _problem(user_a.post("/v1/tasks", json={"kind": "pickle"}), 422, "InvalidRequestError")
        wide = "OPENQASM 2.0;\nqreg q[6];\n"
        _problem(user_a.post("/v1/tasks", json=circuit(wide)), 422, "InvalidTaskError", "at most 5")
        batch = {"tasks": [function("square", i) for i in range(11)]}
        _problem(
            user_a.post("/v1/tasks/batch", json=batch), 422, "InvalidRequestError", "at most 10"
        )
        _problem(user_a.post("/v1/tasks", json=circuit(shots=0)), 422, "InvalidTaskError", "shots")
        _problem(
            user_a.post("/v1/tasks", json=function("square", 1, key="a\nb")),
            422,
            "InvalidTaskError",
            "printable",
        )
        _problem(
            user_a.post("/v1/tasks", json=circuit(backend="qpu9")),
            422,
            "InvalidTaskError",
            "no backend 'qpu9' on this server (known: sim)",
        )
        body = _problem(user_a.get("/v1/tasks/abc"), 422, "InvalidRequestError", "task_id")
        assert body["field"] == "task_id"
        body = _problem(
            user_a.get("/v1/tasks/1", params={"wait": "999"}), 422, "InvalidRequestError", "wait"
        )
        assert body["max_wait"] == 60 and body["field"] == "wait"
        # Each listing parameter is named as the field to blame.
        for params in ({"status": "lost"}, {"priority": "urgent"}, {"limit": 0}, {"cursor": "x"}):
            (name,) = params
            body = _problem(
                user_a.get("/v1/tasks", params=params), 422, "InvalidRequestError", name
            )
            assert body["field"] == name
    _still_serves(srv)


def test_priority_ceiling(make_server: Configure) -> None:
    srv = make_server(users={"user_b": {"priority_ceiling": "normal"}})
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b, srv.client("root") as root:
        _problem(
            user_a.post("/v1/tasks", json=function("square", 1, priority="critical")),
            403,
            "PermissionDeniedError",
            "may submit at most priority high",
            "only an admin may submit CRITICAL",
        )
        assert (
            user_a.post("/v1/tasks", json=function("square", 1, priority="high")).status_code == 201
        )
        _problem(
            user_b.post("/v1/tasks", json=function("square", 1, priority="high")),
            403,
            "PermissionDeniedError",
            "at most priority normal",
        )
        r = root.post("/v1/tasks", json=function("square", 1, priority="critical"))
        assert r.status_code == 201 and r.json()["priority"] == "critical"
    _still_serves(srv)


def test_odd_bodies_never_reach_a_500(make_server: Configure) -> None:
    srv = make_server()
    deep = (
        b'{"kind": "function", "function": "square", "args": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}"
    )
    bodies: list[bytes] = [
        deep,
        b"",
        b"null",
        b"[]",
        b'"text"',
        b'{"kind": "function", "function": "square", "args": [1], "priority": "urgent"}',
        b'{"kind": "circuit", "circuit": {"format": "qasm2", "source": "OPENQASM 2.0;"}, '
        b'"shots": 1e308}',
        b'{"kind": "circuit", "circuit": {"format": "qasm2"}}',
        b'{"kind": "function", "function": "square", "args": [1], "timeout": -1}',
        b'{"kind": "function", "function": "square", "name": "' + b"n" * 500 + b'"}',
        b'{"kind": "function", "function": "square", "metadata": {"a": [1]}}',
        b'{"kind": "vqe", "hamiltonian": [], "ansatz": {}}',
        b'{"kind": "qaoa", "hamiltonian": [["XX", 1.0]]}',
        b'{"kind": "function", "function": "square", "args": [1], "key": ""}',
        '{"kind": "function", "function": "squ\u00e4re"}'.encode(),
        b"\xff\xfe\x00garbage",
    ]
    with srv.client("user_a") as user_a:
        for body in bodies:
            for path in ("/v1/tasks", "/v1/tasks/batch"):
                r = user_a.post(path, content=body)
                assert 400 <= r.status_code < 500, (path, body[:80], r.status_code, r.text)
                assert r.headers["content-type"] == "application/problem+json"
        # A function called with arguments it does not take fails as a task, not the server.
        view = user_a.post("/v1/tasks", json=function("square", 1, 2, 3)).json()
        done = user_a.get(f"/v1/tasks/{view['id']}", params={"wait": 30}).json()
        assert done["status"] == "failed" and done["error"]["type"] == "TypeError"
        assert "takes 1 positional argument" in done["error"]["message"]
    _still_serves(srv)
