"""MockQPUService: the mock QPU service (``_mock_qpu.py``) started as a process of its own.

The service's jobs live outside the scheduler's process: a scheduler (or any process) submits
through a :class:`~logosq_os_scheduler.backends.RemoteMockBackend`, may die, and a later one
collects the jobs by their IDs. The service itself lives until :meth:`MockQPUService.stop`, or
until the process that started it ends (it watches a pipe from its owner), whichever comes
first. POSIX only (it runs in a session of its own, and is stopped by killing that).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from types import TracebackType
from typing import Any, TypeGuard

from .._errors import BackendUnavailableError, InvalidConfigError
from . import _mock_qpu

__all__ = ["MockQPUService"]

_NAME = "mock-qpu"


class MockQPUService:
    """A mock QPU service in a process of its own, on a free port of 127.0.0.1.

    Jobs sent to it (by :class:`~logosq_os_scheduler.backends.RemoteMockBackend`) are
    acknowledged with an ID, take ``latency`` to run, and are kept with their outcomes, so a
    process other than their submitter can collect them. Counts are deterministic (they depend
    only on each circuit's idempotency key, width and shots), and no idempotency key is ever
    executed twice: :meth:`stats` counts executions.

    Use it as a context manager (``with`` or ``async with``), which starts it and stops it::

        with MockQPUService(latency=0.5) as service:
            backend = RemoteMockBackend(service.address)

    Args:
        latency: Seconds per job, or ``(fixed_per_job, per_circuit)`` seconds.
        failure_rate: Probability that a job fails as a whole; its collector gets
            :class:`~logosq_os_scheduler.TransientBackendError` and its keys may run again.
        max_running_jobs: Jobs it executes at once; the rest wait at the service.
        seed: Seeds the fault draws (None: 0).
        state_dir: A directory where the service keeps its jobs, so that it may itself be
            stopped and started again (on the same port) without losing them. None keeps them
            in memory only.
        port: The port to listen on; 0 picks a free one (kept across restarts).
        start_timeout: Seconds to wait for the process to start listening.

    Raises:
        InvalidConfigError: If a setting is out of range.
    """

    def __init__(
        self,
        *,
        latency: float | tuple[float, float] = 0.0,
        failure_rate: float = 0.0,
        max_running_jobs: int = 1,
        seed: int | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        port: int = 0,
        start_timeout: float = 30.0,
    ) -> None:
        pair = latency if isinstance(latency, tuple) else (latency, 0.0)
        if len(pair) != 2 or not all(
            _is_real(value) and math.isfinite(value) and value >= 0 for value in pair
        ):
            raise InvalidConfigError(
                "latency", f"must be finite seconds >= 0, or a pair of them, got {latency!r}"
            )
        fixed, per_circuit = pair
        if not _is_real(failure_rate) or not 0.0 <= failure_rate <= 1.0:
            raise InvalidConfigError(
                "failure_rate", f"must be a probability in [0, 1], got {failure_rate!r}"
            )
        if not _is_int(max_running_jobs) or max_running_jobs < 1:
            raise InvalidConfigError(
                "max_running_jobs", f"must be an int >= 1, got {max_running_jobs!r}"
            )
        if not _is_int(port) or not 0 <= port <= 65535:
            raise InvalidConfigError("port", f"must be an int in [0, 65535], got {port!r}")
        if seed is not None and not _is_int(seed):
            raise InvalidConfigError("seed", f"must be an int or None, got {seed!r}")
        if not _is_real(start_timeout) or start_timeout <= 0:
            raise InvalidConfigError("start_timeout", f"must be > 0 seconds, got {start_timeout!r}")
        self._options = [
            f"--latency={float(fixed)!r}",
            f"--per-circuit={float(per_circuit)!r}",
            f"--failure-rate={float(failure_rate)!r}",
            f"--max-running-jobs={max_running_jobs}",
            f"--seed={seed or 0}",
        ]
        if state_dir is not None:
            self._options.append(f"--state-dir={os.fspath(state_dir)}")
        self._port = port
        self._start_timeout = float(start_timeout)
        # Invariant: _process is the running service (started, not yet stopped), else None.
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` where the service listens (the port is known once started)."""
        if self._port == 0:
            raise RuntimeError("the mock QPU service has no port yet: start() it first")
        return ("127.0.0.1", self._port)

    @property
    def running(self) -> bool:
        """Whether its process is running."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Its process's ID while started, else None."""
        return self._process.pid if self._process is not None else None

    def start(self) -> MockQPUService:
        """Start the service's process and wait until it listens; returns self.

        Raises:
            RuntimeError: If it is running already, or its process exited or stayed silent
                for ``start_timeout`` seconds before listening.
        """
        if self._process is not None:
            raise RuntimeError("the mock QPU service is running already")
        process = subprocess.Popen(
            [
                sys.executable,
                _mock_qpu.__file__,
                f"--port={self._port}",
                "--exit-on-stdin-eof",
                *self._options,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # its own process group: stop() kills all of it
        )
        assert process.stdout is not None
        try:
            line = _read_line(process.stdout, self._start_timeout)
            port = int(line) if line.strip().isdigit() else 0
            if port <= 0:
                raise RuntimeError(
                    f"the mock QPU service did not start: exit code {process.poll()}, "
                    f"first output {line!r}"
                )
        except BaseException:
            _kill(process)
            raise
        finally:
            process.stdout.close()
        self._port = port
        self._process = process
        return self

    def stop(self) -> None:
        """Kill the service's process (its whole process group) and wait for it to end.

        Unfinished jobs are lost unless the service keeps a ``state_dir`` (a restart then runs
        them). Does nothing if it is not running.
        """
        process, self._process = self._process, None
        if process is not None:
            _kill(process)

    def stats(self, timeout: float = 10.0) -> dict[str, int]:
        """What the service has done, as counts: ``submits``, ``existing`` (submits answered
        with a job that already held their keys), ``jobs``, ``executed`` (circuits executed),
        ``keys`` (distinct idempotency keys executed), ``duplicate_keys`` (keys executed more
        than once: always 0), ``replayed``, ``failed_jobs``, ``running_jobs``, ``queued_jobs``.

        Raises:
            BackendUnavailableError: If the service cannot be reached.
        """
        stats: dict[str, int] = self._request({"op": "stats"}, timeout)["stats"]
        return stats

    def executions(self, timeout: float = 10.0) -> dict[str, int]:
        """How many times the service executed each idempotency key (each is 1).

        Raises:
            BackendUnavailableError: If the service cannot be reached.
        """
        executions: dict[str, int] = self._request({"op": "executions"}, timeout)["executions"]
        return executions

    def _request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        host, port = self.address
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.sendall(json.dumps(request).encode() + b"\n")
                with sock.makefile("rb") as stream:
                    line = stream.readline(_mock_qpu.LINE_LIMIT)
        except OSError as exc:
            raise BackendUnavailableError(
                _NAME, f"cannot reach the mock QPU service at {host}:{port}: {exc}"
            ) from exc
        if not line:
            raise BackendUnavailableError(_NAME, "the service closed the connection unanswered")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def __enter__(self) -> MockQPUService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MockQPUService:
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._port else "no port yet"
        return f"<MockQPUService {where} {'running' if self.running else 'stopped'}>"


def _read_line(stream: Any, timeout: float) -> str:
    """The first line ``stream`` (a pipe) gives within ``timeout`` seconds, or what it gave."""
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break  # the process exited
        data += chunk
    return data.decode(errors="replace")


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
