"""The primitives' options: the fields of Qiskit's backend primitives, and the run options.

Each primitive reads its mutable ``options`` at every ``run()``; ``run_options`` reach the
backend with every circuit, and are checked before anything is submitted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from qiskit.exceptions import QiskitError

__all__ = [
    "DEFAULT_PRECISION",
    "SchedulerEstimatorOptions",
    "SchedulerSamplerOptions",
    "checked_run_options",
    "options_of",
]

DEFAULT_PRECISION = 0.015625
"""The estimator's default precision, as Qiskit's ``BackendEstimatorV2``: 1 / sqrt(4096)."""


@dataclasses.dataclass
class SchedulerSamplerOptions:
    """Options of :class:`SchedulerSampler`: the fields of Qiskit's ``BackendSamplerV2``
    options, with the same meaning and defaults."""

    default_shots: int = 1024
    """Shots of PUBs that set none."""

    seed_simulator: int | None = None
    """Seed of the simulation (see the package documentation); None: unseeded."""

    run_options: dict[str, Any] | None = None
    """Options passed to the backend with every circuit (``shots`` excepted)."""


@dataclasses.dataclass
class SchedulerEstimatorOptions:
    """Options of :class:`SchedulerEstimator`: the fields of Qiskit's ``BackendEstimatorV2``
    options, with the same meaning and defaults, and ``run_options`` as
    ``BackendSamplerV2`` has them."""

    default_precision: float = DEFAULT_PRECISION
    """Precision of PUBs that set none; ``0`` asks for exact values (see the package
    documentation)."""

    abelian_grouping: bool = True
    """Measure qubit-wise commuting Paulis together (one circuit per group), or each Pauli
    on its own."""

    seed_simulator: int | None = None
    """Seed of the simulation (see the package documentation); None: unseeded."""

    run_options: dict[str, Any] | None = None
    """Options passed to the backend with every circuit (``shots`` excepted)."""


def options_of(cls: type[Any], options: Any) -> Any:
    """``options`` (None, a mapping or a ``cls``) as a fresh ``cls``.

    Raises:
        TypeError: On a field ``cls`` does not have (as Qiskit's ``Options(**options)``).
    """
    if options is None:
        return cls()
    if isinstance(options, cls):
        return dataclasses.replace(options)
    if isinstance(options, Mapping):
        return cls(**options)
    raise TypeError(f"options must be a dict or {cls.__name__}, got {type(options).__name__}")


def checked_run_options(run_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run options to pass with every circuit, checked before anything is submitted.

    Raises:
        QiskitError: If they ask for a ``meas_level`` other than 2 (counts are all the
            scheduler's quantum tasks return), as Qiskit raises for a level it cannot read.
        ValueError: If they set ``shots`` (PUBs and ``run(shots=)`` set shots).
    """
    opts = dict(run_options or {})
    level = opts.get("meas_level")
    if level is not None and int(level) != 2:
        raise QiskitError(
            f"Unsupported meas_level: {level}. The scheduler's quantum tasks return counts, "
            "so only meas_level=2 (classified bits) is available."
        )
    if "shots" in opts:
        raise ValueError("run_options cannot set shots: give them in the PUB or in run(shots=)")
    return opts
