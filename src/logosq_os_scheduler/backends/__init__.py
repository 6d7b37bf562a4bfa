"""Quantum backends: the Backend contract, MockBackend, a mock QPU service in a process of its
own (MockQPUService, RemoteMockBackend), adapters for Qiskit backends, and the providers:
IBM Quantum through qiskit-ibm-runtime (IBMRuntimeBackend) and Amazon Braket
(BraketBackend).

Importing this package never imports Qiskit or a provider's SDK: :class:`QiskitBackend`,
:class:`PreparedCircuit`, :class:`SimulationEstimate`, :class:`SimulationProgress`,
:func:`as_backend`, :func:`default_backend`, :class:`IBMRuntimeBackend`,
:class:`BraketBackend` and :class:`MissingExtraError` are loaded on first access, and Qiskit,
qiskit-ibm-runtime and amazon-braket-sdk themselves only when such a backend is built or
OpenQASM text is parsed.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

from .._errors import MissingExtraError
from ._base import (
    Backend,
    BackendCapabilities,
    CircuitJob,
    CircuitRequirements,
    Counts,
    JobCost,
    JobOutcome,
    JobWithdrawnError,
)
from ._circuits import (
    CircuitParseError,
    CircuitSpec,
    SupportsNumQubits,
    analyze_circuit,
    normalize_circuit,
)
from ._mock import MockBackend, MockBackendStats, MockJobRecord
from ._mock_service import MockQPUService
from ._remote_mock import RemoteMockBackend

if _TYPE_CHECKING:
    from ._braket import BraketBackend
    from ._ibm_runtime import IBMRuntimeBackend
    from ._qiskit import (
        PreparedCircuit,
        QiskitBackend,
        SimulationEstimate,
        SimulationProgress,
        as_backend,
        default_backend,
    )

__all__ = [
    "Backend",
    "BackendCapabilities",
    "BraketBackend",
    "CircuitJob",
    "CircuitParseError",
    "CircuitRequirements",
    "CircuitSpec",
    "Counts",
    "IBMRuntimeBackend",
    "JobCost",
    "JobOutcome",
    "JobWithdrawnError",
    "MissingExtraError",
    "MockBackend",
    "MockBackendStats",
    "MockJobRecord",
    "MockQPUService",
    "PreparedCircuit",
    "QiskitBackend",
    "RemoteMockBackend",
    "SimulationEstimate",
    "SimulationProgress",
    "SupportsNumQubits",
    "analyze_circuit",
    "as_backend",
    "default_backend",
    "normalize_circuit",
]

# Public names whose module is loaded only when first asked for.
_LAZY = {
    "BraketBackend": "._braket",
    "IBMRuntimeBackend": "._ibm_runtime",
    "PreparedCircuit": "._qiskit",
    "QiskitBackend": "._qiskit",
    "SimulationEstimate": "._qiskit",
    "SimulationProgress": "._qiskit",
    "as_backend": "._qiskit",
    "default_backend": "._qiskit",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
