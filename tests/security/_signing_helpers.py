"""Helpers shared by the signing tests; importable without the security extra."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logosq_os_scheduler import ManualClock, SchedulerConfig, Task, TaskResult, TaskStatus
from logosq_os_scheduler.core import SchedulerCore

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

SIGNED_AT = 1_700_000_000.25


def pem_of(key: ed25519.Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def completed(task: Task[Any], value: object, times: tuple[float, float, float]) -> Task[Any]:
    """``task`` run to COMPLETED with ``value`` by a scheduler's core, submitted, started and
    finished at ``times``."""
    submitted, started, finished = times
    core = SchedulerCore(SchedulerConfig(workers=1), ManualClock())
    core.admit(task, core.classical, submitted)
    task.started_at = started
    core.transition(task, TaskStatus.COMPLETED, finished)
    task.value = value
    return task


def finished_result(value: object) -> TaskResult[Any]:
    """A finished task's result, with every runtime field set as the scheduler sets it."""
    task = Task.classical("t").with_function(lambda: value).with_metadata(k="v").build()
    return TaskResult(completed(task, value, (10.0, 11.0, 12.0)))
