"""The discrete-event engine: one workload, one cloud, one policy, virtual time.

Three policies run on the same workload and the same cloud:

* ``fcfs``: one global queue in arrival order, no priorities, one circuit per job; a device
  whose slot frees takes the earliest waiting job it can run.
* ``least-busy``: IBM's ``least_busy`` rule: at arrival, the operational device that can run
  the circuit with the fewest jobs waiting or running; a FIFO queue per device, one circuit
  per job.
* ``logosq``: this scheduler's own policy, driven as the asyncio runtime drives it: the
  core's pools (five priorities with aging), routing by least expected completion
  (:func:`~logosq_os_scheduler.core._routing.decide_route`'s fallback, through an index that
  picks what it picks), batching by :meth:`QuantumPolicy.next_job` and
  :meth:`SchedulerCore.take_batch`, work stealing by :meth:`QuantumPolicy.steal_for`,
  failures by :meth:`QuantumPolicy.job_failed` and :meth:`QuantumPolicy.decide_retry`, and
  each device's circuit breaker, which learns of outages from failed jobs.

The baselines see a device's outage as the provider's status says (they skip a device while
it is down); ours learns of it only from its jobs failing, and probes it to come back.
"""

from __future__ import annotations

import collections
import heapq
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._clock import ManualClock
from .._config import FairShare, SchedulerConfig
from .._errors import BackendUnavailableError, NoRouteError, TransientBackendError
from .._task import Task, TaskStatus
from ..core._backends import BackendState
from ..core._breaker import BreakerState, CircuitBreaker
from ..core._capabilities import CircuitRequirements
from ..core._core import SchedulerCore
from ..core._policy import Hold, QuantumPolicy, RetryAction
from ..core._routing import BackendView, RoutingDecision, decide_route, expected_completion
from ._cloud import Cloud, SimulatedDevice
from ._workload import Job, Workload

__all__ = ["DEFAULT_POLICIES", "POLICIES", "Outcome", "run_policy", "simulation_config"]

_COMPLETED = TaskStatus.COMPLETED
_FAILED = TaskStatus.FAILED
_RUNNING = TaskStatus.RUNNING
# Spread of a job's real time around its nominal time (lognormal sigma).
_JITTER = 0.1
# A job sent to a device that is down fails after this long (the provider refuses it).
_REFUSAL_SECONDS = 1.0
_RETRIES = 3


def simulation_config() -> SchedulerConfig:
    """The scheduler settings the simulation runs ours with: a cloud's time scale (jobs of
    seconds, waits of minutes to hours), so the batch window is a second, aging lifts a level
    every ten minutes, back-off runs from 5 s to 2 min and a tripped device is probed after
    five minutes."""
    return SchedulerConfig(
        batch_window=1.0,
        aging_threshold=600.0,
        max_retries=_RETRIES,
        retry_backoff=5.0,
        retry_backoff_max=120.0,
        breaker_threshold=3,
        breaker_cooldown=300.0,
    )


class Outcome:
    """What happened to each job of a run, by index, and the run's own figures.

    Attributes:
        policy: The policy's name.
        start: When each job first started (nan if never).
        finish: When each job ended.
        service: Seconds of the job (batch) that completed it, per circuit it carried.
        device: Index of the device that completed it (-1 if none).
        completed: Whether each job completed.
        retries: Attempts that failed and were tried again.
        busy_seconds: Slot-seconds the devices spent on this policy's jobs.
        makespan: When the last job ended.
        wall_seconds: Real seconds the run took.
        jobs_sent: Backend jobs sent (a job carries one circuit or a batch).
    """

    __slots__ = (
        "policy",
        "start",
        "finish",
        "service",
        "device",
        "completed",
        "retries",
        "busy_seconds",
        "makespan",
        "wall_seconds",
        "jobs_sent",
    )

    def __init__(self, policy: str, n: int) -> None:
        nan = math.nan
        self.policy = policy
        self.start = [nan] * n
        self.finish = [nan] * n
        self.service = [nan] * n
        self.device = [-1] * n
        self.completed = [False] * n
        self.retries = 0
        self.busy_seconds = 0.0
        self.makespan = 0.0
        self.wall_seconds = 0.0
        self.jobs_sent = 0


class _Events:
    """A time-ordered heap of (when, seq, kind, payload); arrivals are merged in separately."""

    __slots__ = ("heap", "seq")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0

    def push(self, when: float, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, kind, payload))


_JOB_DONE, _TIMER = 0, 1


def _job_time(rng: random.Random, device: SimulatedDevice, circuits: int, shots: int) -> float:
    return device.job_seconds(circuits, shots) * rng.lognormvariate(0.0, _JITTER)


class _Families:
    """The cloud's devices by family, and which families can run a circuit.

    The devices of one family are alike in size and connectivity, so what one member can run
    (:meth:`BackendCapabilities.check_requirements`) every member can: the answer is kept per
    (width, all-to-all) and a policy looks at families, not at every device.
    """

    def __init__(self, cloud: Cloud) -> None:
        self.devices = cloud.devices
        self.members: list[list[int]] = [[] for _ in cloud.types]
        for i, d in enumerate(cloud.devices):
            self.members[d.kind].append(i)
        self._fitting: dict[tuple[int, bool], list[int]] = {}

    def fitting(self, qubits: int, all_to_all: bool) -> list[int]:
        """The families (by index) whose devices can run a circuit of ``qubits`` qubits."""
        key = (qubits, all_to_all)
        found = self._fitting.get(key)
        if found is None:
            req = CircuitRequirements(qubits, requires_all_to_all=all_to_all)
            found = [
                kind
                for kind, members in enumerate(self.members)
                if members and self.devices[members[0]].caps.check_requirements(req) is None
            ]
            self._fitting[key] = found
        return found


class _Engine:
    """What every policy's engine has: the jobs, their outcome, the events, and :meth:`run`."""

    jobs: Sequence[Job]
    out: Outcome
    events: _Events

    def submit(self, k: int, now: float) -> None:
        raise NotImplementedError

    def on_event(self, now: float, kind: int, payload: Any) -> None:
        raise NotImplementedError

    def run(self) -> Outcome:
        """Run every arrival and event in time order; the outcome, with its wall time."""
        t0 = time.perf_counter()
        _drive(self.events, self.jobs, self.submit, self.on_event)
        self.out.wall_seconds = time.perf_counter() - t0
        self.out.makespan = max((f for f in self.out.finish if f == f), default=0.0)
        return self.out


# -- the baselines --------------------------------------------------------------------------


class _Baseline(_Engine):
    """fcfs or least-busy (see the module docstring).

    Both find their device through a heap per device family (the devices of one family are
    alike in size and connectivity), so a decision costs a few heap operations, not a scan
    of the cloud: fcfs keeps its idle devices by index (it takes the first that fits),
    least-busy its devices by (jobs per slot, name) with stale entries skipped by version.
    """

    def __init__(self, name: str, cloud: Cloud, workload: Workload, seed: int) -> None:
        self.fcfs = name == "fcfs"
        self.jobs = workload.jobs
        self.devices = cloud.devices
        self.out = Outcome(name, len(self.jobs))
        self.rng = random.Random(seed)
        self.events = _Events()
        devices = self.devices
        n = len(devices)
        kinds = len(cloud.types)
        self.free = [d.caps.max_concurrent_jobs for d in devices]
        self.pending = [0] * n  # least-busy: jobs waiting or running, per device
        self.queues: list[collections.deque[int]] = [collections.deque() for _ in devices]
        # fcfs's one queue, in arrival order, kept as one queue per set of families that can
        # run a job, so that a device looks only at the heads of the queues it can serve.
        self.waiting: dict[tuple[int, ...], collections.deque[int]] = {}
        self.waiting_for: list[list[collections.deque[int]]] = [[] for _ in range(kinds)]
        self.tries = [0] * len(self.jobs)
        self.families = _Families(cloud)
        # fcfs: per family, a heap of devices that may have a free slot (in_idle says which
        # are in it; an entry with no free slot or a device that is down is dropped lazily).
        self.idle: list[list[int]] = [[] for _ in range(kinds)]
        self.in_idle = [False] * n
        # least-busy: per family, a heap of (jobs per slot, name, device, version).
        self.version = [0] * n
        self.load: list[list[tuple[float, str, int, int]]] = [[] for _ in range(kinds)]
        # Other users' jobs hold each device until busy_until.
        for i, d in enumerate(devices):
            if d.busy_until > 0:
                self.free[i] = 0
                self.events.push(d.busy_until, _TIMER, ("external", i))
            if d.outage is not None:  # the provider's status says when it is back
                self.events.push(d.outage[1], _TIMER, ("up", i))
            self.mark(i)

    def mark(self, i: int) -> None:
        """Device i's free slots or load changed: update its family's heap."""
        d = self.devices[i]
        if self.fcfs:
            if self.free[i] > 0 and not self.in_idle[i]:
                self.in_idle[i] = True
                heapq.heappush(self.idle[d.kind], i)
            return
        v = self.version[i] = self.version[i] + 1
        key = self.pending[i] / d.caps.max_concurrent_jobs
        heapq.heappush(self.load[d.kind], (key, d.name, i, v))

    def first_idle(self, kinds: list[int], now: float) -> int:
        """fcfs: the lowest-numbered device of ``kinds`` with a free slot, up, or -1."""
        best = -1
        free, in_idle, devices = self.free, self.in_idle, self.devices
        for kind in kinds:
            heap = self.idle[kind]
            while heap and (free[heap[0]] <= 0 or devices[heap[0]].is_down(now)):
                in_idle[heapq.heappop(heap)] = False  # "up" and slot releases re-mark it
            if heap and (best < 0 or heap[0] < best):
                best = heap[0]
        return best

    def least_busy(self, kinds: list[int], now: float) -> int:
        """least-busy: the device of ``kinds`` that is up with the fewest jobs per slot (ties
        by name), or -1."""
        best: tuple[float, str, int, int] | None = None
        version, devices = self.version, self.devices
        for kind in kinds:
            heap = self.load[kind]
            down = []
            while heap:
                top = heap[0]
                if top[3] != version[top[2]]:
                    heapq.heappop(heap)
                elif devices[top[2]].is_down(now):
                    down.append(heapq.heappop(heap))
                else:
                    if best is None or top[:2] < best[:2]:
                        best = top
                    break
            for entry in down:
                heapq.heappush(heap, entry)
        return -1 if best is None else best[2]

    def start(self, i: int, k: int, now: float) -> None:
        d = self.devices[i]
        out = self.out
        self.free[i] -= 1
        if out.start[k] != out.start[k]:  # nan: its first start
            out.start[k] = now
        out.jobs_sent += 1
        if d.is_down(now):
            self.events.push(now + _REFUSAL_SECONDS, _JOB_DONE, (i, k, now, False))
            return
        seconds = _job_time(self.rng, d, 1, self.jobs[k].shots)
        ok = self.rng.random() >= d.job_failure_rate
        self.events.push(now + seconds, _JOB_DONE, (i, k, now, ok))

    def fill(self, i: int, now: float) -> None:
        """Device ``i`` may have a free slot: give it waiting work."""
        d = self.devices[i]
        if d.is_down(now):
            return
        free = self.free
        if self.fcfs:
            queues = self.waiting_for[d.kind]
            while free[i] > 0:
                first: collections.deque[int] | None = None
                for q in queues:  # the earliest arrival this device can run
                    if q and (first is None or q[0] < first[0]):
                        first = q
                if first is None:
                    break
                self.start(i, first.popleft(), now)
            self.mark(i)
        else:
            q = self.queues[i]
            while free[i] > 0 and q:
                self.start(i, q.popleft(), now)

    def submit(self, k: int, now: float) -> None:
        j = self.jobs[k]
        kinds = self.families.fitting(j.qubits, j.all_to_all)
        if not kinds:
            self.out.finish[k] = now  # no device can run it: it fails at once
            return
        if self.fcfs:
            i = self.first_idle(kinds, now)
            if i >= 0:
                self.start(i, k, now)
            else:
                self.wait(k, kinds, left=False)
            return
        best = self.least_busy(kinds, now)
        if best < 0:
            best = self.families.members[kinds[0]][0]  # all that fit are down: wait there
        self.pending[best] += 1
        self.mark(best)
        self.queues[best].append(k)
        self.fill(best, now)

    def on_event(self, now: float, kind: int, payload: Any) -> None:
        if kind == _TIMER:
            what, i = payload
            if what == "external":  # other users' jobs let the device go
                self.free[i] = self.devices[i].caps.max_concurrent_jobs
            self.fill(i, now)
            return
        i, k, started, ok = payload
        out = self.out
        self.free[i] += 1
        out.busy_seconds += now - started
        if ok:
            out.finish[k] = now
            out.service[k] = now - started
            out.device[k] = i
            out.completed[k] = True
            self.job_left(i)
        else:
            self.tries[k] += 1
            if self.tries[k] > _RETRIES:
                out.finish[k] = now
                self.job_left(i)
            else:
                out.retries += 1
                if self.fcfs:  # it keeps its place at the head
                    j = self.jobs[k]
                    self.wait(k, self.families.fitting(j.qubits, j.all_to_all), left=True)
                else:
                    self.queues[i].appendleft(k)  # least-busy retries where it was sent
        self.fill(i, now)

    def wait(self, k: int, kinds: list[int], *, left: bool) -> None:
        """fcfs: job k waits in the queue of the families that can run it."""
        key = tuple(kinds)
        q = self.waiting.get(key)
        if q is None:
            q = self.waiting[key] = collections.deque()
            for kind in kinds:
                self.waiting_for[kind].append(q)
        if left:
            q.appendleft(k)
        else:
            q.append(k)

    def job_left(self, i: int) -> None:
        if not self.fcfs:
            self.pending[i] -= 1
            self.mark(i)


# -- ours -----------------------------------------------------------------------------------


class _Ours(_Engine):
    """This scheduler's policy (see the module docstring)."""

    def __init__(
        self,
        cloud: Cloud,
        workload: Workload,
        seed: int,
        config: SchedulerConfig,
        *,
        name: str = "logosq",
    ) -> None:
        self.jobs = workload.jobs
        self.devices = cloud.devices
        self.out = Outcome(name, len(self.jobs))
        self.rng = random.Random(seed)
        self.events = _Events()
        self.clock = ManualClock()
        core = self.core = SchedulerCore(config, self.clock)
        self.policy = QuantumPolicy(core, random.Random(seed + 1))
        states: list[BackendState] = []
        self.states = states
        for d in self.devices:
            pool = core.add_pool(d.name, d.caps.max_concurrent_jobs, direct=False)
            breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown)
            states.append(BackendState(d.name, d.caps, pool, breaker))
        self.index_of = {d.name: i for i, d in enumerate(self.devices)}
        # Other users' jobs hold each device's slots until busy_until.
        for i, d in enumerate(self.devices):
            if d.busy_until > 0:
                core.occupy(states[i].pool, states[i].pool.capacity)
                self.events.push(d.busy_until, _TIMER, ("external", i))
        self.hold_until = [math.inf] * len(states)
        self.probing = [False] * len(states)
        self.index = _RouteIndex(self.states, _Families(cloud))
        self.job_index: dict[int, int] = {}  # task_id -> job index
        self.task_templates: dict[tuple[int, bool, int, int], Any] = {}
        self.queue_heap: list[tuple[int, int, int]] = []  # (-queued, device, version)
        self.queue_version = [0] * len(states)

    # -- arrivals ----------------------------------------------------------------------------

    def submit(self, k: int, now: float) -> None:
        j = self.jobs[k]
        clock = self.clock
        if now > clock._now:
            clock.set(now)
        builder = (
            Task.quantum(j.user)
            .with_circuit(_Shape(j.qubits))
            .with_shots(j.shots)
            .with_priority(j.priority)
        )
        if self.core.fair is not None:
            builder.with_user(j.user)
        task = builder.build()
        task.requirements = CircuitRequirements(j.qubits, requires_all_to_all=j.all_to_all)
        self.job_index[task.task_id] = k
        try:
            target = self.route(task, None, now)
        except NoRouteError:
            self.out.finish[k] = now
            return
        state = self.states[target]
        self.core.admit(task, state.pool, now)
        self.launch(target, now)

    def route(self, task: Task[Any], exclude: int | None, now: float) -> int:
        """The device decide_route's fallback picks (least expected completion, ties by
        name), found through the index; with ``exclude`` in rotation, by decide_route."""
        if exclude is not None and self.states[exclude].in_rotation(now):
            views = [self.index.view(i, now) for i in range(len(self.states))]
            decision = decide_route(
                task, task.requirements, (), views, exclude=frozenset({self.devices[exclude].name})
            )
            task.routing = decision
            return self.index_of[decision.backend]
        return self.index.best(task.requirements, task.shots, now)

    # -- devices -----------------------------------------------------------------------------

    def changed(self, i: int) -> None:
        """Device i's queue, load or rotation changed: refresh what routing and stealing see."""
        self.index.update(i, self.clock._now)
        n = len(self.states[i].pool.queue)
        if n >= 2:
            v = self.queue_version[i] = self.queue_version[i] + 1
            heapq.heappush(self.queue_heap, (-n, i, v))

    def launch(self, i: int, now: float) -> None:
        """Start the jobs the policy forms on device i, or hold a partial batch; then refresh
        what routing and stealing see of it."""
        state = self.states[i]
        pool = state.pool
        core = self.core
        policy = self.policy
        one = (state,)
        while pool.busy < pool.capacity and pool.queue:
            step = policy.next_job(one, now, _NO_HELD)
            if step is None:
                break
            if isinstance(step, Hold):
                if step.until < self.hold_until[i]:
                    self.hold_until[i] = step.until
                    self.events.push(step.until, _TIMER, ("hold", i))
                break
            batch = core.take_batch(pool, now, step.limit)
            if not batch:
                break
            self.send(i, batch, now)
        self.changed(i)

    def send(self, i: int, batch: list[Task[Any]], now: float) -> None:
        d = self.devices[i]
        out = self.out
        out.jobs_sent += 1
        start = out.start
        job_index = self.job_index
        for t in batch:
            k = job_index[t.task_id]
            if start[k] != start[k]:
                start[k] = now
        if d.is_down(now):
            error: BaseException | None = BackendUnavailableError(d.name, "device is down")
            seconds = _REFUSAL_SECONDS
        else:
            seconds = _job_time(self.rng, d, len(batch), sum(t.shots for t in batch))
            error = None
            if self.rng.random() < d.job_failure_rate:
                error = TransientBackendError(d.name, "job failed")
        self.events.push(now + seconds, _JOB_DONE, (i, batch, now, error))

    def on_event(self, now: float, kind: int, payload: Any) -> None:
        clock = self.clock
        if now > clock._now:
            clock.set(now)
        if kind == _JOB_DONE:
            self.job_done(now, *payload)
            return
        what, i = payload[0], payload[1]
        if what == "hold":
            if self.hold_until[i] <= now:
                self.hold_until[i] = math.inf
            self.launch(i, now)
        elif what == "external":
            pool = self.states[i].pool
            for _ in range(pool.busy):
                self.core.release(pool, None, now)
            self.launch(i, now)
        elif what == "requeue":
            task, target = payload[2], payload[1]
            if task.status is _RUNNING:
                self.core.requeue(task, self.states[target].pool, now)
                self.launch(target, now)
        elif what == "probe":
            self.probe(i, now)

    def job_done(
        self, now: float, i: int, batch: list[Task[Any]], started: float, error: Any
    ) -> None:
        state = self.states[i]
        core = self.core
        out = self.out
        core.job_done(state.pool, len(batch), started, now)
        state.record_job(len(batch), now - started)
        out.busy_seconds += now - started
        job_index = self.job_index
        if error is None:
            state.breaker.record_success()
            per_circuit = (now - started) / len(batch)
            finish, service, device, completed = out.finish, out.service, out.device, out.completed
            for t in batch:
                core.transition(t, _COMPLETED, now)
                k = job_index.pop(t.task_id)
                finish[k] = now
                service[k] = per_circuit
                device[k] = i
                completed[k] = True
        else:
            opened = self.policy.job_failed(state, error, now)
            if opened is not None:
                self.breaker_opened(i, now)
            moved = isinstance(error, BackendUnavailableError)
            for t in batch:
                self.attempt_failed(t, i, error, moved, now)
        self.launch(i, now)
        pool = state.pool
        if not pool.queue and pool.busy < pool.capacity:
            self.steal(i, now)

    def attempt_failed(
        self, task: Task[Any], i: int, error: BaseException, moved: bool, now: float
    ) -> None:
        core = self.core
        state = self.states[i]
        decision = self.policy.decide_retry(task, state, error, now, moved=moved)
        if decision.action is RetryAction.FAIL:
            task.error = decision.error
            core.transition(task, _FAILED, now)
            self.out.finish[self.job_index.pop(task.task_id)] = now
            return
        self.out.retries += 1
        target = i
        if decision.reroute:
            try:
                target = self.route(task, i, now)
            except NoRouteError:
                target = i
        if target != i or decision.delay <= 0:
            core.requeue(task, self.states[target].pool, now)
            self.launch(target, now)
            return
        self.events.push(now + decision.delay, _TIMER, ("requeue", i, task))

    def breaker_opened(self, i: int, now: float) -> None:
        """Device i left rotation: its waiting work moves, and a probe is due."""
        state = self.states[i]
        self.index.update(i, now)
        plan = self.policy.plan_evacuation(state, lambda task: self._route_decision(task, i, now))
        for task, decision in plan.moves:
            target = self.index_of[decision.backend]
            self.core.move(task, self.states[target].pool)
            self.launch(target, now)
        self.changed(i)
        if not self.probing[i]:
            due = state.breaker.probe_due_at()
            if due is not None:
                self.probing[i] = True
                self.events.push(max(due, now), _TIMER, ("probe", i))

    def _route_decision(self, task: Task[Any], exclude: int, now: float) -> RoutingDecision:
        target = self.route(task, exclude, now)
        name = self.devices[target].name
        return RoutingDecision(name, "fallback", None, {}, "evacuated", None)

    def probe(self, i: int, now: float) -> None:
        self.probing[i] = False
        state = self.states[i]
        healthy = not self.devices[i].is_down(now)
        if state.breaker.probe_result(healthy, now) is BreakerState.CLOSED:
            self.launch(i, now)
        else:
            self.breaker_opened(i, now)

    def steal(self, i: int, now: float) -> None:
        """Device i is idle: take queued work from the longest queues that it finishes sooner."""
        heap = self.queue_heap
        versions = self.queue_version
        states = self.states
        donors: list[BackendState] = []
        seen: list[tuple[int, int, int]] = []
        while heap and len(donors) < 4:
            entry = heapq.heappop(heap)
            _, d, v = entry
            if v != versions[d] or d == i:
                if d == i and v == versions[d]:
                    seen.append(entry)
                continue
            seen.append(entry)
            donors.append(states[d])
        for entry in seen:
            heapq.heappush(heap, entry)
        if not donors:
            return
        plan = self.policy.steal_for(states[i], donors, now)
        if plan is None:
            return
        self.policy.steal(plan)
        self.changed(self.index_of[plan.donor.name])
        self.launch(i, now)


_NO_HELD: set[str] = set()


class _Shape:
    """A circuit known by its width alone (the simulation runs no gates)."""

    __slots__ = ("num_qubits",)

    def __init__(self, num_qubits: int) -> None:
        self.num_qubits = num_qubits


class _RouteIndex:
    """The device :func:`decide_route`'s fallback would choose, without scanning them all.

    For each device family and each shots value seen, a heap of (expected completion, name,
    version) over its devices in rotation; a device whose state changed gets a new entry and
    its old ones go stale (by version). A query looks at the top of the heap of each family
    that can run the circuit: the least expected completion, ties by name, as decide_route.
    """

    def __init__(self, states: list[BackendState], families: _Families) -> None:
        self.states = states
        self.devices = families.devices
        self.families = families
        self.kinds = len(families.members)
        self.version = [0] * len(states)
        self.shots: list[int] = []
        # heaps[shots position][kind]
        self.heaps: list[list[list[tuple[float, str, int, int]]]] = []

    def view(self, i: int, now: float) -> BackendView:
        s = self.states[i]
        pool = s.pool
        return BackendView(
            s.name, s.caps, len(pool.queue), pool.busy, s.in_rotation(now), s.per_circuit
        )

    def _add_shots(self, shots: int, now: float) -> int:
        self.shots.append(shots)
        heaps: list[list[tuple[float, str, int, int]]] = [[] for _ in range(self.kinds)]
        for i, s in enumerate(self.states):
            if s.in_rotation(now):
                heaps[self.devices[i].kind].append(
                    (expected_completion(self.view(i, now), shots), s.name, i, self.version[i])
                )
        for h in heaps:
            heapq.heapify(h)
        self.heaps.append(heaps)
        return len(self.shots) - 1

    def update(self, i: int, now: float) -> None:
        v = self.version[i] = self.version[i] + 1
        state = self.states[i]
        if not state.in_rotation(now):
            return
        view = self.view(i, now)
        kind = self.devices[i].kind
        name = state.name
        for pos, shots in enumerate(self.shots):
            heap = self.heaps[pos][kind]
            heapq.heappush(heap, (expected_completion(view, shots), name, i, v))
            if len(heap) > 8 * len(self.families.members[kind]) + 64:
                self._rebuild(pos, kind, now)

    def _rebuild(self, pos: int, kind: int, now: float) -> None:
        shots = self.shots[pos]
        fresh = []
        for i in self.families.members[kind]:
            s = self.states[i]
            if s.in_rotation(now):
                fresh.append(
                    (expected_completion(self.view(i, now), shots), s.name, i, self.version[i])
                )
        heapq.heapify(fresh)
        self.heaps[pos][kind] = fresh

    def best(self, req: CircuitRequirements, shots: int, now: float) -> int:
        """The index of the device to send a circuit with ``req`` and ``shots`` to.

        Raises:
            NoRouteError: If no device in rotation can run it.
        """
        try:
            pos = self.shots.index(shots)
        except ValueError:
            pos = self._add_shots(shots, now)
        kinds = self.families.fitting(req.num_qubits, req.requires_all_to_all)
        best: tuple[float, str, int, int] | None = None
        version = self.version
        for kind in kinds:
            heap = self.heaps[pos][kind]
            # Every change of a device's rotation bumps its version (the engine calls update
            # for each), and update adds no entry for a device out of rotation: a current
            # entry is a device in rotation.
            while heap and heap[0][3] != version[heap[0][2]]:
                heapq.heappop(heap)
            if heap and (best is None or heap[0][:2] < best[:2]):
                best = heap[0]
        if best is None:
            raise NoRouteError(req.describe(), {"cloud": "no device in rotation can run it"})
        return best[2]


POLICIES = ("fcfs", "least-busy", "logosq", "logosq-fair")
# What a comparison runs unless told: logosq-fair (ours with fair share between the
# workload's users) is asked for by name.
DEFAULT_POLICIES = POLICIES[:3]


def run_policy(
    policy: str,
    cloud: Cloud,
    workload: Workload,
    *,
    seed: int = 0,
    config: SchedulerConfig | None = None,
) -> Outcome:
    """Run ``workload`` on ``cloud`` under ``policy`` (one of :data:`POLICIES`)."""
    if policy == "logosq":
        return _Ours(cloud, workload, seed, config or simulation_config()).run()
    if policy == "logosq-fair":
        # The same scheduler sharing the devices between the workload's users (equal weights).
        fair = (config or simulation_config()).replace(fair_share=FairShare())
        return _Ours(cloud, workload, seed, fair, name="logosq-fair").run()
    return _Baseline(policy, cloud, workload, seed).run()


def _drive(
    events: _Events,
    jobs: Sequence[Job],
    submit: Callable[[int, float], None],
    handle: Callable[[float, int, Any], None],
) -> None:
    """Run arrivals and events in time order until both are exhausted."""
    heap = events.heap
    pop = heapq.heappop
    n = len(jobs)
    k = 0
    now = 0.0
    while k < n or heap:
        if k < n and (not heap or jobs[k].arrival <= heap[0][0]):
            now = jobs[k].arrival
            submit(k, now)
            k += 1
            continue
        now, _, kind, payload = pop(heap)
        handle(now, kind, payload)
