"""Qiskit's Sampler and Estimator V2 primitives, run through the scheduler.

:class:`SchedulerSampler` and :class:`SchedulerEstimator` implement ``BaseSamplerV2`` and
``BaseEstimatorV2``, so code written for Qiskit's primitives (qiskit-algorithms' VQE and QAOA,
for instance) gets the scheduler's priorities, routing, batching and retries unchanged. They
follow Qiskit's semantics: PUBs are coerced with ``SamplerPub.coerce`` / ``EstimatorPub.coerce``
(so malformed PUBs raise the same ``ValueError`` / ``TypeError`` as Qiskit's reference
primitives, at ``run()``), parameters broadcast as Qiskit broadcasts them, and results come
in Qiskit's containers with Qiskit's metadata.

How work reaches the scheduler: every circuit a job needs (every parameter set of every PUB,
and for the estimator every measurement basis) becomes one quantum task, and all of a job's
tasks are submitted together before any is awaited, so the scheduler batches them into as few
backend jobs as the backends allow and fans them out across backends. Once all are in, the
job flushes them (:meth:`~logosq_os_scheduler.QuantumScheduler.flush_batches`): none waits
out the batch window for circuits that are not coming.

Threads and loops: ``run()`` is synchronous in Qiskit's API and returns a job; the scheduler
lives on an event loop. ``run()`` may be called

* from a thread other than the scheduler's loop (plain scripts with
  :class:`~logosq_os_scheduler.BlockingScheduler`, or code handed to ``asyncio.to_thread``):
  the job is handed to the loop and ``job.result()`` blocks that thread until it is done;
* on the loop itself (inside a coroutine): the job starts at once; there, ``await job`` (or
  use :meth:`SchedulerEstimator.arun` / :meth:`SchedulerSampler.arun`), since a blocking
  ``job.result()`` on the loop would wait forever and raises instead.

Options: each primitive has a mutable ``options`` dataclass with the fields of the matching
Qiskit primitive's options (``BackendSamplerV2``: ``default_shots``, ``seed_simulator``,
``run_options``; ``BackendEstimatorV2``: ``default_precision``, ``abelian_grouping``,
``seed_simulator``, and ``run_options`` as the sampler has them), given as a dict or the
dataclass at construction and read at every ``run()``. ``run_options`` reach the backend
with every circuit (:meth:`~logosq_os_scheduler.TaskBuilder.with_run_options`). The
scheduler's quantum tasks return counts, so only ``meas_level=2`` (classified bits) can be
asked for; another ``meas_level`` raises ``QiskitError`` at ``run()``.

Seeds: ``seed_simulator`` (an int) seeds the simulation as ``BackendSamplerV2`` does on Aer:
the ``k``-th circuit of a job (in PUB order, then parameter order, then, for the estimator,
measurement basis) runs with ``seed_simulator + 2113 * k``, the seed Aer gives the ``k``-th
circuit of one call, so a job whose circuits fit one Aer call gives the counts
``backend.run(circuits, seed_simulator=...)`` gives. ``seed`` (an int or a NumPy
``Generator``, as ``StatevectorSampler`` / ``StatevectorEstimator`` take it) seeds a job's
randomness as a whole: an int makes every job start from the same state, so the same job
gives the same result every time; and, as those primitives re-seed with it, every PUB of the
estimator and every bound circuit of the sampler starts from the same seed again (equal
PUBs of one job give equal results, and a sampler PUB of several parameter sets gives what
the same parameter sets give as PUBs of their own); a ``Generator`` is drawn from and
advances, so repeated jobs and PUBs differ.
When ``seed`` is set and ``seed_simulator`` is not, the simulator seed is drawn
from ``seed``. A seeded circuit runs in a simulator call of its own (see
:class:`~logosq_os_scheduler.backends.QiskitBackend`), so its counts do not depend on how
the scheduler batches it; unseeded circuits batch freely.

Estimator precision: a PUB with ``precision > 0`` is estimated from samples, with
``ceil(1 / precision**2)`` shots per measurement basis, and its ``stds`` and metadata follow
Qiskit's ``BackendEstimatorV2``. ``precision == 0`` asks for the exact expectation value, as
it does of Qiskit's ``StatevectorEstimator``: the job's exact PUBs are computed together by
``StatevectorEstimator(seed=seed)`` in one classical task on the scheduler (no backend is
involved), with ``StatevectorEstimator``'s results and metadata. An estimator pinned to a
backend refuses ``precision == 0`` with the ``ValueError`` of ``BackendEstimatorV2``: a
backend can only estimate from shots, and an exact value computed elsewhere would silently
drop the backend's noise.

Sampler shot order: the scheduler's quantum tasks return counts, not per-shot memory, so a
``BitArray`` is built from counts and the order of shots is lost. Shots of one circuit are
exchangeable (independent and identically distributed), so each PUB's shots are put in a
random order (from the job's seeded randomness, see Seeds) rather than grouped by outcome;
joint statistics across classical registers are kept exactly, since every register is cut
from the same shots.

One module per piece: :mod:`._options` (the options dataclasses and the run options checked
at ``run()``), :mod:`._seeds` (a job's randomness and each circuit's simulator seed),
:mod:`._job` (the job ``run()`` returns, and the scheduler's loop), :mod:`._pubs` (what both
primitives share in turning PUBs into tasks), :mod:`._measurements` (the estimator's
measurement bases and expectation values), :mod:`._estimator` and :mod:`._sampler`.
"""

from __future__ import annotations

from ._estimator import SchedulerEstimator
from ._job import SchedulerPrimitiveJob, await_all
from ._options import SchedulerEstimatorOptions, SchedulerSamplerOptions
from ._sampler import SchedulerSampler

__all__ = [
    "SchedulerEstimator",
    "SchedulerEstimatorOptions",
    "SchedulerPrimitiveJob",
    "SchedulerSampler",
    "SchedulerSamplerOptions",
    "await_all",
]
