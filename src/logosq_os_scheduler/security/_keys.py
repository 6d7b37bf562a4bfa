"""Ed25519 keys for result signing: private keys loaded, fingerprints, new key pairs.

Keys come from files, PEM text or bytes, or environment variables
(:meth:`~logosq_os_scheduler.security.ResultSigner.from_env`), never from code. The public key
a verifier loads is read by :func:`~logosq_os_scheduler.security.load_public_key`, which lives
with the checks in :mod:`._verify`: it also takes a ``ResultSigner``, whose module imports
this one.

``cryptography`` is imported on first use, not when this module is imported, so the package
imports without the security extra and says which extra to install when signing is asked for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import SigningKeyError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "generate_key_pair",
    "key_fingerprint",
    "load_private_key",
    "read_source",
    "require_crypto",
    "why",
]

log = logging.getLogger("logosq_os_scheduler.security")

# Key files are a few hundred bytes; refusing big files keeps a wrong path from being read
# whole into memory.
_MAX_KEY_FILE = 64 * 1024


def require_crypto() -> None:
    """Import ``cryptography`` on first use; without it, say which extra to install."""
    try:
        import cryptography  # noqa: F401
    except ImportError as exc:
        from ..backends._qiskit import MissingExtraError

        raise MissingExtraError("security", "result signing") from exc


def _password_bytes(password: object) -> bytes | None:
    if password is None or isinstance(password, bytes):
        return password
    if isinstance(password, str):
        return password.encode("utf-8")
    raise SigningKeyError(f"a key password must be bytes or str, got {type(password).__name__}")


def read_source(source: object, *, private: bool) -> tuple[bytes, str]:
    """The key bytes and, for messages, where they came from (never the key itself)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "the given key bytes"
    if isinstance(source, str):
        text = source.strip()
        if text.startswith(("-----BEGIN", "ssh-ed25519 ")):
            return text.encode("utf-8", "replace"), "the given key text"
        path = Path(source)
    elif isinstance(source, os.PathLike):
        path = Path(source)
    else:
        kind = "private" if private else "public"
        raise SigningKeyError(
            f"expected an Ed25519 {kind} key, PEM text or bytes, or the path of a key file; "
            f"got {type(source).__name__}"
        )
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise SigningKeyError(f"{str(path)!r} is not a regular file, so not a key file")
        if st.st_size > _MAX_KEY_FILE:
            raise SigningKeyError(
                f"{str(path)!r} is {st.st_size} bytes: too large for a key file (at most "
                f"{_MAX_KEY_FILE})"
            )
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SigningKeyError(f"no key file at {str(path)!r}") from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise SigningKeyError(f"cannot read key file {str(path)!r}: {exc}") from exc
    if private and os.name == "posix" and st.st_mode & 0o077:
        log.warning(
            "private key file %r can be read by other users (mode %o): chmod 600 it",
            str(path),
            stat.S_IMODE(st.st_mode),
        )
    return data, repr(str(path))


def why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def load_private_key(
    source: Ed25519PrivateKey | bytes | str | os.PathLike[str],
    *,
    password: bytes | str | None = None,
) -> Ed25519PrivateKey:
    """Load an Ed25519 private key.

    Args:
        source: A key object; PEM text or bytes (PKCS#8, or OpenSSH); raw 32-byte key bytes;
            or the path of a file holding any of these (or DER).
        password: The password of an encrypted key.

    Returns:
        The key.

    Raises:
        SigningKeyError: If the key cannot be read, is malformed or encrypted without a
            password, or is not an Ed25519 private key.
        MissingExtraError: If ``cryptography`` is not installed.
    """
    require_crypto()
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(source, ed25519.Ed25519PrivateKey):
        return source
    pw = _password_bytes(password)
    data, origin = read_source(source, private=True)
    head = data.lstrip()[:64]
    if head.startswith(b"-----BEGIN") and b"PRIVATE KEY-----" not in head:
        raise SigningKeyError(
            f"{origin} is not a private key (its PEM header is {head.splitlines()[0]!r}); "
            "signing needs the private key"
        )
    if head.startswith(b"ssh-ed25519 "):
        raise SigningKeyError(f"{origin} is an OpenSSH public key; signing needs the private key")
    key: object
    try:
        if head.startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            key = ser.load_ssh_private_key(data.strip(), pw)
        elif head.startswith(b"-----BEGIN"):
            key = ser.load_pem_private_key(data.strip(), pw)
        elif len(data) == 32:
            key = ed25519.Ed25519PrivateKey.from_private_bytes(data)
        else:
            key = ser.load_der_private_key(data, pw)
    except Exception as exc:  # ValueError, TypeError, UnsupportedAlgorithm: all "unreadable"
        raise SigningKeyError(f"{origin} is not a readable private key: {why(exc)}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningKeyError(
            f"{origin} holds a {type(key).__name__}; result signing uses Ed25519 keys "
            "(make a pair with generate_key_pair())"
        )
    return key


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """``"ed25519-sha256:<hex>"``: SHA-256 of the raw 32-byte public key. Records carry it as
    ``key_id`` so a verifier can tell which key signed them."""
    require_crypto()
    from cryptography.hazmat.primitives import serialization as ser

    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return "ed25519-sha256:" + hashlib.sha256(raw).hexdigest()


def generate_key_pair(
    path: str | os.PathLike[str],
    *,
    password: bytes | str | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Make a new Ed25519 key pair for result signing and write it as PEM files.

    The private key goes to ``path`` (PKCS#8, created with mode 0600, encrypted when a
    password is given); the public key to ``path`` + ``".pub"`` (mode 0644), which is the
    file to hand to whoever verifies results.

    Args:
        path: Where to write the private key.
        password: Encrypt the private key with this password.
        overwrite: Replace existing files (results signed with the old key then verify only
            with the old public key).

    Returns:
        The paths of the private and the public key files.

    Raises:
        SigningKeyError: If a file exists and ``overwrite`` is false, or cannot be written.
        MissingExtraError: If ``cryptography`` is not installed.
    """
    require_crypto()
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pw = _password_bytes(password)
    try:
        private_path = Path(path)
        public_path = private_path.with_name(private_path.name + ".pub")
    except (TypeError, ValueError) as exc:
        raise SigningKeyError(f"cannot use {path!r} as a key file path: {exc}") from exc
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = ser.BestAvailableEncryption(pw) if pw else ser.NoEncryption()
    private_pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600, overwrite=overwrite)
    _write_new(public_path, public_pem, 0o644, overwrite=overwrite)
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    # O_EXCL: the file is created here with ``mode`` from the start, never opened as an
    # existing file someone else made (and perhaps left readable); O_NOFOLLOW: never through a
    # symbolic link planted at the path.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        if overwrite:
            path.unlink(missing_ok=True)
        fd = os.open(path, flags, mode)
    except FileExistsError as exc:
        raise SigningKeyError(
            f"{str(path)!r} exists; pass overwrite=True to replace it (results signed with "
            "the old key then verify only with the old public key)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"cannot create key file {str(path)!r}: {exc}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(data)
