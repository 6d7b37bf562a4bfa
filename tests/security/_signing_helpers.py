"""Helpers shared by the signing tests; importable without the security extra."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logosq_os_scheduler import Task, TaskResult, TaskStatus

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


def finished_result(value: object) -> TaskResult[Any]:
    """A finished task's result, with every runtime field set as the scheduler sets it."""
    task = Task.classical("t").with_function(lambda: value).with_metadata(k="v").build()
    task.status = TaskStatus.COMPLETED
    task.value = value
    task.submitted_at, task.started_at, task.finished_at = 10.0, 11.0, 12.0
    task.attempts = 1
    return TaskResult(task)
