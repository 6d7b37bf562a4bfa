"""Task functions for the journal tests: module level, so that a restarted scheduler (in
another process) finds them again by module and name."""

from __future__ import annotations

import time

ORDER: list[str] = []


def square(i: int) -> int:
    time.sleep(0.001)  # long enough to run on a worker thread, so a kill finds some running
    return i * i


def record(tag: str) -> str:
    ORDER.append(tag)
    return tag


def block(seconds: float) -> str:
    time.sleep(seconds)
    return "unblocked"
