"""Result signing: Ed25519 signatures over the canonical encoding of a finished task.

A :class:`ResultSigner` holds a private key (from a file or an environment variable, never
from code) and turns a finished task into a :class:`SignedRecord`: every signed field, the
signer's key fingerprint, and the signature over ``DOMAIN + canonical JSON of the fields``
(see :mod:`._encoding`). :func:`verify_result` checks a record, or a ``TaskResult`` together
with its record, against a public key.

``cryptography`` is imported on first use, not when this module is imported, so the package
imports without the security extra and says which extra to install when signing is asked for.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import SchedulerError
from .._task import Task, TaskResult, TaskStatus, TaskType
from ._encoding import (
    DOMAIN,
    FORMAT,
    JSONValue,
    canonical_text,
    check_digest,
    circuit_digest,
    decode_value,
    encode_value,
    parse_json,
)
from ._errors import (
    MalformedRecordError,
    ResultVerificationError,
    SigningKeyError,
    UnsignableValueError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "SIGNED_FIELDS",
    "ResultSigner",
    "SignedRecord",
    "check_result",
    "generate_key_pair",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "verify_result",
]

log = logging.getLogger("logosq_os_scheduler.security")

DEFAULT_KEY_ENV = "LOGOSQ_SIGNING_KEY"
# Key files are a few hundred bytes; refusing big files keeps a wrong path from being read
# whole into memory.
_MAX_KEY_FILE = 64 * 1024
# Fields whose content comes from users or backends: the only ones strict mode constrains.
_FREE_FIELDS = frozenset({"value", "metadata", "backend_properties", "routing"})


@dataclasses.dataclass(frozen=True, slots=True)
class SignedRecord:
    """Every signed field of a finished task, the signer's key fingerprint, and the signature.

    Built by :class:`ResultSigner`; checked by :func:`verify_result`. Changing any field
    (``dataclasses.replace``, or mutating ``value`` in place) makes it fail verification.
    Values are held as decoded from their canonical encoding: a tuple stays a tuple, a set
    becomes a frozenset, a mapping a dict, and a value that was not plain data an
    :class:`~logosq_os_scheduler.security.OpaqueValue`.

    Attributes:
        task_id: The task's id.
        name: The task's name.
        task_type: ``"classical"``, ``"quantum"`` or ``"hybrid"``.
        priority: The priority's name (``"HIGH"``).
        status: The terminal status's value (``"completed"``).
        value: What the task produced: the counts of a quantum task, the function's return
            value otherwise.
        shots: Shots of a quantum task, else None.
        submitted_at, started_at, finished_at: Times on the scheduler's clock, in seconds.
        attempts: How many times the task was started.
        backend: The backend that ran it (quantum tasks), else None.
        backend_properties: What that backend declared about itself when the task ended.
        backends_tried: Every backend an attempt went to, in order.
        routing: The routing decision as a mapping (``RoutingDecision.as_dict()``), or None.
        circuit_digest: Digest of the circuit as submitted (see ``circuit_digest``).
        transpiled_digest: Digest of the circuit as the backend ran it (after transpilation).
        metadata: The task's labels.
        signed_at: When it was signed: seconds since the Unix epoch, on the signer's clock.
        key_id: Fingerprint of the signing key's public half (see :func:`key_fingerprint`).
        signature: The Ed25519 signature (64 bytes) over :meth:`payload`.
    """

    task_id: int
    name: str
    task_type: str
    priority: str
    status: str
    value: object
    shots: int | None
    submitted_at: float | None
    started_at: float | None
    finished_at: float | None
    attempts: int
    backend: str | None
    backend_properties: Mapping[str, object] | None
    backends_tried: tuple[str, ...]
    routing: Mapping[str, object] | None
    circuit_digest: str | None
    transpiled_digest: str | None
    metadata: Mapping[str, object]
    signed_at: float
    key_id: str
    signature: bytes = dataclasses.field(repr=False)

    def encoded_fields(self) -> dict[str, JSONValue]:
        """Every signed field in its canonical encoding, by name.

        Raises:
            UnsignableValueError: If a field was replaced by a value with no encoding.
        """
        return {name: encode_value(getattr(self, name), field=name) for name in SIGNED_FIELDS}

    def payload(self) -> bytes:
        """The exact bytes the signature covers: :data:`DOMAIN` + canonical JSON of the fields.

        Raises:
            UnsignableValueError: If a field was replaced by a value with no encoding.
        """
        return DOMAIN + canonical_text(self.encoded_fields()).encode("ascii")

    def to_json(self) -> str:
        """The record as canonical JSON text, to store or send; :meth:`from_json` reads it.

        Raises:
            UnsignableValueError: If a field was replaced by a value with no encoding.
        """
        return canonical_text(
            {
                "format": FORMAT,
                "fields": self.encoded_fields(),
                "signature": base64.b64encode(bytes(self.signature)).decode("ascii"),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedRecord:
        """Read a record written by :meth:`to_json`. Reading checks its form, not its
        signature: pass the record to :func:`verify_result` for that.

        Raises:
            MalformedRecordError: If the text is not a record of this format.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedRecordError(f"record text is not UTF-8: {exc}") from exc
        if not isinstance(text, str):
            raise MalformedRecordError(f"expected record text, got {type(text).__name__}")
        doc = parse_json(text)
        if not isinstance(doc, dict) or set(doc) != {"format", "fields", "signature"}:
            raise MalformedRecordError("expected an object with format, fields and signature")
        if doc["format"] != FORMAT:
            raise MalformedRecordError(f"format {doc['format']!r} is not {FORMAT!r}")
        fields, signature = doc["fields"], doc["signature"]
        if not isinstance(fields, dict) or set(fields) != set(SIGNED_FIELDS):
            got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
            raise MalformedRecordError(f"fields must be exactly {list(SIGNED_FIELDS)}, got {got}")
        if not isinstance(signature, str):
            raise MalformedRecordError("signature must be base64 text")
        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError) as exc:
            raise MalformedRecordError(f"signature is not base64: {exc}") from exc
        decoded = {name: decode_value(fields[name]) for name in SIGNED_FIELDS}
        problem = _type_problem(decoded)
        if problem is not None:
            raise MalformedRecordError(f"field {problem[0]!r} {problem[1]}")
        return _record(decoded, raw)


SIGNED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SignedRecord) if f.name != "signature"
)
"""The names of the signed fields, in the order of :class:`SignedRecord`."""

# What each signed field must hold (beyond None where allowed), for records built or read.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "task_id": (int,),
    "name": (str,),
    "task_type": (str,),
    "priority": (str,),
    "status": (str,),
    "value": (object,),
    "shots": (int, type(None)),
    "submitted_at": (float, type(None)),
    "started_at": (float, type(None)),
    "finished_at": (float, type(None)),
    "attempts": (int,),
    "backend": (str, type(None)),
    "backend_properties": (Mapping, type(None)),
    "backends_tried": (tuple,),
    "routing": (Mapping, type(None)),
    "circuit_digest": (str, type(None)),
    "transpiled_digest": (str, type(None)),
    "metadata": (Mapping,),
    "signed_at": (float,),
    "key_id": (str,),
}


def _type_problem(fields: Mapping[str, object]) -> tuple[str, str] | None:
    """The first field holding the wrong type, as (field, problem), or None."""
    for name, types in _FIELD_TYPES.items():
        v = fields[name]
        # bool is an int to isinstance; here it is not an int (1 and True encode apart).
        if not isinstance(v, types) or (isinstance(v, bool) and int in types):
            allowed = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            return name, f"must be {allowed}, got {type(v).__name__}"
    tried = fields["backends_tried"]
    if isinstance(tried, tuple) and not all(isinstance(b, str) for b in tried):
        return "backends_tried", "must hold backend names (str)"
    return None


def _record(fields: Mapping[str, Any], signature: bytes) -> SignedRecord:
    # Types were checked by _type_problem; Any lets the checked mapping fill the typed fields.
    return SignedRecord(**fields, signature=signature)


# --- keys ---------------------------------------------------------------------------------


def _require_crypto() -> None:
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


def _read_source(source: object, *, private: bool) -> tuple[bytes, str]:
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


def _why(exc: BaseException) -> str:
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
    _require_crypto()
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(source, ed25519.Ed25519PrivateKey):
        return source
    pw = _password_bytes(password)
    data, origin = _read_source(source, private=True)
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
        raise SigningKeyError(f"{origin} is not a readable private key: {_why(exc)}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningKeyError(
            f"{origin} holds a {type(key).__name__}; result signing uses Ed25519 keys "
            "(make a pair with generate_key_pair())"
        )
    return key


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
    _require_crypto()
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(source, ed25519.Ed25519PublicKey):
        return source
    if isinstance(source, ed25519.Ed25519PrivateKey):
        return source.public_key()
    if isinstance(source, ResultSigner):
        return source.public_key
    data, origin = _read_source(source, private=False)
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
        raise SigningKeyError(f"{origin} is not a readable public key: {_why(exc)}") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningKeyError(
            f"{origin} holds a {type(key).__name__}; result signatures use Ed25519 keys"
        )
    return key


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """``"ed25519-sha256:<hex>"``: SHA-256 of the raw 32-byte public key. Records carry it as
    ``key_id`` so a verifier can tell which key signed them."""
    _require_crypto()
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
    _require_crypto()
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


# --- signing ------------------------------------------------------------------------------


def _enum_value(x: object) -> object:
    return x.value if isinstance(x, enum.Enum) else x


def _enum_name(x: object) -> object:
    return x.name if isinstance(x, enum.Enum) else x


def _time(x: object) -> object:
    # Clocks may return ints (a ManualClock set to 3); a time is signed as a float.
    if isinstance(x, int) and not isinstance(x, bool):
        return float(x)
    return x


def _routing_data(routing: object) -> object:
    if routing is None or isinstance(routing, Mapping):
        return routing
    as_dict = getattr(routing, "as_dict", None)
    if not callable(as_dict):
        raise UnsignableValueError(
            "routing",
            f"expected a routing decision with as_dict() or a mapping, got "
            f"{type(routing).__name__}",
        )
    try:
        data = as_dict()
    except Exception as exc:
        raise UnsignableValueError("routing", f"as_dict() raised {exc!r}") from exc
    if not isinstance(data, Mapping):
        raise UnsignableValueError(
            "routing", f"as_dict() returned a {type(data).__name__}, not a mapping"
        )
    return data


def _common_fields(obj: Task[Any] | TaskResult[Any]) -> dict[str, object]:
    """The signed fields a Task and a TaskResult both hold, read the same way from each.

    Raises:
        UnsignableValueError: If a field cannot be read (say, it was replaced by an object
            of another kind).
    """
    try:
        return _read_fields(obj)
    except UnsignableValueError:
        raise
    except Exception as exc:
        raise UnsignableValueError("result", f"reading its fields raised {exc!r}") from exc


def _read_fields(obj: Task[Any] | TaskResult[Any]) -> dict[str, object]:
    backend = obj.backend_used if isinstance(obj, Task) else obj.backend
    return {
        "task_id": obj.task_id,
        "name": obj.name,
        "task_type": _enum_value(obj.task_type),
        "priority": _enum_name(obj.priority),
        "status": _enum_value(obj.status),
        "value": obj.value,
        "submitted_at": _time(obj.submitted_at),
        "started_at": _time(obj.started_at),
        "finished_at": _time(obj.finished_at),
        "attempts": obj.attempts,
        "backend": backend,
        "backends_tried": tuple(obj.backends_tried or ()),
        "routing": _routing_data(obj.routing),
        "metadata": obj.metadata,
    }


def _properties(props: object) -> Mapping[str, object] | None:
    if props is None or isinstance(props, Mapping):
        return props
    raise UnsignableValueError(
        "backend_properties", f"expected a mapping or None, got {type(props).__name__}"
    )


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
        fields = _common_fields(task)
        if status is not None:
            if not isinstance(status, TaskStatus):
                raise UnsignableValueError("status", f"expected a TaskStatus, got {status!r}")
            fields["status"] = status.value
        if finished_at is not None:
            fields["finished_at"] = _time(finished_at)
        quantum = task.task_type is TaskType.QUANTUM
        fields["shots"] = task.shots if quantum else None
        fields["circuit_digest"] = _digest("circuit_digest", task.circuit if quantum else None)
        fields["transpiled_digest"] = _digest(
            "transpiled_digest", task.circuit_run if quantum else None
        )
        fields["backend_properties"] = _properties(backend_properties)
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
        fields = _common_fields(result)
        fields["shots"] = shots
        fields["circuit_digest"] = check_digest("circuit_digest", circuit_digest)
        fields["transpiled_digest"] = check_digest("transpiled_digest", transpiled_digest)
        fields["backend_properties"] = _properties(backend_properties)
        return self._sign(fields)

    def _sign(self, fields: dict[str, object]) -> SignedRecord:
        fields["signed_at"] = _time(self._wall_clock())
        fields["key_id"] = self._key_id
        strict = self._strict
        encoded = {
            name: encode_value(fields[name], field=name, strict=strict and name in _FREE_FIELDS)
            for name in SIGNED_FIELDS
        }
        decoded = {name: decode_value(encoded[name]) for name in SIGNED_FIELDS}
        problem = _type_problem(decoded)
        if problem is not None:
            raise UnsignableValueError(*problem)
        payload = DOMAIN + canonical_text(encoded).encode("ascii")
        record = _record(decoded, self._key.sign(payload))
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


# --- verification -------------------------------------------------------------------------


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
        live = _common_fields(result)
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
