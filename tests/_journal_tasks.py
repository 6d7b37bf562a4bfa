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


def wf_start() -> int:
    return 7


def wf_step(x: int) -> int:
    time.sleep(0.02)  # an iteration takes a while, so a kill lands in the middle
    return (x * 31 + 5) % 1_000_003


def block(seconds: float) -> str:
    time.sleep(seconds)
    return "unblocked"
