"""Seeds: a job's randomness, and the simulator seed of each of its circuits.

See the package documentation (Seeds) for what ``seed`` and ``seed_simulator`` promise.
"""

from __future__ import annotations

import operator
from typing import Any, TypeAlias

import numpy as np

__all__ = ["Seed", "job_rng", "reseed_of", "seed_base", "with_run_options"]

# Aer seeds the i-th circuit of one call with seed_simulator + i * 2113; the k-th circuit of
# a job is given that seed, so that it runs alone with the seed it would have had in a call.
_AER_SEED_STRIDE = 2113

Seed: TypeAlias = np.random.Generator | int | None


def job_rng(seed: Seed, seed_simulator: int | None) -> np.random.Generator:
    """The randomness of one job. An int seed starts every job from the same state (the same
    job, the same result); a Generator is used as is and advances. Without ``seed``, the
    job's other randomness follows ``seed_simulator``, so that a job seeded either way is
    reproducible."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(seed_simulator)
    return np.random.default_rng(seed)


def seed_base(seed: Seed, seed_simulator: int | None, rng: np.random.Generator) -> int | None:
    """The simulator seed of a job's first circuit, or None for an unseeded job."""
    if seed_simulator is not None:
        return int(seed_simulator)
    if seed is None:
        return None
    return int(rng.integers(0, 2**31))


def reseed_of(seed: Seed, seed_simulator: int | None) -> int | None:
    """The int ``seed`` that every PUB (estimator) or bound circuit (sampler) of a job starts
    from again, as Qiskit's Statevector primitives re-seed with it, so that equal PUBs of one
    job give equal results; None when the job is seeded otherwise, or not at all."""
    if seed_simulator is not None or seed is None or isinstance(seed, np.random.Generator):
        return None
    return operator.index(seed)


def with_run_options(
    builder: Any, run_options: dict[str, Any], base: int | None, index: int
) -> Any:
    """``builder`` with the job's run options and, in a seeded job, circuit ``index``'s seed."""
    opts = dict(run_options)
    if base is not None:
        opts["seed_simulator"] = base + _AER_SEED_STRIDE * index
    return builder.with_run_options(**opts) if opts else builder
