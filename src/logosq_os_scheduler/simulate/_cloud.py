"""The simulated quantum cloud: device models with latency, queue, failure and calibration.

Each :class:`DeviceType` describes a family of devices (size, connectivity, how many jobs at
once and circuits per job, its job-time line, error rates, how often a job fails); a
:class:`Cloud` is a set of :class:`SimulatedDevice` drawn from the types, each with its own
calibration (error rates spread around the type's), speed, queue of other users' jobs at
the start, and possibly an outage.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from .._config import _positive_int
from .._errors import InvalidConfigError
from ..core._capabilities import BackendCapabilities, JobCost

__all__ = ["DEVICE_TYPES", "Cloud", "DeviceType", "SimulatedDevice", "make_cloud"]


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceType:
    """A family of devices.

    Attributes:
        name: The family's name.
        share: Its share of the cloud's devices.
        qubits: Qubits each has.
        all_to_all: Whether any two qubits may share a gate.
        slots: Jobs one device runs at once.
        circuits_per_job: Circuits one job may carry.
        fixed_seconds: Seconds every job costs (loading, calibration checks, result upload).
        seconds_per_shot: Seconds each shot costs.
        two_qubit_error: Typical two-qubit gate error.
        readout_error: Typical measurement error.
        job_failure_rate: Chance that a job fails transiently.
    """

    name: str
    share: float
    qubits: int
    all_to_all: bool
    slots: int
    circuits_per_job: int
    fixed_seconds: float
    seconds_per_shot: float
    two_qubit_error: float
    readout_error: float
    job_failure_rate: float = 0.01


# Shapes after public device families (sizes, connectivity and orders of magnitude of job
# overhead, shot time and error rates); the figures are models, not measurements of devices.
DEVICE_TYPES: tuple[DeviceType, ...] = (
    DeviceType("heavyhex-156", 0.20, 156, False, 1, 100, 2.0, 2.5e-4, 0.003, 0.010),
    DeviceType("heavyhex-127", 0.30, 127, False, 1, 100, 3.0, 3.0e-4, 0.008, 0.015),
    DeviceType("heavyhex-27", 0.25, 27, False, 1, 75, 2.0, 2.0e-4, 0.010, 0.020),
    DeviceType("ion-36", 0.10, 36, True, 1, 20, 5.0, 2.0e-3, 0.004, 0.005),
    DeviceType("simulator-32", 0.15, 32, True, 4, 300, 0.5, 2.0e-5, 0.0, 0.0, 0.002),
)


@dataclasses.dataclass(frozen=True, slots=True)
class SimulatedDevice:
    """One device of the cloud.

    Attributes:
        name: Its name (``family-NNNN``).
        kind: Its family's index in the cloud's types.
        caps: What the scheduler's policy sees of it.
        two_qubit_error: Its calibrated two-qubit error.
        readout_error: Its calibrated measurement error.
        speed: Its jobs take ``speed`` times the family's line (1 is nominal).
        job_failure_rate: Chance that a job fails transiently.
        busy_until: Until when other users' jobs hold it at the start.
        outage: (start, end) seconds during which it is down, or None.
    """

    name: str
    kind: int
    caps: BackendCapabilities
    two_qubit_error: float
    readout_error: float
    speed: float
    job_failure_rate: float
    busy_until: float
    outage: tuple[float, float] | None

    def job_seconds(self, circuits: int, shots: int) -> float:
        """Nominal seconds of a job (before the run's random variation)."""
        return self.caps.cost.seconds(circuits, shots)

    def fidelity(self, qubits: int, two_qubit_gates: int) -> float:
        """Estimated success probability of a circuit here: ``(1 - e2q)^gates * (1 - ero)^qubits``
        (gate and readout errors independent; idle errors left out)."""
        return (1.0 - self.two_qubit_error) ** two_qubit_gates * (
            1.0 - self.readout_error
        ) ** qubits

    def is_down(self, now: float) -> bool:
        """Whether it is in its outage at ``now``."""
        outage = self.outage
        return outage is not None and outage[0] <= now < outage[1]


@dataclasses.dataclass(frozen=True, slots=True)
class Cloud:
    """The devices, and the families they were drawn from."""

    devices: tuple[SimulatedDevice, ...]
    types: tuple[DeviceType, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.devices)

    def capacity(self, shots: float) -> float:
        """Jobs of one circuit of ``shots`` shots the whole cloud finishes a second, one
        circuit a job (the rate of a scheduler that does not batch)."""
        return sum(d.caps.max_concurrent_jobs / d.job_seconds(1, int(shots)) for d in self.devices)


def make_cloud(
    backends: int,
    *,
    types: Sequence[DeviceType] = DEVICE_TYPES,
    outage_share: float = 0.05,
    horizon: float = 3600.0,
    seed: int = 0,
) -> Cloud:
    """Draw ``backends`` devices from ``types`` by their shares.

    Args:
        backends: How many devices.
        types: The families.
        outage_share: Share of devices with one outage somewhere in ``horizon``.
        horizon: Seconds over which outages and other users' initial load are spread.
        seed: For the random draws.

    Raises:
        InvalidConfigError: If ``backends`` is not positive or no type is given.
    """
    _positive_int("backends", backends)
    if not types:
        raise InvalidConfigError("types", "needs at least one device type")
    rng = random.Random(seed)
    weights = [t.share for t in types]
    devices = []
    for i in range(backends):
        kind = rng.choices(range(len(types)), weights)[0]
        t = types[kind]
        speed = rng.uniform(0.8, 1.25)
        name = f"{t.name}-{i:04d}"
        caps = BackendCapabilities(
            name,
            t.qubits,
            all_to_all=t.all_to_all,
            max_concurrent_jobs=t.slots,
            max_circuits_per_job=t.circuits_per_job,
            error_rate=t.two_qubit_error * rng.uniform(0.7, 1.3) or None,
            cost=JobCost(
                fixed=t.fixed_seconds * speed, per_circuit=0.0, per_shot=t.seconds_per_shot * speed
            ),
        )
        outage = None
        if rng.random() < outage_share:
            start = rng.uniform(0.0, horizon)
            outage = (start, start + rng.uniform(60.0, 600.0))
        devices.append(
            SimulatedDevice(
                name=name,
                kind=kind,
                caps=caps,
                two_qubit_error=caps.error_rate or 0.0,
                readout_error=t.readout_error * rng.uniform(0.7, 1.3),
                speed=speed,
                job_failure_rate=t.job_failure_rate,
                busy_until=rng.uniform(0.0, 0.02 * horizon),
                outage=outage,
            )
        )
    description = f"{backends:,} devices of {len(types)} families, seed {seed}"
    return Cloud(tuple(devices), tuple(types), description)
