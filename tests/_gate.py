"""A gate that worker-process tasks report to, so tests control them across processes.

:func:`_executor_tasks.gated` connects to the gate's Unix socket, says its tag and pid, and
waits for one command byte. The test waits for tasks to arrive (so "running" is a fact, not a
hope), releases them one by one, and sees a worker die as end-of-file on its connection. A
task that is restarted arrives again under the same tag; each arrival is kept in order.

Process states come from ``/proc/<pid>/stat`` (Linux): ``T`` is stopped (SIGSTOP).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# A bound on each wait, not a pause: a broken executor fails the test instead of hanging it.
_BOUND = 60.0


@dataclass
class _Arrival:
    pid: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class _Tag:
    arrivals: list[_Arrival] = field(default_factory=list)
    # Set each time a new arrival is added; waiters clear it before waiting again.
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Gate:
    """A Unix socket server that gated tasks report to; see the module docstring."""

    def __init__(self) -> None:
        # A short directory: Unix socket paths are limited to about 100 bytes.
        self._dir = tempfile.mkdtemp(prefix="lq-")
        self.path = os.path.join(self._dir, "gate.sock")
        self._tags: dict[str, _Tag] = {}
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> Gate:
        self._server = await asyncio.start_unix_server(self._on_connect, self.path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for tag in self._tags.values():
            for arrival in tag.arrivals:
                arrival.writer.close()
        for tag in self._tags.values():
            for arrival in tag.arrivals:
                # A worker that died or was killed leaves nothing to close.
                with contextlib.suppress(ConnectionError):
                    await arrival.writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _tag(self, tag: str) -> _Tag:
        return self._tags.setdefault(tag, _Tag())

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tag, pid = (await reader.readline()).decode().split()
        entry = self._tag(tag)
        entry.arrivals.append(_Arrival(int(pid), reader, writer))
        entry.changed.set()

    async def arrived(self, tag: str, count: int = 1) -> int:
        """Wait until the task tagged ``tag`` has arrived ``count`` times (a restarted task
        arrives again); returns the pid of that arrival's worker."""
        entry = self._tag(tag)
        async with asyncio.timeout(_BOUND):
            while len(entry.arrivals) < count:
                entry.changed.clear()
                await entry.changed.wait()
        return entry.arrivals[count - 1].pid

    def arrivals(self, tag: str) -> int:
        """How many times the task tagged ``tag`` has started so far."""
        return len(self._tag(tag).arrivals)

    def release(self, tag: str) -> None:
        """Let the latest arrival of ``tag`` return its tag."""
        self._tag(tag).arrivals[-1].writer.write(b"r")

    async def gone(self, tag: str) -> None:
        """Wait until the latest arrival's connection closes (it returned, or died)."""
        reader = self._tag(tag).arrivals[-1].reader
        async with asyncio.timeout(_BOUND):
            assert await reader.read() == b""


def process_state(pid: int) -> str:
    """The one-letter state of a process (``R``, ``S``, ``T`` stopped, ...); ``X`` if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "X"
    # The command name is in parentheses and may hold spaces: the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


async def wait_for_state(pid: int, wanted: set[str]) -> str:
    """Wait until a process shows one of the ``wanted`` states; returns it.

    A signal is delivered asynchronously and a process that is not our child gives no event
    when it stops or continues, so this reads /proc until it shows the state (bounded).
    """
    async with asyncio.timeout(_BOUND):
        while (state := process_state(pid)) not in wanted:  # noqa: ASYNC110 - no event exists
            await asyncio.sleep(0.002)
    return state


HAS_PROC = Path("/proc/self/stat").exists()
