"""Quotas: 429 with Retry-After and the limit's name; the server serves on."""

from __future__ import annotations

import time
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
        users={"user_a": {"quotas": {"max_active": 2}}},
        groups={"lab": {"quotas": {"max_active": 3}}},
    )
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b, srv.client("root") as root:
        held = [
            user_a.post("/v1/tasks", json=function("wait_for_file", str(gate))).json()
            for _ in range(2)
        ]
        r = user_a.post("/v1/tasks", json=function("square", 1))
        assert r.status_code == 429, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert int(r.headers["retry-after"]) >= 1
        body = r.json()
        assert body["limit"] == "max_active" and body["error"] == "QuotaExceededError"
        assert body["scope"] == "user 'user_a'"
        assert "2 tasks queued or running and a quota of max_active = 2" in body["detail"]
        # A batch that would pass the quota is refused whole.
        assert (
            user_a.post("/v1/tasks/batch", json={"tasks": [function("square", 1)] * 2}).status_code
            == 429
        )
        # The group: user_a holds 2 of lab's 3, so user_b gets one.
        assert user_b.post("/v1/tasks", json=function("square", 2, key="b1")).status_code == 201
        r = user_b.post("/v1/tasks", json=function("square", 3))
        assert r.status_code == 429 and r.json()["scope"] == "group 'lab'"
        # root is in no group and has no quota.
        assert root.post("/v1/tasks", json=function("square", 4)).status_code == 201
        assert user_a.get("/v1/me").json()["usage"]["active"] == 2
        gate.touch()
        for view in held:
            assert (
                user_a.get(f"/v1/tasks/{view['id']}", params={"wait": 30}).json()["status"]
                == "completed"
            )
        assert user_b.get("/v1/tasks/key/b1", params={"wait": 30}).json()["result"] == 4
        assert user_a.get("/v1/me").json()["usage"]["active"] == 0
        r = user_a.post("/v1/tasks", json=function("square", 5))
        assert r.status_code == 201
        assert user_a.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()["result"] == 25


def test_shots_per_day(make_server: Configure) -> None:
    srv = make_server(users={"user_a": {"quotas": {"shots_per_day": 1000}}})
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b:
        assert user_a.post("/v1/tasks", json=circuit(shots=600)).status_code == 201
        r = user_a.post("/v1/tasks", json=circuit(shots=500))
        assert r.status_code == 429
        body = r.json()
        assert body["limit"] == "shots_per_day"
        assert "used 600 of 1000 shots in the last 24 hours" in body["detail"]
        # The window frees a day after the 600 were accepted.
        assert 86_000 <= int(r.headers["retry-after"]) <= 86_400
        assert user_a.post("/v1/tasks", json=circuit(shots=400)).status_code == 201
        r = user_a.post("/v1/tasks", json=circuit(shots=2000))
        assert r.status_code == 422 and "more than the 1000 a day" in r.json()["detail"]
        assert user_a.get("/v1/me").json()["usage"]["shots_today"] == 1000
        assert user_b.post("/v1/tasks", json=circuit(shots=5000)).status_code == 201


def test_the_schedulers_queue_bound_is_a_429(make_server: Configure, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    srv = make_server(server={"workers": 1, "max_queue_depth": 1, "durability": "power"})
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b:
        held = user_a.post("/v1/tasks", json=function("wait_for_file", str(gate))).json()
        deadline = time.monotonic() + 30
        while user_a.get(f"/v1/tasks/{held['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert user_a.post("/v1/tasks", json=function("square", 1)).status_code == 201
        r = user_b.post("/v1/tasks", json=function("square", 2))
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["limit"] == "max_queue_depth" and r.json()["error"] == "QueueFullError"
        # A batch that might not fit is refused whole: none of it is admitted.
        batch = [function("square", i, key=f"full-{i}") for i in range(2)]
        r = user_b.post("/v1/tasks/batch", json={"tasks": batch})
        assert r.status_code == 429 and r.json()["error"] == "QueueFullError", r.text
        assert "a batch of 2 tasks does not fit" in r.json()["detail"]
        assert user_b.get("/v1/tasks/key/full-0").status_code == 404
        gate.touch()
        assert (
            user_a.get(f"/v1/tasks/{held['id']}", params={"wait": 30}).json()["status"]
            == "completed"
        )


def test_fair_share_keeps_a_flooding_user_from_starving_another(
    make_server: Configure, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    gate = tmp_path / "gate"
    srv = make_server(server={"workers": 1})
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b:
        # The one worker is held while user_a floods the queue, then user_b arrives.
        held = user_a.post("/v1/tasks", json=function("wait_for_file", str(gate))).json()
        flood = [function("append_run", str(runs), f"a{i}") for i in range(40)]
        assert user_a.post("/v1/tasks/batch", json={"tasks": flood}).status_code == 201
        late = [function("append_run", str(runs), f"b{i}", key=f"b{i}") for i in range(5)]
        assert user_b.post("/v1/tasks/batch", json={"tasks": late}).status_code == 201
        gate.touch()
        assert (
            user_a.get(f"/v1/tasks/{held['id']}", params={"wait": 30}).json()["status"]
            == "completed"
        )
        for i in range(5):
            assert (
                user_b.get(f"/v1/tasks/key/b{i}", params={"wait": 30}).json()["status"]
                == "completed"
            )
        order = runs.read_text().split()
    # With equal weights the two alternate: user_b's five run among the first ten, not after
    # user_a's forty.
    positions = [order.index(f"b{i}") for i in range(5)]
    assert max(positions) < 10, order
