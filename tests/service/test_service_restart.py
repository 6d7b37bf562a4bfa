"""Kills and restarts: nothing acknowledged is lost or run twice; SIGTERM keeps the queue."""

from __future__ import annotations

import os
import threading
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
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b:
        first = user_a.post(
            "/v1/tasks", json=function("append_run", str(runs), "a", key="a")
        ).json()
        assert (
            user_a.get(f"/v1/tasks/{first['id']}", params={"wait": 30}).json()["status"]
            == "completed"
        )
        # The one worker is held by a task that is not restartable; the rest wait behind it.
        held = user_a.post(
            "/v1/tasks", json=function("wait_for_file", str(gate), key="held")
        ).json()
        deadline = time.monotonic() + 30
        while user_a.get(f"/v1/tasks/{held['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for tag in ("c", "d"):
            r = user_a.post("/v1/tasks", json=function("append_run", str(runs), tag, key=tag))
            assert r.status_code == 201
        assert (
            user_b.post(
                "/v1/tasks", json=function("append_run", str(runs), "e", key="e")
            ).status_code
            == 201
        )
    srv.kill()
    assert _runs(runs) == ["a"]
    gate.touch()
    srv.start()
    with srv.client("user_a") as user_a, srv.client("user_b") as user_b:
        # Both clients find their tasks again by key, with every result.
        for tag in ("c", "d"):
            view = user_a.get(f"/v1/tasks/key/{tag}", params={"wait": 30}).json()
            assert (
                view["status"] == "completed" and view["result"] == tag and view["user"] == "user_a"
            )
        view = user_b.get("/v1/tasks/key/e", params={"wait": 30}).json()
        assert view["status"] == "completed" and view["result"] == "e" and view["user"] == "user_b"
        # The task that had finished before the kill is found with its result, not run again.
        a = user_a.get("/v1/tasks/key/a").json()
        assert a["status"] == "completed" and a["result"] == "a" and a["id"] == first["id"]
        # The one running at the kill was not marked restartable: it fails, it is not rerun.
        h = user_a.get("/v1/tasks/key/held").json()
        assert h["status"] == "failed" and h["error"]["type"] == "InterruptedByRestartError"
        # Ownership came back from the journal, not from the server's memory.
        assert user_b.get("/v1/tasks/key/c").status_code == 404
        assert user_b.get(f"/v1/tasks/{a['id']}").status_code == 404
        listed = {v["key"] for v in user_a.get("/v1/tasks").json()["tasks"]}
        assert listed == {"a", "held", "c", "d"}
        # An idempotent resubmit after the restart returns the first task.
        again = user_a.post("/v1/tasks", json=function("append_run", str(runs), "c", key="c"))
        assert again.status_code == 200 and again.json()["result"] == "c"
    assert sorted(_runs(runs)) == ["a", "c", "d", "e"]


def test_sigterm_exits_0_promptly_and_the_journal_keeps_the_queue(
    make_server: Configure, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    gate = tmp_path / "gate"
    srv = make_server(server={"workers": 1})
    with srv.client("user_a") as user_a:
        held = user_a.post(
            "/v1/tasks", json=function("wait_for_file", str(gate), key="held")
        ).json()
        deadline = time.monotonic() + 30
        while user_a.get(f"/v1/tasks/{held['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for tag in ("q1", "q2", "q3"):
            r = user_a.post("/v1/tasks", json=function("append_run_again", str(runs), tag, key=tag))
            assert r.status_code == 201
    # A long-poll in flight ends at once when the server is told to stop.
    polled: list[object] = []

    def long_poll() -> None:
        with srv.client("user_a") as user_a:
            try:
                polled.append(user_a.get(f"/v1/tasks/{held['id']}", params={"wait": 60}).json())
            except Exception as exc:
                polled.append(exc)

    poller = threading.Thread(target=long_poll)
    poller.start()
    with srv.client("root") as root:
        deadline = time.monotonic() + 30
        while root.get("/v1/stats").json()["long_polls"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    started = time.monotonic()
    assert srv.terminate(timeout=30) == 0
    assert time.monotonic() - started < 15, srv.output()
    poller.join(30)
    assert len(polled) == 1
    assert isinstance(polled[0], dict) and polled[0]["status"] == "running", polled
    rows = {
        row.key.rsplit("/", 1)[-1]: row.status.value
        for row in list_rows(str(srv.journal))
        if row.key
    }
    assert rows == {"held": "running", "q1": "queued", "q2": "queued", "q3": "queued"}
    assert _runs(runs) == []
    srv.start()
    with srv.client("user_a") as user_a:
        for tag in ("q1", "q2", "q3"):
            view = user_a.get(f"/v1/tasks/key/{tag}", params={"wait": 30}).json()
            assert view["status"] == "completed" and view["result"] == tag
    assert sorted(_runs(runs)) == ["q1", "q2", "q3"]


def test_a_port_in_use_exits_1_naming_it(make_server: Configure) -> None:
    import socket

    srv = make_server(start=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", srv.port))
        taken.listen()
        # start() waits for the server to answer, and says how it exited instead.
        with pytest.raises(AssertionError, match="the server exited with 1:"):
            srv.start()  # uvicorn's own code for this is 3: the docs say 1
    assert "address already in use" in srv.output()


def test_the_servers_log_holds_qiskit_at_warnings_unless_debugging() -> None:
    import subprocess
    import sys

    # In a process of its own: the set-up replaces the root logger's handlers.
    code = (
        "import logging\n"
        "from logosq_os_scheduler.service._server import configure_service_logging\n"
        "configure_service_logging('text', {level})\n"
        "print(logging.getLogger('qiskit.passmanager').getEffectiveLevel())\n"
    )
    levels = [
        subprocess.run(
            [sys.executable, "-c", code.format(level=level)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
        ).stdout.strip()
        for level in (20, 10)
    ]
    # At INFO, Qiskit's per-pass records stay out; at DEBUG everything shows.
    assert levels == ["30", "10"]
