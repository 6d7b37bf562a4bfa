"""Checking signed results against the signer's public key.

:func:`load_public_key` reads the key (or takes a signer's public half); :func:`check_result`
checks a record, or a ``TaskResult`` together with its record, and says why it fails;
:func:`verify_result` answers True or False.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .._errors import SchedulerError
from .._result import TaskResult
from ._encoding import canonical_text, encode_value
from ._errors import ResultVerificationError, SigningKeyError
from ._keys import key_fingerprint, read_source, require_crypto, why
from ._record import SignedRecord, common_fields
from ._signer import ResultSigner

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = ["check_result", "load_public_key", "verify_result"]


def load_public_key(
    source: Ed25519PublicKey | Ed25519PrivateKey | ResultSigner | bytes | str | os.PathLike[str],
) -> Ed25519PublicKey:
    """Load an Ed25519 public key, to verify signed results with.

    Args:
        source: A public key object (or a private key or :class:`ResultSigner`, whose public
            half is taken); PEM text or bytes (``PUBLIC KEY``), an OpenSSH ``ssh-ed25519``
            line, raw 32-byte key bytes, or the path of a file holding any of these (or DER).

    Returns:
        The key.

    Raises:
        SigningKeyError: If the key cannot be read, is malformed, is a private key file, or
            is not an Ed25519 key.
        MissingExtraError: If ``cryptography`` is not installed.
    """
    require_crypto()
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(source, ed25519.Ed25519PublicKey):
        return source
    if isinstance(source, ed25519.Ed25519PrivateKey):
        return source.public_key()
    if isinstance(source, ResultSigner):
        return source.public_key
    data, origin = read_source(source, private=False)
    head = data.lstrip()[:64]
    if head.startswith(b"-----BEGIN") and b"PRIVATE KEY" in head:
        raise SigningKeyError(
            f"{origin} is a private key; verification takes the public key (keep the private "
            "key with the scheduler)"
        )
    key: object
    try:
        if head.startswith(b"ssh-"):
            key = ser.load_ssh_public_key(data.strip())
        elif head.startswith(b"-----BEGIN"):
            key = ser.load_pem_public_key(data.strip())
        elif len(data) == 32:
            key = ed25519.Ed25519PublicKey.from_public_bytes(data)
        else:
            key = ser.load_der_public_key(data)
    except Exception as exc:  # ValueError, UnsupportedAlgorithm: all "unreadable"
        raise SigningKeyError(f"{origin} is not a readable public key: {why(exc)}") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningKeyError(
            f"{origin} holds a {type(key).__name__}; result signatures use Ed25519 keys"
        )
    return key


def check_result(
    result: SignedRecord | TaskResult[Any],
    public_key: Ed25519PublicKey
    | Ed25519PrivateKey
    | ResultSigner
    | bytes
    | str
    | os.PathLike[str],
    *,
    record: SignedRecord | None = None,
) -> SignedRecord:
    """Check a signed result, raising with the reason if it does not verify.

    Args:
        result: A :class:`SignedRecord`, or a ``TaskResult`` with its record (the
            ``signed_record`` the scheduler attaches, or ``record``). For a ``TaskResult``,
            its own fields and signature must also match the record's.
        public_key: The signer's public key (see :func:`load_public_key`).
        record: The record of ``result`` when it is kept apart from the result.

    Returns:
        The verified record.

    Raises:
        ResultVerificationError: If it does not verify; the reason says which check failed.
        SigningKeyError: If the public key cannot be loaded.
    """
    key = load_public_key(public_key)
    live: TaskResult[Any] | None = None
    if isinstance(result, SignedRecord):
        rec: object = result
    elif isinstance(result, TaskResult):
        live = result
        rec = record if record is not None else getattr(result, "signed_record", None)
        if rec is None:
            raise ResultVerificationError(f"task {result.task_id} has no signed record")
    else:
        raise ResultVerificationError(
            f"expected a SignedRecord or a TaskResult, got {type(result).__name__}"
        )
    if not isinstance(rec, SignedRecord):
        raise ResultVerificationError(f"expected a SignedRecord, got {type(rec).__name__}")
    signature = rec.signature
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != 64:
        raise ResultVerificationError("the signature is not 64 bytes")
    try:
        payload = rec.payload()
    except SchedulerError as exc:
        raise ResultVerificationError(f"a field of the record cannot be encoded: {exc}") from exc
    expected_id = key_fingerprint(key)
    if rec.key_id != expected_id:
        raise ResultVerificationError(
            f"the record names signing key {rec.key_id!r}, not this key ({expected_id})"
        )
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(bytes(signature), payload)
    except InvalidSignature as exc:
        raise ResultVerificationError(
            "the signature does not match the signed fields (a field changed after signing)"
        ) from exc
    if live is not None:
        _check_live(live, rec)
    return rec


def _check_live(result: TaskResult[Any], rec: SignedRecord) -> None:
    """A TaskResult must say what its verified record says, field by field."""
    if result.signature != rec.signature:
        raise ResultVerificationError("the result's signature is not its record's")
    try:
        live = common_fields(result)
    except SchedulerError as exc:
        raise ResultVerificationError(f"a field of the result cannot be read: {exc}") from exc
    for name, value in live.items():
        try:
            same = canonical_text(encode_value(value, field=name)) == canonical_text(
                encode_value(getattr(rec, name), field=name)
            )
        except SchedulerError:
            same = False
        if not same:
            raise ResultVerificationError(
                f"the result's {name} differs from the signed record's (changed after signing)"
            )


def verify_result(
    result: SignedRecord | TaskResult[Any],
    public_key: Ed25519PublicKey
    | Ed25519PrivateKey
    | ResultSigner
    | bytes
    | str
    | os.PathLike[str],
    *,
    record: SignedRecord | None = None,
) -> bool:
    """Whether a signed result is intact and was signed with the key whose public half is
    ``public_key``.

    Any change to any signed field, a missing or altered signature, or another key gives
    False, never an exception; :func:`check_result` says why.

    Args:
        result: A :class:`SignedRecord`, or a ``TaskResult`` with its record.
        public_key: The signer's public key (see :func:`load_public_key`).
        record: The record of ``result`` when it is kept apart from the result.

    Raises:
        SigningKeyError: If the public key cannot be loaded (a malformed key is the caller's
            mistake, not a verdict on the result).
    """
    try:
        check_result(result, public_key, record=record)
    except ResultVerificationError:
        return False
    return True
