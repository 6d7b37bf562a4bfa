"""What the server shows: the account, backends, stats, events, metrics and the OpenAPI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
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
        users={"user_a": {"weight": 2.0, "quotas": {"max_active": 10, "shots_per_day": 5000}}},
        backends=[
            {"kind": "mock", "name": "sim", "num_qubits": 8, "seed": 1},
            {"kind": "mock", "name": "big", "num_qubits": 20, "max_concurrent_jobs": 2},
        ],
    )
    with srv.client("user_a") as user_a, srv.client("root") as root:
        view = user_a.post("/v1/tasks", json=circuit(shots=100)).json()
        user_a.get(f"/v1/tasks/{view['id']}", params={"wait": 30})
        me = user_a.get("/v1/me").json()
        assert me == {
            "user": "user_a",
            "groups": ["lab"],
            "admin": False,
            "priority_ceiling": "high",
            "quotas": {"max_running": None, "max_active": 10, "shots_per_day": 5000},
            "usage": {"active": 0, "shots_today": 100},
        }
        assert root.get("/v1/me").json()["priority_ceiling"] == "critical"
        backends = {b["name"]: b for b in user_a.get("/v1/backends").json()}
        assert set(backends) == {"sim", "big"}
        assert backends["big"]["num_qubits"] == 20 and backends["big"]["capacity"] == 2
        assert backends["big"]["kind"] == "mock"
        assert backends["sim"]["breaker"] == "closed" and backends["sim"]["in_rotation"] is True
        by_priority = {"critical": 0, "high": 0, "normal": 0, "low": 0, "idle": 0}
        assert backends["sim"]["queued_by_priority"] == by_priority
        stats = user_a.get("/v1/stats").json()
        assert stats["completed"] >= 1 and stats["queued_by_priority"] == by_priority
        assert [u["user"] for u in stats["users"]] == ["user_a"]
        assert stats["users"][0]["completed"] == 1
        root.post("/v1/tasks", json=function("square", 2))
        users = {u["user"] for u in root.get("/v1/stats").json()["users"]}
        assert users >= {"user_a"}
        assert [u["user"] for u in user_a.get("/v1/stats").json()["users"]] == ["user_a"]


def test_queues_by_priority_are_labelled_by_priority_name(
    make_server: Configure, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    srv = make_server(server={"workers": 1})
    with srv.client("user_a") as user_a:
        user_a.post("/v1/tasks", json=function("wait_for_file", str(gate)))  # takes the worker
        for priority in ("high", "low", "low", "idle"):
            user_a.post("/v1/tasks", json=function("square", 2, priority=priority))
        stats = user_a.get("/v1/stats").json()
        gate.touch()
    assert stats["queued_by_priority"] == {
        "critical": 0,
        "high": 1,
        "normal": 0,
        "low": 2,
        "idle": 1,
    }


def test_stats_count_each_end_the_same_per_user_and_overall(
    make_server: Configure, tmp_path: Path
) -> None:
    """A cancelled task is cancelled in the user's row and in the totals, a timed-out one
    timed out (the user's row used to count both as failed, the totals neither)."""
    gate = tmp_path / "gate"
    srv = make_server(server={"workers": 1})
    with srv.client("user_a") as user_a:
        blocker = user_a.post("/v1/tasks", json=function("wait_for_file", str(gate))).json()
        cancelled = user_a.post("/v1/tasks", json=function("square", 2)).json()
        timed_out = user_a.post("/v1/tasks", json=function("square", 3, timeout=0.05)).json()
        assert user_a.post(f"/v1/tasks/{cancelled['id']}/cancel").status_code == 200
        user_a.get(f"/v1/tasks/{timed_out['id']}", params={"wait": 30})
        gate.touch()
        user_a.get(f"/v1/tasks/{blocker['id']}", params={"wait": 30})
        failed = user_a.post("/v1/tasks", json=function("fail", "planned")).json()
        completed = user_a.post("/v1/tasks", json=function("square", 4)).json()
        for task in (failed, completed):
            user_a.get(f"/v1/tasks/{task['id']}", params={"wait": 30})
        stats = user_a.get("/v1/stats").json()
    ends = {"completed": 2, "failed": 1, "cancelled": 1, "timed_out": 1}
    assert {k: stats[k] for k in ends} == ends
    [row] = stats["users"]
    assert {k: row[k] for k in ends} == ends


def test_events_are_per_user(make_server: Configure) -> None:
    srv = make_server()
    deadline = time.monotonic() + 30
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b:
        stream = _events(srv, "user_b", deadline)
        first = next(stream)
        assert first[0] == "stats"
        a = user_a.post("/v1/tasks", json=function("square", 3)).json()
        b = user_b.post("/v1/tasks", json=function("square", 4)).json()
        seen: dict[int, list[str]] = {}
        stats_seen = 0
        for event, data in stream:
            if event == "stats":
                stats_seen += 1
                continue
            assert event == "task"
            assert data["user"] == "user_b", data
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


def test_the_openapi_document_says_what_each_submit_answers() -> None:
    from logosq_os_scheduler.service._openapi import openapi_document

    doc = openapi_document()
    submit = doc["paths"]["/v1/tasks"]["post"]["responses"]
    assert {"201", "200", "422", "4XX"} <= set(submit)
    for status in ("201", "200"):  # a new task, and the one the key names: both views
        schema = submit[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/TaskView"}
    assert "client key" in submit["200"]["description"]
    assert "KeyReusedError" in submit["422"]["description"]
    batch = doc["paths"]["/v1/tasks/batch"]["post"]["responses"]
    assert {"201", "422"} <= set(batch) and "index" in batch["422"]["description"]
    for refusal in (submit["422"], batch["422"]):
        schema = refusal["content"]["application/problem+json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}
    problem = doc["components"]["schemas"]["Problem"]["properties"]
    assert {"field", "index", "key", "task_id"} <= set(problem)


def test_the_openapi_document_labels_queues_by_priority_name() -> None:
    from logosq_os_scheduler.service._openapi import openapi_document

    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    counts = schemas["CountsByPriority"]
    assert counts["type"] == "object"
    assert list(counts["properties"]) == ["critical", "high", "normal", "low", "idle"]
    ref = {"$ref": "#/components/schemas/CountsByPriority"}
    assert schemas["Stats"]["properties"]["queued_by_priority"] == ref
    assert schemas["Backend"]["properties"]["queued_by_priority"] == ref
    assert {"failed", "cancelled", "timed_out"} <= set(schemas["Stats"]["properties"])
    stats = doc["paths"]["/v1/stats"]["get"]["responses"]["200"]["content"]
    assert stats["application/json"]["schema"] == {"$ref": "#/components/schemas/Stats"}


def test_dashboard_files_by_plain_name_only(make_server: Configure) -> None:
    import logosq_os_scheduler.service as service

    srv = make_server()
    index = Path(service.__file__).parent / "static" / "index.html"
    with srv.client(None) as anonymous:
        page = anonymous.get("/")
        if index.is_file():
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert page.content == index.read_bytes()
        else:
            assert page.status_code == 404 and "no file 'index.html'" in page.json()["detail"]
        for name in ("..%2Fservice.toml", ".hidden.js", "server.toml", "x.py"):
            r = anonymous.get(f"/static/{name}")
            assert r.status_code == 404, name
            assert r.headers["content-type"] == "application/problem+json"


def test_tls_through_uvicorns_options(make_server: Configure, tmp_path: Path) -> None:
    import datetime
    import ipaddress
    import ssl

    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    srv = make_server(start=False)
    srv.args = ("--ssl-keyfile", str(key_file), "--ssl-certfile", str(cert_file))
    srv.scheme = "https"
    srv.start()
    trusted = ssl.create_default_context(cafile=str(cert_file))
    with srv.client("user_a", verify=trusted) as user_a:
        view = user_a.post("/v1/tasks", json=function("square", 6)).json()
        assert user_a.get(f"/v1/tasks/{view['id']}", params={"wait": 30}).json()["result"] == 36
    import httpx

    with pytest.raises(httpx.TransportError):  # plain HTTP is not spoken on a TLS port
        httpx.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=5)
