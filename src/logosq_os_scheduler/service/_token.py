"""API tokens: random, prefixed, shown once; the config keeps only their SHA-256."""

from __future__ import annotations

import secrets

from ._accounts import hash_token

__all__ = ["TOKEN_PREFIX", "new_token"]

TOKEN_PREFIX = "lq_"


def new_token() -> tuple[str, str]:
    """A new token and its hash: ``(token, sha256_hex)``. Give the token to the user and put
    ``token_sha256 = "<hash>"`` in their ``[users.NAME]`` table."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)
