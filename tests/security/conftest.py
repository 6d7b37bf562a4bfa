"""Fixtures of the signing tests: a fresh Ed25519 key, and a signer of it with a fixed clock.

cryptography is imported inside the fixtures, so that the core profile (no security extra)
still collects this directory; its tests skip there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from _signing_helpers import SIGNED_AT

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from logosq_os_scheduler.security import ResultSigner


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def signer(key: ed25519.Ed25519PrivateKey) -> ResultSigner:
    from logosq_os_scheduler.security import ResultSigner

    return ResultSigner(key, wall_clock=lambda: SIGNED_AT)
