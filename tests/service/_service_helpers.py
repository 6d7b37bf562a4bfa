"""Helpers of the service tests: a real ``logosq serve`` process and request bodies."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

# Every test module of the service starts with these: the core suite runs without the extra.
NEEDS_SERVICE = [pytest.mark.service, pytest.mark.qiskit]

HERE = Path(__file__).parent
SRC = HERE.parent.parent / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclasses.dataclass
class Server:
    """A running server process and what a test needs to talk to it."""

    config: Path
    journal: Path
    port: int
    tokens: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, user: str | None, **kwargs: Any) -> httpx.Client:
        import httpx

        headers = {} if user is None else {"Authorization": f"Bearer {self.tokens[user]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE), env.get("PYTHONPATH", "")])
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "logosq_os_scheduler.cli",
                    "serve",
                    "--config",
                    str(self.config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the server exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not become ready:\n{self.output()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server's whole process group and reap it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.proc = None

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM the server and wait for it to exit; its exit code."""
        proc = self.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout)
        self.proc = None
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")


Configure = Callable[..., Server]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


BELL_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""

BELL_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""


def circuit(source: str = BELL_QASM2, fmt: str = "qasm2", **extra: object) -> dict[str, object]:
    return {"kind": "circuit", "circuit": {"format": fmt, "source": source}, **extra}


def function(name: str, *args: object, **extra: object) -> dict[str, object]:
    return {"kind": "function", "function": name, "args": list(args), **extra}
