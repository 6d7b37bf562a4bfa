"""Users see only their own tasks; every bad input is a 4xx problem and the server serves on."""

from __future__ import annotations

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
    with srv.client("alice") as alice:
        view = alice.post("/v1/tasks", json=function("square", 7)).json()
        done = alice.get(f"/v1/tasks/{view['id']}", params={"wait": 30}).json()
        assert done["result"] == 49


def test_other_users_tasks_are_not_found(make_server: Configure) -> None:
    srv = make_server()
    with srv.client("alice") as alice, srv.client("bob") as bob, srv.client("root") as root:
        mine = alice.post("/v1/tasks", json=function("square", 2, key="private")).json()
        _problem(bob.get(f"/v1/tasks/{mine['id']}"), 404, "UnknownTaskError", "no task with id")
        _problem(bob.post(f"/v1/tasks/{mine['id']}/cancel"), 404, "UnknownTaskError")
        _problem(bob.get("/v1/tasks/key/private"), 404, "UnknownTaskError")
        # The same answer as for an id nobody has: nothing says the task exists.
        missing = bob.get("/v1/tasks/999999").json()
        assert missing["title"] == bob.get(f"/v1/tasks/{mine['id']}").json()["title"]
        # An admin sees it, by id or by the owner's key.
        assert root.get(f"/v1/tasks/{mine['id']}").json()["user"] == "alice"
        assert (
            root.get("/v1/tasks/key/private", params={"user": "alice"}).json()["id"] == mine["id"]
        )
        _problem(
            bob.get("/v1/tasks/key/private", params={"user": "alice"}),
            403,
            "PermissionDeniedError",
            "only an admin",
        )


def test_listing_is_per_user_and_the_admin_sees_all(make_server: Configure) -> None:
    srv = make_server()
    with srv.client("alice") as alice, srv.client("bob") as bob, srv.client("root") as root:
        a = alice.post("/v1/tasks/batch", json={"tasks": [function("square", i) for i in range(5)]})
        b = bob.post("/v1/tasks/batch", json={"tasks": [function("square", i) for i in range(3)]})
        a_ids = [v["id"] for v in a.json()["tasks"]]
        b_ids = [v["id"] for v in b.json()["tasks"]]
        for i in a_ids:
            alice.get(f"/v1/tasks/{i}", params={"wait": 30})
        listed = alice.get("/v1/tasks").json()
        assert [v["id"] for v in listed["tasks"]] == sorted(a_ids, reverse=True)
        assert {v["user"] for v in listed["tasks"]} == {"alice"}
        assert listed["next_cursor"] is None
        # Pages: two at a time, newest first, following the cursor.
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, object] = {"limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            page = alice.get("/v1/tasks", params=params).json()
            seen += [v["id"] for v in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(a_ids, reverse=True)
        completed = alice.get("/v1/tasks", params={"status": "completed"}).json()["tasks"]
        assert {v["id"] for v in completed} == set(a_ids)
        assert bob.get("/v1/tasks").json()["tasks"][0]["user"] == "bob"
        everyone = root.get("/v1/tasks").json()["tasks"]
        assert {v["id"] for v in everyone} == set(a_ids) | set(b_ids)
        only_bob = root.get("/v1/tasks", params={"user": "bob"}).json()["tasks"]
        assert {v["id"] for v in only_bob} == set(b_ids)
        _problem(
            bob.get("/v1/tasks", params={"user": "alice"}),
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
    with srv.client("alice") as alice:
        me = alice.get("/v1/me").json()
        assert me["user"] == "alice" and me["groups"] == ["lab"] and me["admin"] is False
        _problem(alice.get("/metrics"), 403, "PermissionDeniedError", "admins only")
    _still_serves(srv)


def test_bad_inputs_are_problems_and_the_server_serves_on(make_server: Configure) -> None:
    srv = make_server(server={"max_body_bytes": 20_000, "max_batch": 10, "max_qubits": 5})
    with srv.client("alice") as alice:
        bad_qasm = circuit("OPENQASM 2.0;\nqreg q[2];\nfoo q[0];\n")
        body = _problem(
            alice.post("/v1/tasks", json=bad_qasm), 422, "InvalidTaskError", "not valid qasm2"
        )
        assert body["field"] == "circuit"
        _problem(
            alice.post(
                "/v1/tasks", json=circuit("OPENQASM 3.0;\nqubit[2] q;\nnot a statement\n", "qasm3")
            ),
            422,
            "InvalidTaskError",
            "not valid qasm3",
        )
        _problem(
            alice.post("/v1/tasks", json=circuit("!!!not base64!!!", "qpy")),
            422,
            "InvalidTaskError",
            "not valid qpy",
        )
        huge = function("square", "x" * 30_000)
        _problem(alice.post("/v1/tasks", json=huge), 413, "InvalidRequestError", "max_body_bytes")
        # A body sent in chunks, without a length up front, is cut off while it is read.
        chunks = (
            b'{"kind": "function", "function": "square", "args": ["' + b"y" * 1000
            for _ in range(40)
        )
        _problem(alice.post("/v1/tasks", content=chunks), 413, "InvalidRequestError")
        unknown = function("square", 1, colour="blue")
        _problem(
            alice.post("/v1/tasks", json=unknown),
            422,
            "InvalidRequestError",
            "unknown field `colour`",
        )
        foreign = function("square", 1, shots=10)  # shots belong to circuits
        _problem(
            alice.post("/v1/tasks", json=foreign),
            422,
            "InvalidRequestError",
            "unknown field `shots`",
        )
        _problem(
            alice.post("/v1/tasks", json=function("rm_rf")),
            422,
            "InvalidTaskError",
            "no function 'rm_rf' is registered",
        )
        _problem(
            alice.post("/v1/tasks", content=b"{not json"),
            400,
            "InvalidRequestError",
            "not valid JSON",
        )
        _problem(alice.post("/v1/tasks", json={"kind": "pickle"}), 422, "InvalidRequestError")
        wide = "OPENQASM 2.0;\nqreg q[6];\n"
        _problem(alice.post("/v1/tasks", json=circuit(wide)), 422, "InvalidTaskError", "at most 5")
        batch = {"tasks": [function("square", i) for i in range(11)]}
        _problem(
            alice.post("/v1/tasks/batch", json=batch), 422, "InvalidRequestError", "at most 10"
        )
        _problem(alice.post("/v1/tasks", json=circuit(shots=0)), 422, "InvalidTaskError", "shots")
        _problem(
            alice.post("/v1/tasks", json=function("square", 1, key="a\nb")),
            422,
            "InvalidTaskError",
            "printable",
        )
        _problem(alice.get("/v1/tasks/abc"), 422, "InvalidRequestError", "task id")
        _problem(
            alice.get("/v1/tasks/1", params={"wait": "999"}), 422, "InvalidRequestError", "wait"
        )
        _problem(
            alice.get("/v1/tasks", params={"status": "lost"}), 422, "InvalidRequestError", "status"
        )
    _still_serves(srv)


def test_priority_ceiling(make_server: Configure) -> None:
    srv = make_server(users={"bob": {"priority_ceiling": "normal"}})
    with srv.client("alice") as alice, srv.client("bob") as bob, srv.client("root") as root:
        _problem(
            alice.post("/v1/tasks", json=function("square", 1, priority="critical")),
            403,
            "PermissionDeniedError",
            "may submit at most priority high",
            "only an admin may submit CRITICAL",
        )
        assert (
            alice.post("/v1/tasks", json=function("square", 1, priority="high")).status_code == 201
        )
        _problem(
            bob.post("/v1/tasks", json=function("square", 1, priority="high")),
            403,
            "PermissionDeniedError",
            "at most priority normal",
        )
        r = root.post("/v1/tasks", json=function("square", 1, priority="critical"))
        assert r.status_code == 201 and r.json()["priority"] == "critical"
    _still_serves(srv)
