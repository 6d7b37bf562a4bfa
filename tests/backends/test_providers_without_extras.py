"""Without their extras, the provider backends import (lazily) and say which extra to install.
Runs in the core suite (no extras); skipped where the extra is installed."""

from __future__ import annotations

import importlib.util

import pytest

from logosq_os_scheduler import MissingExtraError
from logosq_os_scheduler.backends import BraketBackend, IBMRuntimeBackend


@pytest.mark.skipif(
    importlib.util.find_spec("qiskit_ibm_runtime") is not None,
    reason="qiskit-ibm-runtime is installed",
)
def test_ibm_runtime_backend_names_the_qiskit_extra() -> None:
    with pytest.raises(MissingExtraError, match=r"logosq-os-scheduler\[qiskit\]"):
        IBMRuntimeBackend(None)


@pytest.mark.skipif(
    importlib.util.find_spec("braket") is not None, reason="amazon-braket-sdk is installed"
)
def test_braket_backend_names_the_braket_extra() -> None:
    with pytest.raises(MissingExtraError, match=r"logosq-os-scheduler\[braket\]"):
        BraketBackend()
