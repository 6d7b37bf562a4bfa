"""The quantum half of the runtime: backends, routing, batching, retries, breakers.

QuantumScheduler owns a QuantumDispatcher. Decisions come from the sans-I/O core (``decide_route``,
``CircuitBreaker``, ``SchedulerCore.take_batch``); this module performs the I/O: it calls
backends, arms batch and back-off timers, probes tripped backends and moves work around.

Fault classes (see the error tree in ``_errors``):

* ``PermanentBackendError`` (or any non-retryable error): the task fails at once.
* ``TransientBackendError`` and unexpected exceptions: retried with exponential back-off and
  full jitter; a task that failed twice on the same backend is rerouted if it can be.
* ``BackendUnavailableError``: the backend leaves rotation (its breaker opens) and the task
  is rerouted at once.
* A hung job (past ``job_timeout``) fails as a transient error of its backend, and its tasks
  are rerouted at once (``core.backend_lost``); the backend stays in rotation until its
  breaker trips.

Each failed job counts against the backend's circuit breaker; a circuit that failed alone
(one outcome of a good job) does not. What becomes of each task is the core's decision
(``QuantumPolicy.decide_retry``, ``retry_move``); this module carries it out.

Preemption (PREEMPTIVE only): a backend may hold jobs in a queue of its own before it runs
them. When a HIGH or CRITICAL task waits for a backend whose slots are all taken, a job of
less urgent, preemptible tasks still waiting unstarted at that backend is withdrawn
(:meth:`Backend.withdraw`); its tasks turn PREEMPTED, wait in the scheduler's queue at their
priority and are sent again later, their attempt not spent, and the urgent task takes the slot.

Job identity: a backend whose jobs outlive this process (:attr:`Backend.supports_reattach`),
or whose jobs merely have IDs of its own (:attr:`Backend.supports_job_ids`), gets each job as
:meth:`Backend.submit_job` then :meth:`Backend.reattach`, not :meth:`Backend.run`; each task
of the job keeps the ID (``TaskResult.job_id``), and the dispatcher's
:attr:`QuantumDispatcher.job_listener` (a journal) hears of the job before it is submitted,
when the backend has given it an ID, and when it is over. Time-outs,
retries, breakers and cancellation apply to the two calls as they do to ``run``. Idempotency
keys are ``f"{idempotency_prefix}-{task_id}"``: a restarted scheduler that sets the prefix of
the run it continues sends its tasks under the keys they had.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import (
    InvalidConfigError,
    InvalidTaskError,
    NoRouteError,
    SchedulerClosedError,
    SchedulerError,
    TransientBackendError,
)
from ._task import Task, TaskStatus
from ._timers import Timer, Timers
from .backends._base import (
    Backend,
    CircuitJob,
    CircuitRequirements,
    JobOutcome,
    prepare_all,
    sole_job,
)
from .backends._circuits import analyze_circuit, shared_circuit
from .core import Pool, SchedulerCore
from .core._backends import BackendState, Flight
from .core._breaker import BreakerState, CircuitBreaker
from .core._capabilities import BackendCapabilities
from .core._policy import (
    FailureKind,
    Hold,
    QuantumPolicy,
    RetryAction,
    RetryMove,
    StuckMove,
    backend_lost,
    classify_failure,
    retry_move,
    when_stuck,
)
from .core._routing import (
    BackendView,
    RoutingDecision,
    RoutingRule,
    decide_route,
    needs_estimates,
    reusable_for_alike,
)
from .observability._logging import task_fields
from .observability._metrics import BackendMetrics
from .observability._trace import TraceRecorder

if TYPE_CHECKING:
    from ._config import SchedulerConfig
    from ._protocols import JobListener
    from .security import ResultSigner

__all__ = ["BackendEntry", "QuantumDispatcher", "QuantumHost"]

log = logging.getLogger("logosq_os_scheduler")

_S = TaskStatus
_RUNNING = _S.RUNNING
_PERMANENT = FailureKind.PERMANENT
# The longest a breaker's probe (Backend.check_health) may take before it counts as failed.
_PROBE_TIMEOUT = 30.0


class _Withdrawn:
    """A task whose job was withdrawn unstarted (its ``resume`` while it waits, a
    :class:`ParkedRun`): the core does not count its next start as a new attempt, and the
    dispatcher counts the wait since ``since`` as preempted time when its next job starts."""

    __slots__ = ("since",)

    def __init__(self, since: float) -> None:
        self.since = since

    def wake(self) -> None:
        """Nothing runs yet: its next job carries it (see ``_launch_job``)."""

    def stop(self) -> None:
        """Nothing to unwind: no job of it was running."""


class _JobWithdrawnSignal(Exception):
    """Raised out of a withdrawn job's run(): its tasks were requeued; nothing is left to do."""


class BackendEntry(BackendState):
    """A registered backend: the core's state about it, and what only the runtime holds."""

    __slots__ = (
        "backend",
        "batch_timer",
        "batch_timer_when",
        "probe_timer",
        "needs_prepare",
        "reattach",
        "jobs",
    )

    def __init__(
        self,
        name: str,
        backend: Backend,
        caps: BackendCapabilities,
        pool: Pool,
        breaker: CircuitBreaker,
    ) -> None:
        super().__init__(name, caps, pool, breaker)
        self.backend = backend
        self.batch_timer: Timer | None = None
        self.batch_timer_when = math.inf
        self.probe_timer: Timer | None = None
        # Backends that keep the base prepare() run circuits as given: no thread hop needed.
        self.needs_prepare = (
            type(backend).prepare is not Backend.prepare
            or type(backend).prepare_many is not Backend.prepare_many
        )
        # Read once, at registration: jobs go out as submit_job + reattach, not run, on a
        # backend that gives job IDs (only supports_reattach lets a restart collect them).
        self.reattach = bool(backend.supports_reattach or backend.supports_job_ids)
        self.jobs: set[asyncio.Task[None]] = set()


class QuantumHost(Protocol):
    """What the quantum dispatcher needs of the scheduler that owns it."""

    _core: SchedulerCore
    _config: SchedulerConfig
    _loop: asyncio.AbstractEventLoop | None
    _timers: Timers | None
    _trace: TraceRecorder | None
    _signer: ResultSigner | None

    @property
    def closed(self) -> bool:
        """Whether the scheduler is closed (or closing)."""
        ...

    def _now(self) -> float:
        """The time on the scheduler's clock."""
        ...

    def _seal(self, task: Task[Any], now: float) -> BaseException | None:
        """Sign a completed task's result; the error if it could not be signed."""
        ...

    def _settle(self, task: Task[Any]) -> None:
        """A task has just ended: wake whoever waits for it."""
        ...

    def _end_early(self, task: Task[Any], status: TaskStatus, now: float) -> bool:
        """End a task that has not finished (cancelled, timed out, the scheduler closing)."""
        ...


class QuantumDispatcher:
    """The quantum half of the runtime: the backend registry, routing, and carrying out the
    policy's decisions (:class:`~logosq_os_scheduler.core._policy.QuantumPolicy`) on real
    backends: jobs, timers, probes, withdrawals.

    The scheduler owns one and forwards its public backend methods to it; the dispatcher
    sees the scheduler only through :class:`QuantumHost`.

    Args:
        host: The scheduler that owns it.
    """

    def __init__(self, host: QuantumHost) -> None:
        self._host = host
        self._core = host._core
        self._backends: dict[str, BackendEntry] = {}
        self._rules: list[RoutingRule] = []
        self._qdispatching = False
        self._qdispatch_pending = False
        self._policy = QuantumPolicy(self._core)
        # The idempotency keys' prefix (idempotency_prefix); random unless a journal sets it.
        self._uid = uuid.uuid4().hex[:12]
        # Job keys (for the job listener) are this process's own: even with the prefix of an
        # earlier run, a job key never repeats one that run wrote.
        self._job_prefix = self._uid
        self._jobs_sent = 0
        self.job_listener: JobListener | None = None
        """Told of every job sent to a backend that can reattach (see :class:`JobListener`);
        None (the default) tells nobody."""
        self._default_backend_tried = False
        # While a batch is submitted (submitting_together): the decisions that serve every
        # task alike, by (requirements, priority, pinned backend, shots); None otherwise.
        self._alike: (
            dict[tuple[CircuitRequirements, int, str | None, int], RoutingDecision] | None
        ) = None
        self._owned_backends: list[Backend] = []
        self._bg_tasks: set[asyncio.Task[Any]] = set()
        # Quantum tasks that are RUNNING: in a job, or waiting out a retry back-off.
        self._qactive: set[Task[Any]] = set()

    @property
    def idempotency_prefix(self) -> str:
        """What every idempotency key starts with: a task's key is ``f"{prefix}-{task_id}"``.

        Random per dispatcher by default. A scheduler restarted from a journal sets it to the
        prefix of the run it continues (before it sends any job), so that the tasks it sends
        again carry the keys they had and a backend that remembers keys runs none twice.

        Raises:
            InvalidConfigError: On setting anything but a non-empty string.
        """
        return self._uid

    @idempotency_prefix.setter
    def idempotency_prefix(self, prefix: str) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise InvalidConfigError(
                "idempotency_prefix", f"must be a non-empty string, got {prefix!r}"
            )
        self._uid = prefix

    # -- the registry ------------------------------------------------------------------------

    @property
    def backends(self) -> dict[str, Backend]:
        """See :attr:`QuantumScheduler.backends`."""
        return {name: e.backend for name, e in self._backends.items() if not e.removed}

    async def register_backend(self, name: str, backend: object) -> Backend:
        """See :meth:`QuantumScheduler.register_backend`."""
        registered = self.register_backend_nowait(name, backend)
        await registered.start()
        return registered

    def register_backend_nowait(self, name: str, backend: object) -> Backend:
        """See :meth:`QuantumScheduler.register_backend_nowait`."""
        if self._host.closed:
            raise SchedulerClosedError("the scheduler is closed; no backend can be registered")
        if not isinstance(name, str) or not name or name == "classical":
            raise InvalidTaskError("backend", f"invalid backend name {name!r}")
        if name in self._backends:
            raise InvalidTaskError("backend", f"a backend named {name!r} is already registered")
        from .backends._qiskit import as_backend

        wrapped = as_backend(backend, name)
        if wrapped is not backend:
            # The scheduler made this adapter, so the scheduler closes it.
            self._owned_backends.append(wrapped)
        capacity = wrapped.max_concurrent_jobs
        if not isinstance(capacity, int) or capacity < 1:
            raise InvalidTaskError("backend", f"{name!r}: max_concurrent_jobs must be >= 1")
        caps = wrapped.capabilities()
        pool = self._core.add_pool(name, capacity, direct=False)
        cfg = self._host._config
        breaker = CircuitBreaker(cfg.breaker_threshold, cfg.breaker_cooldown)
        self._backends[name] = BackendEntry(name, wrapped, caps, pool, breaker)
        # The program chose its backends: removing them all later leaves none, rather than
        # bringing the default simulator in unasked.
        self._default_backend_tried = True
        self._forget_alike()
        return wrapped

    async def unregister_backend(self, name: str) -> None:
        """See :meth:`QuantumScheduler.unregister_backend`."""
        entry = self._backends.get(name)
        if entry is None:
            raise InvalidTaskError("backend", f"no backend named {name!r} is registered")
        entry.removed = True
        self._evacuate(entry)
        del self._backends[name]
        self._forget_alike()
        for timer in (entry.batch_timer, entry.probe_timer):
            if timer is not None:
                timer.cancel()
        if entry.jobs:
            await asyncio.gather(*entry.jobs, return_exceptions=True)
        self._core.remove_pool(entry.pool)
        self._dispatch_quantum()

    def set_routing_rules(self, rules: Sequence[RoutingRule]) -> None:
        """See :meth:`QuantumScheduler.set_routing_rules`."""
        if isinstance(rules, (str, bytes)) or not isinstance(rules, Iterable):
            raise InvalidTaskError(
                "rules",
                f"expected a list of RoutingRule, got {rules!r}",
                where="QuantumScheduler.set_routing_rules",
            )
        checked = []
        for rule in rules:
            if not isinstance(rule, RoutingRule):
                raise InvalidTaskError(
                    "rules",
                    f"expected RoutingRule, got {rule!r}",
                    where="QuantumScheduler.set_routing_rules",
                )
            rule.check()
            checked.append(rule)
        self._rules = checked
        self._forget_alike()

    @property
    def routing_rules(self) -> tuple[RoutingRule, ...]:
        """See :attr:`QuantumScheduler.routing_rules`."""
        return tuple(self._rules)

    # -- admission of quantum tasks ----------------------------------------------------------

    def _quantum_pool_for(self, task: Task[Any]) -> Pool:
        """Analyse, route and prepare a quantum task at submit; return its backend's pool."""
        if not self._backends and not self._default_backend_tried:
            self._default_backend_tried = True
            self._register_default_backend()
        part = task.quantum_part
        assert part is not None  # quantum tasks are built with one
        # Requirements given with the task (by the primitives, for bound copies of a circuit
        # analysed once) are trusted; otherwise the circuit is walked here (OpenQASM text
        # once per distinct program: the analysis is cached by the text).
        req = part.requirements
        alike = self._alike
        if part.circuit_run is None or alike is None:
            if req is None:
                req = analyze_circuit(part.circuit)
            circuit = shared_circuit(part.circuit)
            if part.num_qubits is not None or part.requires_all_to_all is not None:
                req = CircuitRequirements(
                    num_qubits=part.num_qubits if part.num_qubits is not None else req.num_qubits,
                    interactions=req.interactions,
                    requires_all_to_all=(
                        part.requires_all_to_all
                        if part.requires_all_to_all is not None
                        else req.requires_all_to_all
                    ),
                    max_degree=req.max_degree,
                    dense=req.dense,
                )
            part.circuit_run = circuit
            part.requirements = req
        # else: placed already in this batch (check_placement); only its route may change.
        assert req is not None
        if alike is None:
            decision = self._route(task, frozenset())
        else:
            key = (req, task.priority, part.backend, part.shots)
            known = alike.get(key)
            if known is not None:
                decision = known
            else:
                decision = self._route(task, frozenset())
                if reusable_for_alike(decision, self._rules):
                    alike[key] = decision
        part.routing = decision
        return self._backends[decision.backend].pool

    def _forget_alike(self) -> None:
        """The backends or rules changed inside a batch: what was decided no longer holds."""
        if self._alike:
            self._alike.clear()

    @contextlib.contextmanager
    def submitting_together(self) -> Iterator[None]:
        """See :meth:`QuantumScheduler.submitting_together`."""
        if self._alike is not None:
            yield  # already inside one: the outer batch routes
            return
        self._alike = {}
        try:
            yield
        finally:
            self._alike = None

    def _register_default_backend(self) -> None:
        try:
            from .backends._qiskit import default_backend

            backend = default_backend()
        except (ImportError, SchedulerError):
            return
        self.register_backend_nowait(backend.name, backend)
        self._owned_backends.append(backend)
        if self._host._loop is not None:
            # Start its workers now: the first job need not wait for them to import Aer.
            self._background(backend.start())

    def _background(self, coro: Any) -> None:
        loop = self._host._loop
        assert loop is not None
        job = loop.create_task(coro)
        self._bg_tasks.add(job)
        job.add_done_callback(self._bg_tasks.discard)

    def _views(self) -> list[BackendView]:
        now = self._host._now()
        return [
            BackendView(
                e.name,
                e.caps,
                len(e.pool.queue),
                e.pool.busy,
                e.in_rotation(now),
                e.per_circuit,
            )
            for e in self._backends.values()
        ]

    def _route(self, task: Task[Any], exclude: frozenset[str]) -> RoutingDecision:
        req = task.requirements
        if not self._backends:
            raise NoRouteError(
                req.describe() if req is not None else "a backend",
                {},
            )
        views = self._views()
        estimates = self._estimates(task, req, views) if needs_estimates(self._rules) else None
        return decide_route(task, req, self._rules, views, exclude=exclude, estimates=estimates)

    def _estimates(
        self, task: Task[Any], req: CircuitRequirements, views: list[BackendView]
    ) -> dict[str, float]:
        """Each backend's fidelity estimate for the task's circuit, for the rules that read
        them: asked only of backends that could run it; one that cannot say is left out."""
        part = task.quantum_part
        circuit = None if part is None else part.circuit_run
        if circuit is None:
            return {}
        out: dict[str, float] = {}
        for view in views:
            if view.caps.check_requirements(req) is not None:
                continue
            try:
                estimate = self._backends[view.name].backend.estimate_fidelity(circuit)
            except Exception:
                # An estimate is advice: a backend that fails to give one is routed as one
                # that has none, and its run reports what is wrong with the circuit.
                continue
            if estimate is not None and 0.0 <= estimate <= 1.0:
                out[view.name] = float(estimate)
        return out

    # -- dispatch and batching ---------------------------------------------------------------

    def flush_batches(self) -> None:
        """See :meth:`QuantumScheduler.flush_batches`."""
        if self._host._loop is None:
            return
        self._policy.flush(self._host._now())
        self._dispatch_quantum_soon()

    def _dispatch_quantum_soon(self) -> None:
        """Dispatch at the loop's next turn, once however many tasks arrive meanwhile.

        Submitting is synchronous, so a burst of submits lands in one turn of the loop: one
        dispatch after it sees the whole burst and fills whole batches, where a dispatch per
        submit would send a partial first batch and scan the backends each time.
        """
        if self._qdispatch_pending:
            return
        loop = self._host._loop
        assert loop is not None
        self._qdispatch_pending = True
        loop.call_soon(self._deferred_dispatch)

    def _deferred_dispatch(self) -> None:
        self._qdispatch_pending = False
        self._dispatch_quantum()

    def _dispatch_quantum(self) -> None:
        """Start the jobs the policy forms (:meth:`QuantumPolicy.next_job`) while it forms
        them; arm a timer for a partial batch it holds; when none can start, let an idle
        backend take queued work (work stealing) or withdraw a job for an urgent task."""
        if self._qdispatching or not self._backends:
            return
        self._qdispatching = True
        try:
            core = self._core
            policy = self._policy
            backends = self._backends.values()
            held: set[str] = set()
            while True:
                now = self._host._now()
                at_cap = policy.room() <= 0
                step = None if at_cap else policy.next_job(backends, now, held)
                if step is None:
                    if any(self._try(move, now) for move in when_stuck(at_cap=at_cap)):
                        continue
                    break
                entry = step.backend
                assert isinstance(entry, BackendEntry)
                if isinstance(step, Hold):
                    held.add(entry.name)
                    self._arm_batch_timer(entry, step.until, now)
                    continue
                batch = core.take_batch(entry.pool, now, step.limit)
                if not batch:
                    held.add(entry.name)
                    continue
                self._launch_job(entry, batch, now)
        finally:
            self._qdispatching = False

    def _try(self, move: StuckMove, now: float) -> bool:
        """Carry out one of :func:`when_stuck`'s moves; True if anything changed."""
        if move is StuckMove.STEAL:
            return self._steal_work(now)
        return self._withdraw_for_urgent(now)

    def _steal_work(self, now: float) -> bool:
        """Carry out :meth:`QuantumPolicy.plan_steal`; True if anything moved."""
        policy = self._policy
        plan = policy.plan_steal(list(self._backends.values()), now)
        if plan is None:
            return False
        policy.steal(plan)
        return True

    def _arm_batch_timer(self, entry: BackendEntry, when: float, now: float) -> None:
        if entry.batch_timer is not None and entry.batch_timer_when <= when:
            return
        if entry.batch_timer is not None:
            entry.batch_timer.cancel()
        timers = self._host._timers
        assert timers is not None
        entry.batch_timer_when = when
        entry.batch_timer = timers.call_at(when, self._on_batch_timer, entry)

    def _on_batch_timer(self, entry: BackendEntry) -> None:
        entry.batch_timer = None
        entry.batch_timer_when = math.inf
        self._dispatch_quantum()

    def reattach_job(
        self, name: str, job_key: str, job_id: str, tasks: list[Task[Any]], waited: float
    ) -> bool:
        """Collect a job an earlier scheduler sent (recovered from a journal) by its ID: the
        tasks run again as that job, holding one slot of the backend, and the job is never
        sent again.

        Returns:
            False (nothing done) if the backend has no free slot for it now; the caller
            then sends the tasks again, with their same idempotency keys.
        """
        from .backends._circuits import analyze_circuit, shared_circuit

        entry = self._backends[name]
        core = self._core
        now = self._host._now()
        if entry.pool.busy >= entry.pool.capacity:
            return False
        for task in tasks:
            part = task.quantum_part
            assert part is not None  # quantum tasks are built with one
            part.circuit_run = shared_circuit(part.circuit)
            part.requirements = analyze_circuit(part.circuit)  # text: cached by the text
            core.admit(task, entry.pool, now, waited=waited)
        core.take_tasks(entry.pool, tasks, now)
        self._launch_job(entry, tasks, now, reattach=(job_key, job_id))
        return True

    async def _collect(self, entry: BackendEntry, job_key: str, job_id: str) -> Sequence[Any]:
        """A recovered job's outcomes, by its ID; the listener hears of its end."""
        try:
            return await entry.backend.reattach(job_id)
        finally:
            listener = self.job_listener
            if listener is not None:
                listener.job_done(job_key)

    def _launch_job(
        self,
        entry: BackendEntry,
        batch: list[Task[Any]],
        now: float,
        reattach: tuple[str, str] | None = None,
    ) -> None:
        loop = self._host._loop
        assert loop is not None
        qactive = self._qactive
        for task in batch:
            qactive.add(task)
            resume = task.resume
            if isinstance(resume, _Withdrawn):
                task.resume = None
                self._core.preempted_seconds += now - resume.since
            task.backend_used = entry.name
            task.job_id = None if reattach is None else reattach[1]
            tried = task.backends_tried
            if tried is None:
                task.backends_tried = [entry.name]
            else:
                tried.append(entry.name)
        job = loop.create_task(self._run_job(entry, batch, now, reattach))
        entry.jobs.add(job)
        job.add_done_callback(entry.jobs.discard)

    async def _close_quantum(self) -> None:
        """Stop timers, cancel jobs still in flight (their tasks have ended) and close the
        backends the scheduler created itself."""
        jobs = [j for e in self._backends.values() for j in e.jobs]
        for e in self._backends.values():
            for timer in (e.batch_timer, e.probe_timer):
                if timer is not None:
                    timer.cancel()
            e.batch_timer = e.probe_timer = None
        jobs.extend(self._bg_tasks)
        for j in jobs:
            j.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        for b in self._owned_backends:
            await b.aclose()
        self._owned_backends.clear()

    async def _run_job(
        self,
        entry: BackendEntry,
        batch: list[Task[Any]],
        started: float,
        reattach: tuple[str, str] | None = None,
    ) -> None:
        """Run one job of ``batch`` on ``entry``'s backend and carry its outcomes out;
        ``reattach`` (job key, job ID) collects a job sent before a restart instead."""
        backend = entry.backend
        name = entry.name
        job_error: BaseException | None = None
        outcomes: Sequence[Any] = ()
        hung = False
        flight: Flight | None = None
        try:
            circuits: list[Any] = [t.circuit_run for t in batch]
            prepared_errors: dict[int, BaseException] = {}
            # A backend that prepares circuits does it within the job (one hand-off from the
            # loop where it can), unless it may withdraw the job (a flight holds circuits
            # prepared beforehand) or the job goes out as submit_job + reattach.
            together = entry.needs_prepare and not (backend.supports_withdrawal or entry.reattach)
            if entry.needs_prepare and not together:
                circuits, prepared_errors = await asyncio.to_thread(prepare_all, backend, circuits)
            live = [i for i in range(len(batch)) if i not in prepared_errors]
            jobs = [
                CircuitJob(
                    circuit=circuits[i],
                    shots=batch[i].shots,
                    task_id=batch[i].task_id,
                    options=batch[i].run_options,
                    idempotency_key=f"{self._uid}-{batch[i].task_id}",
                )
                for i in live
            ]
            run_outcomes: Sequence[Any] = ()
            if jobs:
                timeout = self._host._config.job_timeout
                if reattach is not None:
                    coro = self._collect(entry, *reattach)
                elif backend.supports_withdrawal:
                    flight = Flight(batch, jobs, started)
                    coro = self._run_flight(entry, flight)
                elif together:
                    # This job's tasks are all the scheduler has unfinished: nothing of
                    # its own waits for the loop (see sole_job).
                    alone = self._core.unfinished == len(batch)
                    coro = _prepare_and_run(backend, jobs, circuits, alone=alone)
                elif entry.reattach:
                    coro = self._submit_and_reattach(entry, jobs, batch)
                else:
                    coro = backend.run(jobs)
                if timeout is None:
                    run_outcomes = await coro
                else:
                    timers = self._host._timers
                    assert timers is not None
                    try:
                        run_outcomes = await timers.wait_for(coro, timeout)
                    except TimeoutError:
                        hung = True
                        raise TransientBackendError(
                            name, f"job of {len(jobs)} circuits hung past job_timeout={timeout}s"
                        ) from None
                if len(run_outcomes) != len(jobs):
                    raise TransientBackendError(
                        name, f"returned {len(run_outcomes)} outcomes for {len(jobs)} circuits"
                    )
            merged: list[Any] = [None] * len(batch)
            for i, err in prepared_errors.items():
                merged[i] = err
            for i, out in zip(live, run_outcomes, strict=True):
                merged[i] = out
                if circuits[i] is not None:
                    batch[i].circuit_run = circuits[i]  # the circuit as this backend ran it
                    if entry.needs_prepare:
                        _record_overhead(batch[i], entry, circuits[i])
            outcomes = merged
        except _JobWithdrawnSignal:
            return  # withdrawn unstarted: _withdraw() has requeued its tasks and freed its slot
        except asyncio.CancelledError:
            if flight is not None and flight.withdrawn:
                raise  # its tasks are back in the queue: they are no longer this job's
            # The scheduler is closing with this job in flight: its tasks end CANCELLED.
            self._job_finished(entry, batch, started)
            now = self._host._now()
            for t in batch:
                self._host._end_early(t, _S.CANCELLED, now)
            raise
        except BaseException as exc:  # every failure of a job is handled, none escapes
            job_error = exc
        self._job_finished(entry, batch, started)
        now = self._host._now()
        if job_error is not None:
            opened = self._policy.job_failed(entry, job_error, now)
            if opened is not None:
                self._breaker_opened(entry, tripped=opened)
            moved = backend_lost(job_error, hung=hung)
            for t in batch:
                self._attempt_failed(t, entry, job_error, reroute=moved)
        else:
            entry.breaker.record_success()
            for t, out in zip(batch, outcomes, strict=True):
                if isinstance(out, BaseException):
                    self._attempt_failed(t, entry, out, reroute=False)
                elif t.status is _RUNNING:
                    t.value = out
                    if self._host._signer is not None:
                        unsigned = self._host._seal(t, now)
                        if unsigned is not None:
                            t.value = None
                            self._attempt_failed(t, entry, unsigned, reroute=False)
                            continue
                    entry.completed += 1
                    self._core.transition(t, _S.COMPLETED, now)
                    self._host._settle(t)
        self._dispatch_quantum()

    async def _submit_and_reattach(
        self, entry: BackendEntry, jobs: Sequence[CircuitJob], tasks: Sequence[Task[Any]]
    ) -> Sequence[JobOutcome]:
        """Run a job on a backend that can reattach: :meth:`Backend.submit_job`, then
        :meth:`Backend.reattach`, telling :attr:`job_listener` of the job around them.

        The listener hears of the intent before anything is sent (so a crash between the two
        is recognisable), of the job ID as soon as the backend gives it, and of the end
        however it comes (outcomes, failure, time-out or cancellation). ``tasks`` (the job's)
        get the job ID as their ``job_id``.
        """
        backend = entry.backend
        listener = self.job_listener
        if listener is None:
            job_id = await backend.submit_job(jobs)
            for task in tasks:
                task.job_id = job_id
            return await backend.reattach(job_id)
        self._jobs_sent += 1
        job_key = f"{self._job_prefix}-job-{self._jobs_sent}"
        written = listener.job_intent(entry.name, job_key, [j.task_id for j in jobs])
        if written is not None:
            await written  # the intent is on disk before anything is sent
        try:
            job_id = await backend.submit_job(jobs)
            for task in tasks:
                task.job_id = job_id
            listener.job_acknowledged(job_key, job_id)
            return await backend.reattach(job_id)
        finally:
            listener.job_done(job_key)

    def _job_finished(self, entry: BackendEntry, batch: list[Task[Any]], started: float) -> None:
        now = self._host._now()
        self._core.job_done(entry.pool, len(batch), started, now)
        entry.record_job(len(batch), now - started)
        # What the backend learned from this job (its cost per shot) is in its next snapshot.
        entry.caps = entry.backend.capabilities()
        if self._host._trace is not None:
            self._host._trace.record_batch(entry.name, [t.task_id for t in batch], started, now)

    # -- failures ----------------------------------------------------------------------------

    def _attempt_failed(
        self, task: Task[Any], entry: BackendEntry, error: BaseException, *, reroute: bool
    ) -> None:
        """Carry out :meth:`QuantumPolicy.decide_retry` for a task whose attempt failed."""
        if task.status is not _RUNNING:
            return  # it ended meanwhile (cancelled or timed out)
        core = self._core
        now = self._host._now()
        if classify_failure(error) is not _PERMANENT and log.isEnabledFor(logging.INFO):
            log.info(
                "task %s attempt %d on %r failed: %s",
                task.task_id,
                task.attempts,
                entry.name,
                error,
                extra=task_fields(task),
            )
        decision = self._policy.decide_retry(task, entry, error, now, moved=reroute)
        if decision.action is RetryAction.FAIL:
            self._fail(task, decision.error, now)
            return
        routed: RoutingDecision | None = None
        no_route: NoRouteError | None = None
        if decision.reroute:
            exclude = frozenset({entry.name})
            if decision.elsewhere_only:
                exclude |= frozenset(task.backends_tried or ())
            try:
                routed = self._route(task, exclude)
            except NoRouteError as exc:
                no_route = exc
        elsewhere = routed is not None and routed.backend != entry.name
        move = retry_move(
            decision.delay,
            routed_elsewhere=elsewhere,
            backend_removed=entry.removed,
            elsewhere_only=decision.elsewhere_only,
        )
        if move is RetryMove.ELSEWHERE:
            assert routed is not None
            task.routing = routed
            core.reroutes += 1
            self._qactive.discard(task)
            core.requeue(task, self._backends[routed.backend].pool, now)
            self._dispatch_quantum()
        elif move is RetryMove.FAIL_NO_ROUTE:
            self._fail_no_route(task, now, no_route if task.backend is None else None, entry)
        elif move is RetryMove.GIVE_UP:
            self._fail(task, decision.error, now)  # this backend's refusal
        elif move is RetryMove.NOW:
            self._qactive.discard(task)
            core.requeue(task, entry.pool, now)
        else:
            timers = self._host._timers
            assert timers is not None
            task.runner = timers.call_later(
                decision.delay, self._requeue_after_backoff, task, entry
            )

    def _requeue_after_backoff(self, task: Task[Any], entry: BackendEntry) -> None:
        task.runner = None
        if task.status is not _RUNNING:
            return
        now = self._host._now()
        routed: RoutingDecision | None = None
        no_route: NoRouteError | None = None
        if entry.removed:
            # Unregistered while the task waited out its back-off: routing looks again.
            try:
                routed = self._route(task, frozenset({entry.name}))
            except NoRouteError as exc:
                no_route = exc
        move = retry_move(0.0, routed_elsewhere=routed is not None, backend_removed=entry.removed)
        if move is RetryMove.FAIL_NO_ROUTE:
            self._fail_no_route(task, now, no_route, entry)
            return
        if routed is not None:
            task.routing = routed
            entry = self._backends[routed.backend]
        self._qactive.discard(task)
        self._core.requeue(task, entry.pool, now)
        self._dispatch_quantum()

    def _fail_no_route(
        self,
        task: Task[Any],
        now: float,
        error: NoRouteError | None,
        gone: BackendEntry,
    ) -> None:
        """Fail a task whose backend was unregistered and that no other backend can run."""
        if error is None:
            req = task.requirements
            error = NoRouteError(
                req.describe() if req is not None else "a backend",
                {gone.name: "unregistered while the task waited for it"},
            )
        self._fail(task, error, now)

    def _fail(self, task: Task[Any], error: BaseException | None, now: float) -> None:
        """End ``task`` FAILED with ``error``, waiting (out of its queue) or running."""
        task.error = error
        if task.status is _S.QUEUED or task.status is _S.PREEMPTED:
            self._core.finish(task, _S.FAILED, now)
        else:
            self._core.transition(task, _S.FAILED, now)
        self._host._settle(task)

    def _breaker_opened(self, entry: BackendEntry, *, tripped: bool) -> None:
        """A backend left rotation (``tripped``: it was in rotation until now, a warning) or
        stays out of it (a failed probe, another job finding it unavailable): move its queued
        work and schedule a probe."""
        now = self._host._now()
        if tripped:
            log.warning("backend %r taken out of rotation (circuit breaker open)", entry.name)
        elif log.isEnabledFor(logging.INFO):
            log.info("backend %r is still unavailable and stays out of rotation", entry.name)
        if self._host._trace is not None:
            self._host._trace.record_instant(entry.name, "breaker open", now)
        self._evacuate(entry)
        due = entry.breaker.probe_due_at()
        timers = self._host._timers
        if due is None or timers is None or entry.probe_timer is not None:
            return
        entry.probe_timer = timers.call_at(due, lambda: self._background(self._probe(entry)))

    async def _probe(self, entry: BackendEntry) -> None:
        entry.probe_timer = None
        if entry.removed:
            return
        try:
            timers = self._host._timers
            assert timers is not None
            healthy = bool(await timers.wait_for(entry.backend.check_health(), _PROBE_TIMEOUT))
        except asyncio.CancelledError:
            raise
        except Exception:
            healthy = False
        state = entry.breaker.probe_result(healthy, self._host._now())
        if state is BreakerState.CLOSED:
            log.info("backend %r passed its probe and is back in rotation", entry.name)
            if self._host._trace is not None:
                self._host._trace.record_instant(entry.name, "breaker closed", self._host._now())
            self._dispatch_quantum()
        else:
            self._breaker_opened(entry, tripped=False)

    def _evacuate(self, entry: BackendEntry) -> None:
        """Carry out :meth:`QuantumPolicy.plan_evacuation` for ``entry``'s waiting tasks."""
        now = self._host._now()
        exclude = frozenset({entry.name})
        plan = self._policy.plan_evacuation(entry, lambda task: self._route(task, exclude))
        for task, error in plan.failures:
            self._fail_no_route(task, now, error, entry)
        trace = self._host._trace
        for task, decision in plan.moves:
            task.routing = decision
            self._core.move(task, self._backends[decision.backend].pool)
            if trace is not None:
                trace.record_instant(
                    entry.name, "evacuated", now, task_id=task.task_id, to=decision.backend
                )
        self._dispatch_quantum()

    # -- preemption: withdrawing jobs that wait unstarted at a backend ------------------------

    async def _run_flight(self, entry: BackendEntry, flight: Flight) -> Sequence[JobOutcome]:
        """Run a job on a backend that can withdraw jobs, known to :meth:`_withdraw_for_urgent`
        while it is under way. Raises _JobWithdrawnSignal if it was withdrawn."""
        entry.flights.append(flight)
        try:
            if entry.reattach:
                outcomes = await self._submit_and_reattach(entry, flight.jobs, flight.batch)
            else:
                outcomes = await entry.backend.run(flight.jobs)
        except Exception:
            if flight.withdrawn:
                raise _JobWithdrawnSignal from None
            raise
        finally:
            if not flight.withdrawn:
                entry.flights.remove(flight)
        if flight.withdrawn:
            # A backend that ran a job after agreeing to withdraw it: its tasks were requeued
            # and will run again, so these outcomes belong to nobody.
            log.warning("backend %r returned a job it had withdrawn; outcomes dropped", entry.name)
            raise _JobWithdrawnSignal
        return outcomes

    def _withdraw_for_urgent(self, now: float) -> bool:
        """PREEMPTIVE: free a slot for a HIGH or CRITICAL task that cannot be dispatched.

        At the first backend in the policy's order (:meth:`QuantumPolicy.withdrawal_order`)
        where any can be, withdraws every job that waits unstarted there and may yield to the
        urgent task (:meth:`QuantumPolicy.withdrawal_candidates`): one job frees the slot the
        urgent job takes, and the others would otherwise run before it in the backend's own
        queue. Their tasks are sent again after it. A job the backend refuses to withdraw has
        started: it is not asked again.

        Returns:
            True if a job was withdrawn (a slot is free now); False otherwise.
        """
        policy = self._policy
        for state, urgent in policy.withdrawal_order(self._backends.values(), now):
            assert isinstance(state, BackendEntry)
            withdrawn = []
            for flight in policy.withdrawal_candidates(state, urgent):
                if state.backend.withdraw(flight.jobs):
                    withdrawn.append(flight)
                else:
                    flight.started = True
            if withdrawn:
                # Requeued in the order they were sent, so that they keep their order.
                sent = {id(f): i for i, f in enumerate(state.flights)}
                for flight in sorted(withdrawn, key=lambda f: sent[id(f)]):
                    self._withdrawn(state, flight, now)
                return True
        return False

    def _withdrawn(self, entry: BackendEntry, flight: Flight, now: float) -> None:
        """A job was withdrawn unstarted: free its slot; its running tasks turn PREEMPTED and
        wait in the queue at their priority (behind tasks of that priority already waiting)."""
        flight.withdrawn = True
        entry.flights.remove(flight)
        entry.withdrawn_jobs += 1
        core = self._core
        pool = entry.pool
        batch = flight.batch
        core.job_done(pool, len(batch), flight.launched, now)
        ids = []
        for task in batch:
            self._qactive.discard(task)
            if task.status is not _RUNNING:
                continue  # it ended while the job waited (cancelled, timed out)
            ids.append(task.task_id)
            tried = task.backends_tried
            if tried:
                tried.pop()  # the job never ran: this was no attempt on the backend
            # Its next start continues this attempt rather than counting a new one.
            task.resume = _Withdrawn(now)
            core.withdraw(task, pool, now)
        log.info(
            "withdrew a job of %d tasks from backend %r before it started", len(ids), entry.name
        )
        if self._host._trace is not None:
            self._host._trace.record_instant(entry.name, "withdrawn", now, task_ids=ids)

    # -- views -------------------------------------------------------------------------------

    def _backend_metrics(self, now: float, uptime: float) -> dict[str, BackendMetrics]:
        out = {}
        for e in self._backends.values():
            pool = e.pool
            state = e.breaker.state(now)
            out[e.name] = BackendMetrics(
                name=e.name,
                capacity=pool.capacity,
                busy=pool.busy,
                queued=len(pool.queue),
                completed=e.completed,
                failed_attempts=e.failed_attempts,
                healthy=state is BreakerState.CLOSED,
                breaker_state=state.value,
                utilisation=min(1.0, pool.busy_time / (pool.capacity * uptime)),
                withdrawn_jobs=e.withdrawn_jobs,
                queued_by_priority=tuple(pool.queue.depth_by_level()),
            )
        return out


def _record_overhead(task: Task[Any], entry: BackendEntry, prepared: Any) -> None:
    """Put on the task's routing decision what routing its circuit onto ``entry``'s
    backend added (measured only when read: see :class:`RoutingOverhead`)."""
    decision = task.routing
    if not isinstance(decision, RoutingDecision) or decision.backend != entry.name:
        return
    overhead = entry.backend.routing_overhead(prepared)
    if overhead is not None and overhead is not decision.overhead:
        task.routing = dataclasses.replace(decision, overhead=overhead)


async def _prepare_and_run(
    backend: Backend, jobs: list[CircuitJob], circuits: list[Any], *, alone: bool
) -> Sequence[Any]:
    """``backend.prepare_and_run(jobs)``, with :data:`sole_job` set to ``alone``; puts the
    prepared circuits in ``circuits`` (None where preparing failed) and returns the
    outcomes."""
    token = sole_job.set(alone)
    try:
        prepared, outcomes = await backend.prepare_and_run(jobs)
    finally:
        sole_job.reset(token)
    if len(prepared) != len(jobs):
        raise TransientBackendError(
            backend.name, f"returned {len(prepared)} prepared circuits for {len(jobs)}"
        )
    circuits[:] = prepared
    return outcomes
