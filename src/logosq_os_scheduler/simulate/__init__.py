"""``logosq simulate``: this scheduler's policy under virtual time on a simulated quantum cloud.

The same core policy the runtime carries out (priorities with aging, routing by expected
completion, batching, work stealing, retries, circuit breakers) runs against simulated
devices (latency, queues of other users, failures, outages, calibration), on a workload from
a generator or a trace file, beside two baselines: first-come-first-served and IBM's
least-busy rule. Each reports job completion time, queue wait by priority, utilisation,
estimated fidelity and fairness between users. Nothing here needs more than the standard
library; the plot needs matplotlib.

Example:
    >>> from logosq_os_scheduler.simulate import simulate
    >>> report = simulate(tasks=2_000, backends=20, load=1.0, seed=1)
    >>> print(report.table())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

from .._config import SchedulerConfig
from .._errors import InvalidConfigError
from ._cloud import DEVICE_TYPES, Cloud, DeviceType, SimulatedDevice, make_cloud
from ._engine import DEFAULT_POLICIES, POLICIES, Outcome, run_policy, simulation_config
from ._report import PolicyReport, SimulationReport, summarise
from ._workload import Job, Workload, generate_workload, read_trace, write_trace

__all__ = [
    "DEVICE_TYPES",
    "DEFAULT_POLICIES",
    "POLICIES",
    "Cloud",
    "DeviceType",
    "Job",
    "Outcome",
    "PolicyReport",
    "SimulatedDevice",
    "SimulationReport",
    "Workload",
    "generate_workload",
    "make_cloud",
    "read_trace",
    "run_policy",
    "simulate",
    "simulation_config",
    "workload_for",
    "write_trace",
]

_MEAN_SHOTS = 3750.0  # the generator's shots, on average


def workload_for(
    cloud: Cloud, *, tasks: int = 100_000, load: float = 1.0, users: int = 20, seed: int = 0
) -> Workload:
    """A generated workload offering ``load`` times ``cloud``'s capacity at one circuit a
    job (see :func:`generate_workload` for its mix of users, priorities, sizes and shots).

    Raises:
        InvalidConfigError: If a number is out of range.
    """
    if not (isinstance(load, (int, float)) and 0 < load < float("inf")):
        raise InvalidConfigError("load", f"needs a positive multiple of capacity, got {load!r}")
    rate = load * cloud.capacity(_MEAN_SHOTS)
    return generate_workload(tasks, rate=rate, users=users, seed=seed)


def simulate(
    *,
    tasks: int = 100_000,
    backends: int = 100,
    users: int = 20,
    load: float = 1.0,
    seed: int = 0,
    workload: Workload | None = None,
    cloud: Cloud | None = None,
    policies: Sequence[str] = DEFAULT_POLICIES,
    config: SchedulerConfig | None = None,
) -> SimulationReport:
    """Run every policy on one workload and one cloud and report them side by side.

    Args:
        tasks: Jobs to generate (ignored when ``workload`` is given).
        backends: Devices to draw (ignored when ``cloud`` is given).
        users: Users submitting the generated jobs (one floods the queue).
        load: Offered load: arrivals as a multiple of what the cloud finishes running one
            circuit per job (1.0 saturates a scheduler that does not batch).
        seed: For every random draw: the same seed gives the same report.
        workload: Jobs to run instead of generated ones (e.g. :func:`read_trace`).
        cloud: Devices to run on instead of drawn ones (:func:`make_cloud`).
        policies: Which of :data:`POLICIES` to run (default :data:`DEFAULT_POLICIES`: all
            but ``logosq-fair``, ours with fair share between the workload's users).
        config: Ours' settings (default :func:`simulation_config`).

    Raises:
        InvalidConfigError: If a policy is unknown or a number is out of range.
    """
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise InvalidConfigError(
            "policies", f"unknown {unknown!r}; choose from {', '.join(POLICIES)}"
        )
    if cloud is None:
        cloud = make_cloud(backends, seed=seed)
    if workload is None:
        workload = workload_for(cloud, tasks=tasks, load=load, users=users, seed=seed)
        offered = load
    else:
        span = workload.jobs[-1].arrival if workload.jobs else 0.0
        capacity = cloud.capacity(_MEAN_SHOTS)
        offered = (len(workload) / span / capacity) if span > 0 else float("inf")
    reports = tuple(
        summarise(run_policy(p, cloud, workload, seed=seed, config=config), workload, cloud)
        for p in policies
    )
    return SimulationReport(
        workload=workload.description,
        cloud=cloud.description,
        tasks=len(workload),
        backends=len(cloud),
        offered_load=offered,
        policies=reports,
    )
