"""Workloads for the simulator: generated (arrivals, priorities, users, circuit sizes, shots)
or read from a trace file (CSV), and written back to one."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
from typing import Any

from .._config import _positive_int
from .._errors import InvalidConfigError
from .._task import TaskPriority

__all__ = ["Job", "Workload", "generate_workload", "read_trace", "write_trace"]

TRACE_FIELDS = ("arrival", "user", "priority", "qubits", "two_qubit_gates", "shots", "all_to_all")


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One circuit to run, as a user submits it.

    Attributes:
        arrival: Seconds from the start of the run.
        user: Who submitted it.
        priority: Its priority.
        qubits: Qubits the circuit uses.
        two_qubit_gates: Its two-qubit gates (for the fidelity estimate).
        shots: Shots asked for.
        all_to_all: Whether its author says it needs all-to-all connectivity.
    """

    arrival: float
    user: str
    priority: TaskPriority
    qubits: int
    two_qubit_gates: int
    shots: int
    all_to_all: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    """Jobs in arrival order.

    Attributes:
        jobs: The jobs, sorted by arrival.
        description: How it was made (for reports).
    """

    jobs: tuple[Job, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.jobs)

    @property
    def users(self) -> tuple[str, ...]:
        """The users, sorted."""
        return tuple(sorted({j.user for j in self.jobs}))


# (weight, priority): CRITICAL is rare, most work is NORMAL.
_PRIORITY_MIX = (
    (0.01, TaskPriority.CRITICAL),
    (0.09, TaskPriority.HIGH),
    (0.60, TaskPriority.NORMAL),
    (0.25, TaskPriority.LOW),
    (0.05, TaskPriority.IDLE),
)
# (weight, lowest, highest qubits): mostly small circuits, a tail of wide ones.
_SIZE_MIX = ((0.50, 2, 5), (0.35, 6, 20), (0.13, 21, 100), (0.02, 101, 150))
_SHOTS = (1000, 2000, 4000, 8000)


def generate_workload(
    tasks: int,
    *,
    rate: float,
    users: int = 20,
    heavy_share: float = 0.4,
    all_to_all_share: float = 0.05,
    seed: int = 0,
) -> Workload:
    """A Poisson stream of ``tasks`` jobs at ``rate`` jobs a second.

    Args:
        tasks: How many jobs.
        rate: Mean arrivals per second.
        users: How many users submit; ``user0`` floods the queue with ``heavy_share`` of all
            jobs, the others share the rest evenly.
        heavy_share: The flooding user's share of the jobs.
        all_to_all_share: Share of circuits whose authors ask for all-to-all connectivity.
        seed: For the random draws.

    Raises:
        InvalidConfigError: If a count, rate or share is out of range.
    """
    _positive_int("tasks", tasks)
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise InvalidConfigError("rate", f"needs a positive number of jobs a second, got {rate!r}")
    _positive_int("users", users)
    for name, share in (("heavy_share", heavy_share), ("all_to_all_share", all_to_all_share)):
        if not 0.0 <= share <= 1.0:
            raise InvalidConfigError(name, f"is a share in [0, 1], got {share!r}")
    rng = random.Random(seed)
    priorities = [p for _, p in _PRIORITY_MIX]
    p_weights = [w for w, _ in _PRIORITY_MIX]
    size_weights = [w for w, _, _ in _SIZE_MIX]
    names = [f"user{i}" for i in range(users)]
    t = 0.0
    jobs = []
    expovariate, choices, randint, rand = rng.expovariate, rng.choices, rng.randint, rng.random
    for _ in range(tasks):
        t += expovariate(rate)
        heavy = users == 1 or rand() < heavy_share
        user = names[0] if heavy else names[randint(1, users - 1)]
        _, low, high = choices(_SIZE_MIX, size_weights)[0]
        qubits = randint(low, high)
        jobs.append(
            Job(
                arrival=t,
                user=user,
                priority=choices(priorities, p_weights)[0],
                qubits=qubits,
                two_qubit_gates=qubits * randint(1, 10),
                shots=_SHOTS[randint(0, len(_SHOTS) - 1)],
                all_to_all=qubits <= 36 and rand() < all_to_all_share,
            )
        )
    description = (
        f"{tasks:,} jobs, Poisson arrivals at {rate:,.1f}/s, {users} users "
        f"(user0 {heavy_share:.0%} of the jobs), seed {seed}"
    )
    return Workload(tuple(jobs), description)


def _bad_field(where: str, row: dict[str, str], field: str, wanted: str) -> InvalidConfigError:
    return InvalidConfigError(
        "trace", f"{where}, field {field!r}: {wanted}, got {row.get(field)!r}"
    )


def _number(
    where: str, row: dict[str, str], field: str, kind: type[float], default: str | None = None
) -> Any:
    """The field as ``kind`` (int or float), or InvalidConfigError naming it."""
    raw = row.get(field) or default
    try:
        if raw is not None:
            return kind(raw)
    except ValueError:
        pass
    raise _bad_field(where, row, field, "an integer" if kind is int else "a number")


def write_trace(workload: Workload, path: str | os.PathLike[str]) -> None:
    """Write ``workload`` as a CSV trace (header: ``TRACE_FIELDS``)."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(TRACE_FIELDS)
        for j in workload.jobs:
            out.writerow(
                (
                    repr(j.arrival),
                    j.user,
                    j.priority.name,
                    j.qubits,
                    j.two_qubit_gates,
                    j.shots,
                    int(j.all_to_all),
                )
            )


def read_trace(path: str | os.PathLike[str]) -> Workload:
    """Read a CSV trace: a header row naming at least ``arrival`` (seconds), ``qubits`` and
    ``shots``; optional ``user`` (default ``user0``), ``priority`` (a name such as ``HIGH``;
    default NORMAL), ``two_qubit_gates`` (default ``qubits``) and ``all_to_all`` (0 or 1).

    Raises:
        InvalidConfigError: Naming the file, line and field of the first bad value.
    """
    jobs: list[Job] = []
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        missing = {"arrival", "qubits", "shots"} - set(rows.fieldnames or ())
        if missing:
            raise InvalidConfigError(
                "trace", f"{os.fspath(path)}: the header lacks {', '.join(sorted(missing))}"
            )
        for line, row in enumerate(rows, start=2):
            where = f"{os.fspath(path)} line {line}"
            qubits = _number(where, row, "qubits", int)
            name = (row.get("priority") or "NORMAL").strip().upper()
            if name not in TaskPriority.__members__:
                raise _bad_field(
                    where,
                    row,
                    "priority",
                    "one of " + ", ".join(p.name for p in sorted(TaskPriority, reverse=True)),
                )
            job = Job(
                arrival=_number(where, row, "arrival", float),
                user=row.get("user") or "user0",
                priority=TaskPriority[name],
                qubits=qubits,
                two_qubit_gates=_number(where, row, "two_qubit_gates", int, str(qubits)),
                shots=_number(where, row, "shots", int),
                all_to_all=(row.get("all_to_all") or "0").strip() in ("1", "true", "True"),
            )
            if qubits < 1 or job.shots < 1 or not math.isfinite(job.arrival) or job.arrival < 0:
                raise InvalidConfigError(
                    "trace",
                    f"{os.fspath(path)} line {line}: qubits and shots must be positive and "
                    f"arrival a time >= 0, got {dict(row)!r}",
                )
            jobs.append(job)
    if not jobs:
        raise InvalidConfigError("trace", f"{os.fspath(path)} holds no jobs, only a header")
    jobs.sort(key=lambda j: j.arrival)
    return Workload(tuple(jobs), f"{len(jobs):,} jobs from {os.fspath(path)}")
