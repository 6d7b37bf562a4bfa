"""The signer: a private key that turns a finished task into a :class:`SignedRecord`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._result import TaskResult
from .._task import Task, TaskStatus, TaskType
from ._encoding import (
    DOMAIN,
    canonical_text,
    check_digest,
    circuit_digest,
    decode_value,
    encode_value,
)
from ._errors import SigningKeyError, UnsignableValueError
from ._keys import key_fingerprint, load_private_key
from ._record import (
    SIGNED_FIELDS,
    SignedRecord,
    as_time,
    checked_properties,
    common_fields,
    make_record,
    type_problem,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = ["DEFAULT_KEY_ENV", "ResultSigner"]

DEFAULT_KEY_ENV = "LOGOSQ_SIGNING_KEY"
# Fields whose content comes from users or backends: the only ones strict mode constrains.
_FREE_FIELDS = frozenset({"value", "metadata", "backend_properties", "routing"})


class ResultSigner:
    """Signs finished tasks with an Ed25519 private key.

    The key comes from a file, an environment variable (:meth:`from_env`) or a key object
    that the caller loaded; never write a key into code. The signer is never pickled, so it
    does not travel to worker processes with a task.

    Example:
        >>> signer = ResultSigner.from_env()  # doctest: +SKIP
        >>> record = signer.sign_result(result)  # doctest: +SKIP
        >>> verify_result(record, "results.pub")  # doctest: +SKIP
        True

    Args:
        private_key: An ``Ed25519PrivateKey``, PEM text or bytes, raw key bytes, or the path
            of a key file (see :func:`load_private_key`).
        password: The password of an encrypted key.
        strict: Refuse values, metadata, backend properties and routing data that are not
            plain data, instead of signing their type and data or repr (see
            :mod:`~logosq_os_scheduler.security._encoding`).
        wall_clock: Where ``signed_at`` comes from (default :func:`time.time`).

    Raises:
        SigningKeyError: If the key cannot be loaded.
        MissingExtraError: If ``cryptography`` is not installed.
    """

    __slots__ = ("_key", "_public", "_key_id", "_strict", "_wall_clock")

    def __init__(
        self,
        private_key: Ed25519PrivateKey | bytes | str | os.PathLike[str],
        *,
        password: bytes | str | None = None,
        strict: bool = False,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(strict, bool):
            raise SigningKeyError(f"strict must be True or False, got {strict!r}")
        if not callable(wall_clock):
            raise SigningKeyError(f"wall_clock must be callable, got {wall_clock!r}")
        self._key = load_private_key(private_key, password=password)
        self._public = self._key.public_key()
        self._key_id = key_fingerprint(self._public)
        self._strict = strict
        self._wall_clock = wall_clock

    @classmethod
    def from_env(
        cls,
        var: str = DEFAULT_KEY_ENV,
        *,
        password: bytes | str | None = None,
        strict: bool = False,
        unset: bool = True,
    ) -> ResultSigner:
        """A signer whose key comes from the environment variable ``var``: PEM text (real
        newlines, or ``\\n`` escapes as env files need), or the path of a key file.

        Args:
            var: The variable's name.
            password: The password of an encrypted key.
            strict: As for the constructor.
            unset: Remove the variable from ``os.environ`` once the key is loaded, so that
                processes started later (process workers, simulator workers, anything a task
                starts) do not inherit the key.

        Raises:
            SigningKeyError: If the variable is unset or empty, or its key cannot be loaded.
        """
        if not isinstance(var, str) or not var:
            raise SigningKeyError(f"expected an environment variable name, got {var!r}")
        value = os.environ.get(var)
        if value is None or not value.strip():
            raise SigningKeyError(
                f"environment variable {var} is not set: put a PEM private key, or the path "
                "of a key file, in it"
            )
        text = value.strip()
        source: bytes | str
        if text.startswith("-----BEGIN"):
            if "\n" not in text and "\\n" in text:
                text = text.replace("\\n", "\n")
            source = text.encode("utf-8", "replace")
        else:
            source = text
        try:
            signer = cls(source, password=password, strict=strict)
        except SigningKeyError as exc:
            raise SigningKeyError(f"from environment variable {var}: {exc.problem}") from exc
        if unset:
            os.environ.pop(var, None)
        return signer

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public half, for :func:`verify_result`."""
        return self._public

    @property
    def key_id(self) -> str:
        """The public key's fingerprint, as records carry it."""
        return self._key_id

    @property
    def strict(self) -> bool:
        """Whether values that are not plain data are refused."""
        return self._strict

    def public_key_pem(self) -> bytes:
        """The public key as PEM (``SubjectPublicKeyInfo``), to hand to verifiers."""
        from cryptography.hazmat.primitives import serialization as ser

        pem: bytes = self._public.public_bytes(
            ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    def sign_task(
        self,
        task: Task[Any],
        *,
        backend_properties: Mapping[str, object] | None = None,
        status: TaskStatus | None = None,
        finished_at: float | None = None,
    ) -> SignedRecord:
        """Sign a task as it ends. The scheduler calls this on its own loop.

        Circuit digests are computed here: of ``task.circuit`` (as submitted) and of the
        circuit the backend ran. ``status`` and ``finished_at`` let the scheduler sign a task
        just before it moves it to that status at that time, so that nobody can see the task
        ended and unsigned.

        Args:
            task: The task.
            backend_properties: What the backend that ran it declares
                (``Backend.properties()``).
            status: The terminal status to record (default: the task's own).
            finished_at: The end time to record (default: the task's own).

        Raises:
            UnsignableValueError: If a field has no canonical encoding, or a circuit no digest.
        """
        if not isinstance(task, Task):
            raise UnsignableValueError("task", f"expected a Task, got {type(task).__name__}")
        fields = common_fields(task)
        if status is not None:
            if not isinstance(status, TaskStatus):
                raise UnsignableValueError("status", f"expected a TaskStatus, got {status!r}")
            fields["status"] = status.value
        if finished_at is not None:
            fields["finished_at"] = as_time(finished_at)
        quantum = task.task_type is TaskType.QUANTUM
        fields["shots"] = task.shots if quantum else None
        fields["circuit_digest"] = _digest("circuit_digest", task.circuit if quantum else None)
        fields["transpiled_digest"] = _digest(
            "transpiled_digest", task.circuit_run if quantum else None
        )
        fields["backend_properties"] = checked_properties(backend_properties)
        return self._sign(fields)

    def sign_result(
        self,
        result: TaskResult[Any],
        *,
        shots: int | None = None,
        circuit_digest: str | None = None,
        transpiled_digest: str | None = None,
        backend_properties: Mapping[str, object] | None = None,
    ) -> SignedRecord:
        """Sign a finished task's result (a ``TaskResult`` has no circuit, so its digests and
        shots are given, as :func:`circuit_digest` computes them).

        Raises:
            UnsignableValueError: If a field has no canonical encoding or a digest is not one.
        """
        if not isinstance(result, TaskResult):
            raise UnsignableValueError(
                "result", f"expected a TaskResult, got {type(result).__name__}"
            )
        if shots is not None and (
            not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0
        ):
            raise UnsignableValueError("shots", f"must be a positive integer, got {shots!r}")
        fields = common_fields(result)
        fields["shots"] = shots
        fields["circuit_digest"] = check_digest("circuit_digest", circuit_digest)
        fields["transpiled_digest"] = check_digest("transpiled_digest", transpiled_digest)
        fields["backend_properties"] = checked_properties(backend_properties)
        return self._sign(fields)

    def _sign(self, fields: dict[str, object]) -> SignedRecord:
        fields["signed_at"] = as_time(self._wall_clock())
        fields["key_id"] = self._key_id
        strict = self._strict
        encoded = {
            name: encode_value(fields[name], field=name, strict=strict and name in _FREE_FIELDS)
            for name in SIGNED_FIELDS
        }
        decoded = {name: decode_value(encoded[name]) for name in SIGNED_FIELDS}
        problem = type_problem(decoded)
        if problem is not None:
            raise UnsignableValueError(*problem)
        payload = DOMAIN + canonical_text(encoded).encode("ascii")
        record = make_record(decoded, self._key.sign(payload))
        # The record holds decoded values; they must encode back to the signed bytes, or the
        # record would fail verification later. They do unless two items of a set or two
        # keys encode alike once decoded, which the encoder already refuses: this is the
        # belt to that brace.
        if record.payload() != payload:
            raise UnsignableValueError(
                "value", "the value does not survive its own encoding; it cannot be signed"
            )
        return record

    def __repr__(self) -> str:
        return f"<ResultSigner {self._key_id}>"

    def __reduce__(self) -> tuple[Any, ...]:
        raise SigningKeyError(
            "a ResultSigner holds a private key and is never pickled or copied; give other "
            "processes the public key (public_key_pem()) to verify with"
        )


def _digest(field: str, circuit: object) -> str | None:
    if circuit is None:
        return None
    try:
        return circuit_digest(circuit)
    except UnsignableValueError as exc:
        raise UnsignableValueError(field, exc.problem) from exc
