"""What the server shows: the account, backends, stats, events, metrics and the OpenAPI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

for _extra in ("httpx", "starlette", "uvicorn", "msgspec", "qiskit"):
    pytest.importorskip(_extra)

from _service_helpers import NEEDS_SERVICE, Configure, Server, circuit, function  # noqa: E402

pytestmark = NEEDS_SERVICE


def _events(srv: Server, user: str, deadline: float) -> Iterator[tuple[str, Any]]:
    """The (event, data) pairs of ``user``'s stream until ``deadline`` (then AssertionError)."""
    import httpx

    url = f"{srv.url}/v1/events"
    with httpx.stream("GET", url, params={"token": srv.tokens[user]}, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if time.monotonic() > deadline:
                raise AssertionError("the expected event did not come")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event is not None:
                yield event, json.loads(line[6:])
                event = None


def test_me_backends_stats(make_server: Configure) -> None:
    srv = make_server(
        users={"alice": {"weight": 2.0, "quotas": {"max_active": 10, "shots_per_day": 5000}}},
        backends=[
            {"kind": "mock", "name": "sim", "num_qubits": 8, "seed": 1},
            {"kind": "mock", "name": "big", "num_qubits": 20, "max_concurrent_jobs": 2},
        ],
    )
    with srv.client("alice") as alice, srv.client("root") as root:
        view = alice.post("/v1/tasks", json=circuit(shots=100)).json()
        alice.get(f"/v1/tasks/{view['id']}", params={"wait": 30})
        me = alice.get("/v1/me").json()
        assert me == {
            "user": "alice",
            "groups": ["lab"],
            "admin": False,
            "priority_ceiling": "high",
            "quotas": {"max_running": None, "max_active": 10, "shots_per_day": 5000},
            "usage": {"active": 0, "shots_today": 100},
        }
        assert root.get("/v1/me").json()["priority_ceiling"] == "critical"
        backends = {b["name"]: b for b in alice.get("/v1/backends").json()}
        assert set(backends) == {"sim", "big"}
        assert backends["big"]["num_qubits"] == 20 and backends["big"]["capacity"] == 2
        assert backends["sim"]["breaker"] == "closed" and backends["sim"]["in_rotation"] is True
        assert backends["sim"]["queued_by_priority"] == [0, 0, 0, 0, 0]
        stats = alice.get("/v1/stats").json()
        assert stats["completed"] >= 1 and len(stats["queued_by_priority"]) == 5
        assert [u["user"] for u in stats["users"]] == ["alice"]
        assert stats["users"][0]["completed"] == 1
        root.post("/v1/tasks", json=function("square", 2))
        users = {u["user"] for u in root.get("/v1/stats").json()["users"]}
        assert users >= {"alice"}
        assert [u["user"] for u in alice.get("/v1/stats").json()["users"]] == ["alice"]


def test_events_are_per_user(make_server: Configure) -> None:
    srv = make_server()
    deadline = time.monotonic() + 30
    with srv.client("alice") as alice, srv.client("bob") as bob:
        stream = _events(srv, "bob", deadline)
        first = next(stream)
        assert first[0] == "stats"
        a = alice.post("/v1/tasks", json=function("square", 3)).json()
        b = bob.post("/v1/tasks", json=function("square", 4)).json()
        seen: dict[int, list[str]] = {}
        stats_seen = 0
        for event, data in stream:
            if event == "stats":
                stats_seen += 1
                continue
            assert event == "task"
            assert data["user"] == "bob", data
            seen.setdefault(data["id"], []).append(data["status"])
            if data["status"] == "completed":
                assert data["result"] == 16
                break
        assert a["id"] not in seen
        assert seen[b["id"]][-1] == "completed"


def test_metrics_and_openapi(make_server: Configure) -> None:
    pytest.importorskip("prometheus_client")
    srv = make_server()
    with srv.client("root") as root, srv.client(None) as anonymous:
        root.post("/v1/tasks", json=function("square", 2))
        text = root.get("/metrics")
        assert text.status_code == 200
        assert "logosq_tasks_submitted_total" in text.text
        doc = anonymous.get("/openapi.json").json()
        assert doc["openapi"].startswith("3.1")
        assert {"/v1/tasks", "/v1/tasks/batch", "/v1/events"} <= set(doc["paths"])
        schemas = doc["components"]["schemas"]
        assert {"CircuitRequest", "FunctionRequest", "VQERequest", "QAOARequest"} <= set(schemas)
        assert schemas["CircuitRequest"]["properties"]["circuit"]
