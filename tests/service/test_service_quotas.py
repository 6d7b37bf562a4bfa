"""Quotas: 429 with Retry-After and the limit's name; the server serves on."""

from __future__ import annotations

from pathlib import Path

import pytest

for _extra in ("httpx", "starlette", "uvicorn", "msgspec", "qiskit"):
    pytest.importorskip(_extra)

from _service_helpers import NEEDS_SERVICE, Configure, circuit, function  # noqa: E402

pytestmark = NEEDS_SERVICE


def test_max_active_per_user_and_per_group(make_server: Configure, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    srv = make_server(
        server={"workers": 1},
        users={"alice": {"quotas": {"max_active": 2}}},
        groups={"lab": {"quotas": {"max_active": 3}}},
    )
    with srv.client("alice") as alice, srv.client("bob") as bob, srv.client("root") as root:
        held = [
            alice.post("/v1/tasks", json=function("wait_for_file", str(gate))).json()
            for _ in range(2)
        ]
        r = alice.post("/v1/tasks", json=function("square", 1))
        assert r.status_code == 429, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert int(r.headers["retry-after"]) >= 1
        body = r.json()
        assert body["limit"] == "max_active" and body["error"] == "QuotaExceededError"
        assert body["scope"] == "user 'alice'"
        assert "2 tasks queued or running and a quota of max_active = 2" in body["detail"]
        # A batch that would pass the quota is refused whole.
        assert (
            alice.post("/v1/tasks/batch", json={"tasks": [function("square", 1)] * 2}).status_code
            == 429
        )
        # The group: alice holds 2 of lab's 3, so bob gets one.
        assert bob.post("/v1/tasks", json=function("square", 2, key="b1")).status_code == 201
        r = bob.post("/v1/tasks", json=function("square", 3))
        assert r.status_code == 429 and r.json()["scope"] == "group 'lab'"
        # root is in no group and has no quota.
        assert root.post("/v1/tasks", json=function("square", 4)).status_code == 201
        assert alice.get("/v1/me").json()["usage"]["active"] == 2
        gate.touch()
        for view in held:
            assert (
                alice.get(f"/v1/tasks/{view['id']}", params={"wait": 30}).json()["status"]
                == "completed"
            )
        assert bob.get("/v1/tasks/key/b1", params={"wait": 30}).json()["result"] == 4
        assert alice.get("/v1/me").json()["usage"]["active"] == 0
        r = alice.post("/v1/tasks", json=function("square", 5))
        assert r.status_code == 201
        assert alice.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()["result"] == 25


def test_shots_per_day(make_server: Configure) -> None:
    srv = make_server(users={"alice": {"quotas": {"shots_per_day": 1000}}})
    with srv.client("alice") as alice, srv.client("bob") as bob:
        assert alice.post("/v1/tasks", json=circuit(shots=600)).status_code == 201
        r = alice.post("/v1/tasks", json=circuit(shots=500))
        assert r.status_code == 429
        body = r.json()
        assert body["limit"] == "shots_per_day"
        assert "used 600 of 1000 shots in the last 24 hours" in body["detail"]
        # The window frees a day after the 600 were accepted.
        assert 86_000 <= int(r.headers["retry-after"]) <= 86_400
        assert alice.post("/v1/tasks", json=circuit(shots=400)).status_code == 201
        r = alice.post("/v1/tasks", json=circuit(shots=2000))
        assert r.status_code == 422 and "more than the 1000 a day" in r.json()["detail"]
        assert alice.get("/v1/me").json()["usage"]["shots_today"] == 1000
        assert bob.post("/v1/tasks", json=circuit(shots=5000)).status_code == 201
