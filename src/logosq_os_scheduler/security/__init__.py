"""Signed results: Ed25519 signatures over a canonical encoding of each finished task.

Turn signing on with ``QuantumScheduler(...).with_result_signing(key)``, or sign results
yourself with a :class:`ResultSigner`; check them with :func:`verify_result`. Keys come from
files or environment variables (:func:`generate_key_pair` makes a pair), never from code.

What a signature proves, and what it does not, is in ``SECURITY.md`` at the repository root.
Signing needs the ``security`` extra (``cryptography``), imported only when a key is loaded.
"""

from ._encoding import DOMAIN, FORMAT, OpaqueValue, circuit_digest
from ._errors import (
    MalformedRecordError,
    ResultVerificationError,
    SigningKeyError,
    UnsignableValueError,
)
from ._keys import generate_key_pair, key_fingerprint, load_private_key
from ._record import SIGNED_FIELDS, SignedRecord
from ._signer import ResultSigner
from ._verify import check_result, load_public_key, verify_result

__all__ = [
    "DOMAIN",
    "FORMAT",
    "SIGNED_FIELDS",
    "MalformedRecordError",
    "OpaqueValue",
    "ResultSigner",
    "ResultVerificationError",
    "SignedRecord",
    "SigningKeyError",
    "UnsignableValueError",
    "check_result",
    "circuit_digest",
    "generate_key_pair",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "verify_result",
]
