"""Task functions for the executor tests: module level, so worker processes can import them.

Only the standard library is imported here, so that a fresh worker loads this module fast.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading
import time
from typing import Any


def add(a: int, b: int) -> int:
    return a + b


def echo(value: Any) -> Any:
    return value


def pid() -> int:
    return os.getpid()


def raise_chained() -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("bad value") from exc


class NeedsTwoArgsError(Exception):
    """Pickles, but its __init__ signature breaks unpickling (a common mistake)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")


def raise_unloadable() -> None:
    raise NeedsTwoArgsError(7, "odd")


def raise_system_exit() -> None:
    raise SystemExit(4)


def return_unpicklable() -> Any:
    return threading.Lock()


def allocate(n_bytes: int) -> int:
    block = bytearray(n_bytes)
    return len(block)


def spin_forever() -> None:
    x = 0
    while True:
        x += 1


def spin_catching_everything() -> str:
    """Tries to swallow its limit: ``except Exception`` must not catch it."""
    x = 0
    try:
        while True:
            x += 1
    except Exception:
        return "swallowed"


def gated(path: str, tag: str) -> str:
    """Connect to the test's gate, say who we are, then do what the gate says.

    Commands: ``r`` return the tag, ``x`` os._exit(3), ``s`` segfault, ``k`` SIGKILL self
    (the test may also kill us from outside). The gate socket lets the test wait for the task
    to be running, and see its process die (end-of-file), without sleeping.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(f"{tag} {os.getpid()}\n".encode())
        command = sock.recv(1)
        if command == b"x":
            os._exit(3)
        if command == b"s":
            ctypes.string_at(0)
        if command == b"k":
            os.kill(os.getpid(), signal.SIGKILL)
    return tag


def report_pid_then_wait(path: str) -> None:
    """Write this worker's pid to ``path`` (whole, by a rename), then wait for ever."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, path)
    while True:
        time.sleep(60)
