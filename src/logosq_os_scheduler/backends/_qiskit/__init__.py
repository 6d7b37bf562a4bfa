"""QiskitBackend: any Qiskit ``BackendV2`` as a scheduler backend.

Works with ``AerSimulator()``, ``GenericBackendV2(n)`` and the offline device models of
``qiskit_ibm_runtime.fake_provider`` (``FakeBrisbane``, ``FakeTorino``, ``FakeManilaV2``,
...), fully offline. What it adds to ``backend.run``:

* **Transpilation with a kept pass manager, and a transpile cache.** A plain
  ``transpile()`` builds its pass manager anew on every call; :meth:`QiskitBackend.prepare`
  reuses one per backend, and remembers the result for circuits it has seen (by a
  structural fingerprint), so a repeated circuit costs a fingerprint, not a transpilation.
  (``benchmarks/bench_backend_cost.py`` measures the three; see BENCHMARKS.md.)
* **Active-qubit noise for device models.** Aer ships the whole device noise model on every
  run, which makes even a small circuit slow. Device models are simulated here with noise
  restricted to the physical qubits the circuits use (much faster, same counts for the same
  seed; see BENCHMARKS.md); see :mod:`.._aer_worker`.
* **One simulator call per batch.** :meth:`QiskitBackend.run` sends every circuit of a job
  with the same shots and options in one call. A circuit given its own ``seed_simulator``
  runs in a call of its own: Aer seeds the i-th circuit of a call with the seed plus
  ``i * 2113``, so a seeded circuit would give other counts in a batch than alone.
* **Copies of one circuit as one experiment.** An optimiser's step sends circuits that differ
  only in their angles. On an ``AerSimulator``, each goes as a template (made once per
  structure) and its angles, and the copies of one template in a call run as one experiment
  with a parameter bind each: Aer prepares the circuit once, and a worker process receives
  angles instead of a circuit (see :class:`_Templates`). The simulator is called in the
  worker's own thread, not handed on to the thread Aer's ``run()`` would start.
* **A guard on ruinous simulations.** Before a simulator call starts, its time and memory
  are estimated (:mod:`._cost`); a call over its budget (``max_simulation_seconds``,
  ``max_simulation_memory``) fails at once with :class:`SimulationTooCostlyError`, naming the
  estimate and the ways out, unless the task allows it (``allow_costly``), when it runs in
  parts with its progress logged. See docs/routing.md.
* **Routing overhead.** :meth:`QiskitBackend.routing_overhead` says what fitting a circuit to
  the coupling map added (two-qubit gates and depth), measured once per circuit structure.
* **Simulation off the event loop.** Aer's Python side holds the GIL for much of a run: with
  a 1,000-circuit batch in a worker thread, a pure-Python event loop ran at 2% of its idle
  speed; with the batch in a worker process, at 74 to 87%. Local simulations therefore run
  in worker processes by default (``isolation``).

This package imports Qiskit only when a :class:`QiskitBackend` is built, so importing it is
free. Its modules (:mod:`._adapter` imports the other four, :mod:`._templates` imports
:mod:`._transpile`, which imports :mod:`._cost`, and none imports back):

* :mod:`._adapter`: :class:`QiskitBackend`, :func:`default_backend`, :func:`as_backend`,
  :class:`SimulationProgress`.
* :mod:`._transpile`: :class:`PreparedCircuit` and the transpile cache's policy and key.
* :mod:`._cost`: the cost model of the guard on costly simulations,
  :class:`SimulationEstimate`.
* :mod:`._templates`: angle templates (:class:`._templates._Templates`).
* :mod:`._pool`: the worker processes of process isolation.

The private names tests read are re-exported here too. A test that patches a name must
patch it on the module that uses it, not on this package.
"""

from __future__ import annotations

from ..._errors import MissingExtraError
from ._adapter import (
    _INLINE_PREPARE_SECONDS as _INLINE_PREPARE_SECONDS,
)
from ._adapter import (
    QiskitBackend,
    SimulationProgress,
    as_backend,
    default_backend,
)
from ._cost import SimulationEstimate
from ._pool import _READ_SIZE as _READ_SIZE
from ._templates import _structure_and_angles as _structure_and_angles
from ._templates import _template_of as _template_of
from ._transpile import _CACHE_REST as _CACHE_REST
from ._transpile import _CACHE_TRIAL as _CACHE_TRIAL
from ._transpile import PreparedCircuit
from ._transpile import _fingerprint as _fingerprint

__all__ = [
    "MissingExtraError",
    "PreparedCircuit",
    "QiskitBackend",
    "SimulationEstimate",
    "SimulationProgress",
    "as_backend",
    "default_backend",
]
