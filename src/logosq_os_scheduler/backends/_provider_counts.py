"""Counts in the scheduler's convention from what a provider returns, and joint job IDs.

Shared by the provider backends (:mod:`._ibm_runtime`, :mod:`._braket`). The scheduler's
counts follow Aer's ``get_counts``: one bitstring per shot, classical bit 0 rightmost, the
circuit's classical registers separated by a space, its last register leftmost. A provider
that answers otherwise (Qiskit Runtime gives one bit array per register; Braket gives one
row per shot over the qubits it measured) is brought to it here, so a task's counts read the
same whichever backend ran it.

A provider job holds circuits of one shot count (Qiskit Runtime's client-side Sampler
requires it; a Braket task is one circuit). A scheduler job whose circuits differ goes out as
several provider jobs, one per run of neighbouring circuits with equal shots, and its job ID
is theirs joined by :data:`JOB_ID_SEPARATOR`, in order: the ID alone is enough to collect the
outcomes in the job's order after a restart.

Standard library only.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

__all__ = [
    "JOB_ID_SEPARATOR",
    "join_job_ids",
    "join_registers",
    "runs_of_equal_shots",
    "split_job_id",
]

# Neither an IBM job ID (letters and digits), a local UUID nor a Braket task ARN holds one.
JOB_ID_SEPARATOR = ","


def runs_of_equal_shots(shots: Sequence[int]) -> list[range]:
    """The job's circuits as runs of neighbours with equal shots, in order.

    >>> runs_of_equal_shots([100, 100, 50, 100])
    [range(0, 2), range(2, 3), range(3, 4)]
    """
    runs: list[range] = []
    start = 0
    for i in range(1, len(shots) + 1):
        if i == len(shots) or shots[i] != shots[start]:
            runs.append(range(start, i))
            start = i
    return runs


def join_job_ids(ids: Iterable[str]) -> str:
    """One job ID for the provider jobs of one scheduler job, in order."""
    return JOB_ID_SEPARATOR.join(ids)


def split_job_id(job_id: str) -> list[str]:
    """The provider job IDs that :func:`join_job_ids` joined, in order (empty parts dropped)."""
    return [part for part in job_id.split(JOB_ID_SEPARATOR) if part]


def join_registers(columns: Sequence[Sequence[str]]) -> dict[str, int]:
    """Counts from per-register bitstrings, one sequence per register in the circuit's order
    (each holding one bitstring per shot): the registers of a shot joined by spaces, the
    last register leftmost, as Aer writes them."""
    if len(columns) == 1:
        return dict(collections.Counter(columns[0]))
    return dict(
        collections.Counter(" ".join(bits) for bits in zip(*reversed(columns), strict=True))
    )
