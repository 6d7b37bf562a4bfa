"""Hybrid workflows: loops of classical and quantum steps, VQE and QAOA, Qiskit primitives.

The workflow machinery (:class:`HybridWorkflow`, :class:`WorkflowStep`, :func:`run_workflow`,
the :class:`HybridAlgorithm` protocol) needs only the standard library and is imported with
the package. The algorithms, optimisers and primitives need the ``qiskit`` extra (Qiskit,
NumPy, SciPy); they are loaded on first access, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._hybrid import AlgorithmResult, HybridAlgorithm, run_hybrid
from ._workflow import (
    HybridWorkflow,
    IterationRecord,
    StepKind,
    WorkflowError,
    WorkflowHandle,
    WorkflowProgress,
    WorkflowResult,
    WorkflowStep,
    run_workflow,
    start_workflow,
)

if TYPE_CHECKING:
    from ._algorithms import QAOA, VQE, QAOAResult, VQEResult
    from ._optimizers import COBYLA, SPSA, Adam, Objective, Optimizer, OptimizerResult
    from ._primitives import (
        SchedulerEstimator,
        SchedulerEstimatorOptions,
        SchedulerPrimitiveJob,
        SchedulerSampler,
        SchedulerSamplerOptions,
    )
    from ._problems import (
        H2_FCI_ELECTRONIC_ENERGY,
        H2_FCI_TOTAL_ENERGY,
        cut_value,
        h2_ansatz,
        h2_hamiltonian,
        maxcut_hamiltonian,
    )

__all__ = [
    "COBYLA",
    "H2_FCI_ELECTRONIC_ENERGY",
    "H2_FCI_TOTAL_ENERGY",
    "QAOA",
    "SPSA",
    "VQE",
    "Adam",
    "AlgorithmResult",
    "HybridAlgorithm",
    "HybridWorkflow",
    "IterationRecord",
    "Objective",
    "Optimizer",
    "OptimizerResult",
    "QAOAResult",
    "SchedulerEstimator",
    "SchedulerEstimatorOptions",
    "SchedulerPrimitiveJob",
    "SchedulerSampler",
    "SchedulerSamplerOptions",
    "StepKind",
    "VQEResult",
    "WorkflowError",
    "WorkflowHandle",
    "WorkflowProgress",
    "WorkflowResult",
    "WorkflowStep",
    "cut_value",
    "h2_ansatz",
    "h2_hamiltonian",
    "maxcut_hamiltonian",
    "run_hybrid",
    "run_workflow",
    "start_workflow",
]

# Names that need the qiskit extra, by the private module that defines them.
_LAZY = {
    "VQE": "_algorithms",
    "QAOA": "_algorithms",
    "VQEResult": "_algorithms",
    "QAOAResult": "_algorithms",
    "COBYLA": "_optimizers",
    "SPSA": "_optimizers",
    "Adam": "_optimizers",
    "Objective": "_optimizers",
    "Optimizer": "_optimizers",
    "OptimizerResult": "_optimizers",
    "SchedulerEstimator": "_primitives",
    "SchedulerSampler": "_primitives",
    "SchedulerPrimitiveJob": "_primitives",
    "SchedulerSamplerOptions": "_primitives",
    "SchedulerEstimatorOptions": "_primitives",
    "H2_FCI_ELECTRONIC_ENERGY": "_problems",
    "H2_FCI_TOTAL_ENERGY": "_problems",
    "cut_value": "_problems",
    "h2_ansatz": "_problems",
    "h2_hamiltonian": "_problems",
    "maxcut_hamiltonian": "_problems",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    except ImportError as exc:
        raise ImportError(
            f"{name} needs the qiskit extra: pip install 'logosq-os-scheduler[qiskit]'"
        ) from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
