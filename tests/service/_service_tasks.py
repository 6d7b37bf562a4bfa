"""Functions the test servers register by name (module level: a restarted server imports
them again by module and name)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def append_run(path: str, tag: str, seconds: float = 0.0) -> str:
    """Append ``tag`` to the file at ``path`` (one line per run, to count runs), then sleep."""
    with open(path, "a") as f:
        f.write(tag + "\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(seconds)
    return tag


def wait_for_file(path: str, timeout: float = 60.0) -> str:
    """Block until the file at ``path`` exists (a test's gate), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    gate = Path(path)
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)
    return "opened"


def fail(message: str) -> None:
    raise ValueError(message)
