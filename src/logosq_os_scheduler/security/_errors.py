"""The errors of result signing, within the package's tree::

    SchedulerError
     ├── InvalidConfigError
     │    └── SigningKeyError          a key is missing, unreadable, malformed or not Ed25519
     ├── InvalidTaskError
     │    └── UnsignableValueError     a field's value has no canonical encoding (names it)
     └── ResultVerificationError       a record does not verify; says why
          └── MalformedRecordError     a serialised record is not a valid record

:func:`~logosq_os_scheduler.security.verify_result` turns every
:class:`ResultVerificationError` into ``False``; only a key it cannot load raises.
"""

from __future__ import annotations

from .._errors import InvalidConfigError, InvalidTaskError, SchedulerError

__all__ = [
    "MalformedRecordError",
    "ResultVerificationError",
    "SigningKeyError",
    "UnsignableValueError",
]


class SigningKeyError(InvalidConfigError):
    """A signing or verification key is missing, unreadable, malformed, or not an Ed25519 key.

    ``setting`` is ``"signing_key"``; the message names where the key came from (a path, an
    environment variable) and what was wrong with it, never the key itself.
    """

    def __init__(self, problem: str) -> None:
        super().__init__("signing_key", problem)


class UnsignableValueError(InvalidTaskError):
    """A field of a result has no canonical encoding, so it cannot be signed.

    ``field`` names the signed field (``"value"``, ``"metadata"``, ...); the message gives the
    path inside it (``value['a'][3]``) and the offending type.
    """


class ResultVerificationError(SchedulerError):
    """A signed record does not verify: a field changed, another key signed it, or it lacks a
    signature. The message says which check failed.

    Attributes:
        reason: The failed check in words.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"result does not verify: {reason}")
        self.reason = reason


class MalformedRecordError(ResultVerificationError):
    """Serialised record text is not a record this version can read (bad JSON, a missing or
    unknown field, a value in no known encoding)."""
