"""What a simulation reports: per policy, and each policy against ours."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._task import TaskPriority
from ..core._statistics import percentile
from ._cloud import Cloud
from ._engine import Outcome
from ._workload import Workload

__all__ = ["PolicyReport", "SimulationReport", "summarise"]


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyReport:
    """One policy's figures on the workload (times in simulated seconds).

    Attributes:
        policy: Its name.
        completed: Jobs that completed.
        failed: Jobs that ended without completing (retries spent, or no device fits).
        jct_mean, jct_p50, jct_p95, jct_p99: Job completion time, arrival to completion.
        wait_by_priority: Mean queue wait (arrival to first start) for each priority.
        wait_p95_by_priority: Its 95th percentile for each priority.
        utilisation: Share of the devices' slot time spent on these jobs until the last
            ended (0..1).
        throughput: Completed jobs per simulated second.
        fidelity_mean: Mean estimated success probability of the completed circuits, on the
            device that ran each: ``(1 - e2q)^(two-qubit gates) * (1 - e_readout)^qubits``.
        fairness: Jain's index over the users' mean slowdowns (completion time over the
            job's own service time): 1 when every user's work is slowed alike, 1/users when
            one user's is slowed and the others' are not.
        slowdown_by_user: Each user's mean slowdown.
        retries: Attempts that failed and were tried again.
        jobs_sent: Backend jobs sent (a batch counts once).
        makespan: When the last job ended.
        wall_seconds: Real seconds the simulation of this policy took.
    """

    policy: str
    completed: int
    failed: int
    jct_mean: float
    jct_p50: float
    jct_p95: float
    jct_p99: float
    wait_by_priority: Mapping[TaskPriority, float]
    wait_p95_by_priority: Mapping[TaskPriority, float]
    utilisation: float
    throughput: float
    fidelity_mean: float
    fairness: float
    slowdown_by_user: Mapping[str, float]
    retries: int
    jobs_sent: int
    makespan: float
    wall_seconds: float

    @property
    def tasks_per_second(self) -> float:
        """Simulated jobs per real second."""
        return (self.completed + self.failed) / max(self.wall_seconds, 1e-9)


@dataclasses.dataclass(frozen=True, slots=True)
class SimulationReport:
    """Every policy's :class:`PolicyReport` on one workload and cloud."""

    workload: str
    cloud: str
    tasks: int
    backends: int
    offered_load: float
    policies: tuple[PolicyReport, ...]

    def get(self, policy: str) -> PolicyReport:
        """The report of ``policy``.

        Raises:
            KeyError: If it was not run.
        """
        for p in self.policies:
            if p.policy == policy:
                return p
        raise KeyError(policy)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON): priorities by name, improvements of ours
        against each baseline included."""
        policies = []
        for p in self.policies:
            row: dict[str, Any] = {}
            for field in dataclasses.fields(p):
                value = getattr(p, field.name)
                if field.name.startswith("wait_"):
                    value = {prio.name: v for prio, v in value.items()}
                elif isinstance(value, Mapping):
                    value = dict(value)
                row[field.name] = value
            row["tasks_per_second"] = p.tasks_per_second
            policies.append(row)
        names = [p.policy for p in self.policies]
        improvements = (
            {base: self.improvements(base) for base in names if base != "logosq"}
            if "logosq" in names
            else {}
        )
        return {
            "workload": self.workload,
            "cloud": self.cloud,
            "tasks": self.tasks,
            "backends": self.backends,
            "offered_load": self.offered_load,
            "policies": policies,
            "improvements_of_logosq": improvements,
        }

    def improvements(self, baseline: str, ours: str = "logosq") -> dict[str, float]:
        """Ours against ``baseline``, in percent: negative is lower (better for times),
        positive is higher (better for utilisation, throughput, fidelity and fairness)."""
        a, b = self.get(baseline), self.get(ours)

        def change(x: float, y: float) -> float:
            return (y - x) / x * 100.0 if x else math.nan

        return {
            "jct_mean": change(a.jct_mean, b.jct_mean),
            "jct_p95": change(a.jct_p95, b.jct_p95),
            "wait_mean": change(_mean_wait(a), _mean_wait(b)),
            "utilisation": change(a.utilisation, b.utilisation),
            "throughput": change(a.throughput, b.throughput),
            "fidelity": change(a.fidelity_mean, b.fidelity_mean),
            "fairness": change(a.fairness, b.fairness),
        }

    def table(self) -> str:
        """The comparison as a Markdown table, then ours against each baseline."""
        rows: list[tuple[str, Callable[[PolicyReport], str]]] = [
            ("completed / failed", lambda p: f"{p.completed:,} / {p.failed:,}"),
            ("job completion time mean", lambda p: _dur(p.jct_mean)),
            ("job completion time p50", lambda p: _dur(p.jct_p50)),
            ("job completion time p95", lambda p: _dur(p.jct_p95)),
            ("job completion time p99", lambda p: _dur(p.jct_p99)),
        ]
        for prio in sorted(TaskPriority, reverse=True):
            rows.append(
                (
                    f"queue wait {prio.name} mean (p95)",
                    _wait_cell(prio),
                )
            )
        rows += [
            ("device utilisation", lambda p: f"{p.utilisation:.1%}"),
            ("throughput (jobs/s simulated)", lambda p: f"{p.throughput:,.2f}"),
            ("estimated fidelity, mean", lambda p: f"{p.fidelity_mean:.3f}"),
            ("fairness (Jain, user slowdowns)", lambda p: f"{p.fairness:.3f}"),
            ("retries", lambda p: f"{p.retries:,}"),
            ("backend jobs sent", lambda p: f"{p.jobs_sent:,}"),
            ("makespan", lambda p: _dur(p.makespan)),
            (
                "wall time (simulated jobs/s)",
                lambda p: f"{p.wall_seconds:.1f} s ({p.tasks_per_second:,.0f}/s)",
            ),
        ]
        head = "| | " + " | ".join(p.policy for p in self.policies) + " |"
        lines = [head, "|---" * (len(self.policies) + 1) + "|"]
        for label, fmt in rows:
            lines.append(f"| {label} | " + " | ".join(fmt(p) for p in self.policies) + " |")
        names = [p.policy for p in self.policies]
        if "logosq" in names:
            for base in names:
                if base == "logosq":
                    continue
                imp = self.improvements(base)
                lines.append("")
                lines.append(
                    f"logosq against {base}: job completion time {imp['jct_mean']:+.0f}% "
                    f"(p95 {imp['jct_p95']:+.0f}%), queue wait {imp['wait_mean']:+.0f}%, "
                    f"utilisation {imp['utilisation']:+.0f}%, throughput "
                    f"{imp['throughput']:+.0f}%, fidelity {imp['fidelity']:+.1f}%, fairness "
                    f"{imp['fairness']:+.0f}%."
                )
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str]) -> str:
        """Draw job completion time and queue wait by priority, per policy (needs
        matplotlib: the ``observability`` extra); returns the path written."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        names = [p.policy for p in self.policies]
        x = range(len(names))
        for offset, (label, attr) in enumerate(
            (("mean", "jct_mean"), ("p95", "jct_p95"), ("p99", "jct_p99"))
        ):
            ax1.bar(
                [i + (offset - 1) * 0.27 for i in x],
                [getattr(p, attr) / 60.0 for p in self.policies],
                width=0.27,
                label=label,
            )
        ax1.set_xticks(list(x), names)
        ax1.set_ylabel("minutes")
        ax1.set_title("job completion time")
        ax1.legend()
        prios = sorted(TaskPriority, reverse=True)
        width = 0.8 / len(self.policies)
        for n, p in enumerate(self.policies):
            ax2.bar(
                [i + (n - (len(self.policies) - 1) / 2) * width for i in range(len(prios))],
                [p.wait_by_priority.get(q, 0.0) / 60.0 for q in prios],
                width=width,
                label=p.policy,
            )
        ax2.set_xticks(range(len(prios)), [q.name for q in prios])
        ax2.set_ylabel("minutes")
        ax2.set_title("mean queue wait by priority")
        ax2.legend()
        fig.suptitle(f"{self.tasks:,} jobs on {self.backends:,} simulated devices")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return os.fspath(path)


def _mean_wait(p: PolicyReport) -> float:
    waits = [w for w in p.wait_by_priority.values() if not math.isnan(w)]
    return sum(waits) / len(waits) if waits else math.nan


def _dur(seconds: float) -> str:
    if seconds != seconds:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def summarise(outcome: Outcome, workload: Workload, cloud: Cloud) -> PolicyReport:
    """Turn one run's :class:`Outcome` into its :class:`PolicyReport`."""
    jobs = workload.jobs
    devices = cloud.devices
    jct: list[float] = []
    waits: dict[TaskPriority, list[float]] = {p: [] for p in TaskPriority}
    slow: dict[str, list[float]] = {}
    fidelity = 0.0
    completed = 0
    for k, j in enumerate(jobs):
        start = outcome.start[k]
        if start == start:
            waits[j.priority].append(start - j.arrival)
        if not outcome.completed[k]:
            continue
        completed += 1
        t = outcome.finish[k] - j.arrival
        jct.append(t)
        service = outcome.service[k]
        slow.setdefault(j.user, []).append(t / service if service > 0 else 1.0)
        fidelity += devices[outcome.device[k]].fidelity(j.qubits, j.two_qubit_gates)
    per_user = {u: sum(v) / len(v) for u, v in sorted(slow.items())}
    values = list(per_user.values())
    fairness = sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if values else math.nan
    makespan = max(outcome.makespan, 1e-9)
    slots = sum(d.caps.max_concurrent_jobs for d in devices)
    return PolicyReport(
        policy=outcome.policy,
        completed=completed,
        failed=len(jobs) - completed,
        jct_mean=sum(jct) / len(jct) if jct else math.nan,
        jct_p50=_pct(jct, 50),
        jct_p95=_pct(jct, 95),
        jct_p99=_pct(jct, 99),
        wait_by_priority={p: sum(w) / len(w) for p, w in waits.items() if w},
        wait_p95_by_priority={p: _pct(w, 95) for p, w in waits.items() if w},
        utilisation=min(1.0, outcome.busy_seconds / (slots * makespan)),
        throughput=completed / makespan,
        fidelity_mean=fidelity / completed if completed else math.nan,
        fairness=fairness,
        slowdown_by_user=per_user,
        retries=outcome.retries,
        jobs_sent=outcome.jobs_sent,
        makespan=outcome.makespan,
        wall_seconds=outcome.wall_seconds,
    )


def _pct(values: Sequence[float], q: float) -> float:
    found = percentile(values, q)
    return math.nan if found is None else found


def _wait_cell(prio: TaskPriority) -> Callable[[PolicyReport], str]:
    def cell(p: PolicyReport) -> str:
        mean = _dur(p.wait_by_priority.get(prio, math.nan))
        return f"{mean} ({_dur(p.wait_p95_by_priority.get(prio, math.nan))})"

    return cell
