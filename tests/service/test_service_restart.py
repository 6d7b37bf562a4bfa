"""Kills and restarts: nothing acknowledged is lost or run twice; SIGTERM keeps the queue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

for _extra in ("httpx", "starlette", "uvicorn", "msgspec", "qiskit"):
    pytest.importorskip(_extra)

from _service_helpers import NEEDS_SERVICE, Configure, function  # noqa: E402

from logosq_os_scheduler.journal._inspect import list_rows  # noqa: E402

pytestmark = [*NEEDS_SERVICE, pytest.mark.slow]


def _runs(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_sigkill_mid_run_then_restart(make_server: Configure, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    gate = tmp_path / "gate"
    srv = make_server(server={"workers": 1})
    with srv.client("alice") as alice, srv.client("bob") as bob:
        first = alice.post("/v1/tasks", json=function("append_run", str(runs), "a", key="a")).json()
        assert (
            alice.get(f"/v1/tasks/{first['id']}", params={"wait": 30}).json()["status"]
            == "completed"
        )
        # The one worker is held by a task that is not restartable; the rest wait behind it.
        held = alice.post("/v1/tasks", json=function("wait_for_file", str(gate), key="held")).json()
        deadline = time.monotonic() + 30
        while alice.get(f"/v1/tasks/{held['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for tag in ("c", "d"):
            r = alice.post("/v1/tasks", json=function("append_run", str(runs), tag, key=tag))
            assert r.status_code == 201
        assert (
            bob.post("/v1/tasks", json=function("append_run", str(runs), "e", key="e")).status_code
            == 201
        )
    srv.kill()
    assert _runs(runs) == ["a"]
    gate.touch()
    srv.start()
    with srv.client("alice") as alice, srv.client("bob") as bob:
        # Both clients find their tasks again by key, with every result.
        for tag in ("c", "d"):
            view = alice.get(f"/v1/tasks/key/{tag}", params={"wait": 30}).json()
            assert (
                view["status"] == "completed" and view["result"] == tag and view["user"] == "alice"
            )
        view = bob.get("/v1/tasks/key/e", params={"wait": 30}).json()
        assert view["status"] == "completed" and view["result"] == "e" and view["user"] == "bob"
        # The task that had finished before the kill is found with its result, not run again.
        a = alice.get("/v1/tasks/key/a").json()
        assert a["status"] == "completed" and a["result"] == "a" and a["id"] == first["id"]
        # The one running at the kill was not marked restartable: it fails, it is not rerun.
        h = alice.get("/v1/tasks/key/held").json()
        assert h["status"] == "failed" and h["error"]["type"] == "InterruptedByRestartError"
        # Ownership came back from the journal, not from the server's memory.
        assert bob.get("/v1/tasks/key/c").status_code == 404
        assert bob.get(f"/v1/tasks/{a['id']}").status_code == 404
        listed = {v["key"] for v in alice.get("/v1/tasks").json()["tasks"]}
        assert listed == {"a", "held", "c", "d"}
        # An idempotent resubmit after the restart returns the first task.
        again = alice.post("/v1/tasks", json=function("append_run", str(runs), "c", key="c"))
        assert again.status_code == 200 and again.json()["result"] == "c"
    assert sorted(_runs(runs)) == ["a", "c", "d", "e"]


def test_sigterm_exits_0_promptly_and_the_journal_keeps_the_queue(
    make_server: Configure, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    gate = tmp_path / "gate"
    srv = make_server(server={"workers": 1})
    with srv.client("alice") as alice:
        held = alice.post("/v1/tasks", json=function("wait_for_file", str(gate), key="held")).json()
        deadline = time.monotonic() + 30
        while alice.get(f"/v1/tasks/{held['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for tag in ("q1", "q2", "q3"):
            r = alice.post("/v1/tasks", json=function("append_run_again", str(runs), tag, key=tag))
            assert r.status_code == 201
    started = time.monotonic()
    assert srv.terminate(timeout=30) == 0
    assert time.monotonic() - started < 15, srv.output()
    rows = {
        row.key.rsplit("/", 1)[-1]: row.status.value
        for row in list_rows(str(srv.journal))
        if row.key
    }
    assert rows == {"held": "running", "q1": "queued", "q2": "queued", "q3": "queued"}
    assert _runs(runs) == []
    srv.start()
    with srv.client("alice") as alice:
        for tag in ("q1", "q2", "q3"):
            view = alice.get(f"/v1/tasks/key/{tag}", params={"wait": 30}).json()
            assert view["status"] == "completed" and view["result"] == tag
    assert sorted(_runs(runs)) == ["q1", "q2", "q3"]
