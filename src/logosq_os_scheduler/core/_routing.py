"""Routing: which backend a quantum task goes to, and why.

Rules are tried in order, most specific first (like httpx's mounts): the first rule whose
conditions all hold and whose target yields a backend that can run the circuit decides. A
task pinned with ``with_backend(name)`` skips the rules. With no rule deciding, the task goes
to the eligible backend with the least expected completion time. Every decision records its
reason: the rule, the backends considered, and why each other one was not chosen.

Fidelity rules (``route_to_highest_fidelity``, ``route_by_score``, ``when_fidelity_below``)
decide on each candidate's estimated success probability for *this* circuit. The core does not
estimate: the runtime asks each backend (``Backend.estimate_fidelity``, which a Qiskit backend
answers from its calibration data) and passes the numbers in as ``estimates``; rules that need
none never cost an estimate (:func:`needs_estimates`). See docs/fidelity.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from .._coerce import coerce_enum
from .._errors import InvalidTaskError, NoRouteError
from .._task import Task, TaskPriority
from ._capabilities import BackendCapabilities, CircuitRequirements
from ._overhead import RoutingOverhead

__all__ = [
    "BackendView",
    "RoutingCondition",
    "RoutingDecision",
    "RoutingRule",
    "RoutingTarget",
    "decide_route",
    "expected_completion",
    "needs_estimates",
    "reusable_for_alike",
]


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingCondition:
    """When a rule applies. Build them through :class:`RoutingRule`'s ``when_*`` methods.

    Attributes:
        kind: ``"qubit_count_exceeds"``, ``"requires_all_to_all"``, ``"priority_at_least"``,
            ``"fidelity_below"``, ``"predicate"`` or ``"default"`` (always).
        value: The threshold, priority, fidelity floor or predicate.
        description: The condition in words (shown in routing reasons).
    """

    kind: str
    value: Any = None
    description: str = ""

    def matches(
        self, task: Task[Any], req: CircuitRequirements, best_fidelity: float | None = None
    ) -> bool:
        """Whether the condition holds for this task and circuit.

        Args:
            task: The task.
            req: What its circuit needs.
            best_fidelity: The highest estimated fidelity among the backends that could run
                it, None when no backend has an estimate (a fidelity floor then does not
                apply: nothing is known to fall below it).
        """
        kind = self.kind
        if kind == "fidelity_below":
            return best_fidelity is not None and best_fidelity < self.value
        if kind == "default":
            return True
        if kind == "qubit_count_exceeds":
            return bool(req.num_qubits > self.value)
        if kind == "requires_all_to_all":
            return req.requires_all_to_all
        if kind == "priority_at_least":
            return bool(task.priority >= self.value)
        if kind == "predicate":
            return bool(self.value(task, req))
        raise InvalidTaskError(
            "kind", f"unknown routing condition {kind!r}", where="RoutingCondition"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingTarget:
    """Where a rule sends a task. Build them through :class:`RoutingRule`'s ``route_to*``.

    Attributes:
        kind: ``"backend"`` (one named backend), ``"any_of"`` (the best of several by
            expected completion), ``"shortest_queue"``, ``"least_expected_completion"``,
            ``"lowest_error_rate"``, ``"highest_fidelity"``, ``"score"`` (fidelity and
            expected completion weighed together) or ``"refuse"`` (no backend: the task is
            refused with the estimates that made the rule match).
        names: The backend names for ``backend`` and ``any_of``.
        weights: ``(fidelity_weight, time_weight)`` for ``score``.
    """

    kind: str
    names: tuple[str, ...] = ()
    weights: tuple[float, float] = (0.0, 0.0)

    def describe(self) -> str:
        """The target in words."""
        if self.kind == "backend":
            return f"backend {self.names[0]!r}"
        if self.kind == "any_of":
            return f"one of {', '.join(repr(n) for n in self.names)}"
        if self.kind == "score":
            fw, tw = self.weights
            return f"best score (fidelity weight {fw:g}, time weight {tw:g})"
        return self.kind.replace("_", " ")

    @property
    def needs_estimates(self) -> bool:
        """Whether choosing by this target reads fidelity estimates."""
        return self.kind in ("highest_fidelity", "score")


_NO_TARGET = RoutingTarget("unset")

# The method that sets each kind of target, for errors that name the call the user wrote.
_TARGET_METHODS = {
    "backend": "route_to",
    "any_of": "route_to_any",
    "shortest_queue": "route_to_shortest_queue",
    "least_expected_completion": "route_to_least_expected_completion",
    "lowest_error_rate": "route_to_lowest_error_rate",
    "highest_fidelity": "route_to_highest_fidelity",
    "score": "route_by_score",
    "refuse": "refuse",
}


class RoutingRule:
    """A routing rule: conditions (all must hold) and a target.

    Example:
        >>> rules = [
        ...     RoutingRule().when_qubit_count_exceeds(20).route_to("ibm_brisbane"),
        ...     RoutingRule().when_requires_all_to_all().route_to("ionq_aria"),
        ...     RoutingRule().default().route_to_shortest_queue(),
        ... ]
        >>> by_fidelity = [
        ...     RoutingRule().when_fidelity_below(0.2).refuse(),
        ...     RoutingRule().default().route_by_score(fidelity_weight=2, time_weight=1),
        ... ]

    Raises:
        InvalidTaskError: From a ``when_*`` or ``route_to*`` call given a bad value (the
            message names the call, as in ``invalid RoutingRule.route_to: ...``), or if the
            rule is used without a target.
    """

    __slots__ = ("_conditions", "_target")

    def __init__(self) -> None:
        self._conditions: list[RoutingCondition] = []
        self._target = _NO_TARGET

    @property
    def conditions(self) -> tuple[RoutingCondition, ...]:
        """The rule's conditions (empty means it always applies)."""
        return tuple(self._conditions)

    @property
    def target(self) -> RoutingTarget:
        """The rule's target."""
        return self._target

    # -- conditions --------------------------------------------------------------------------

    def when_qubit_count_exceeds(self, n: int) -> RoutingRule:
        """Apply to circuits using more than ``n`` qubits."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidTaskError(
                "n",
                f"qubit count must be an integer >= 0, got {n!r}",
                where="RoutingRule.when_qubit_count_exceeds",
            )
        self._conditions.append(RoutingCondition("qubit_count_exceeds", n, f"qubits > {n}"))
        return self

    def when_requires_all_to_all(self) -> RoutingRule:
        """Apply to circuits whose interactions need all-to-all connectivity."""
        self._conditions.append(
            RoutingCondition("requires_all_to_all", None, "needs all-to-all connectivity")
        )
        return self

    def when_priority_at_least(self, priority: TaskPriority) -> RoutingRule:
        """Apply to tasks of this priority or more urgent.

        Args:
            priority: A :class:`TaskPriority`, or its name in any case or its value.
        """
        priority = coerce_enum(
            TaskPriority,
            priority,
            field="priority",
            error=functools.partial(InvalidTaskError, where="RoutingRule.when_priority_at_least"),
        )
        self._conditions.append(
            RoutingCondition("priority_at_least", priority, f"priority >= {priority.name}")
        )
        return self

    def when_fidelity_below(self, floor: float) -> RoutingRule:
        """Apply when no backend that could run the circuit is expected to reach ``floor``.

        The estimate is the circuit's success probability on each backend's best qubits
        (``Backend.estimate_fidelity``; docs/fidelity.md). The rule matches when the highest
        estimate among the eligible backends is below ``floor``; it does not match when no
        backend gives an estimate. End it with :meth:`refuse` (the task fails at submit with
        :class:`NoRouteError` naming each estimate) or a ``route_to*`` target (a redirect,
        such as to a noiseless simulator).

        Args:
            floor: A success probability in (0, 1].
        """
        if (
            not isinstance(floor, (int, float))
            or isinstance(floor, bool)
            or not 0.0 < float(floor) <= 1.0
        ):
            raise InvalidTaskError(
                "floor",
                f"a fidelity floor must be a number in (0, 1], got {floor!r}",
                where="RoutingRule.when_fidelity_below",
            )
        floor = float(floor)
        self._conditions.append(
            RoutingCondition("fidelity_below", floor, f"best estimated fidelity < {floor:g}")
        )
        return self

    def when(
        self,
        predicate: Callable[[Task[Any], CircuitRequirements], bool],
        description: str = "custom predicate",
    ) -> RoutingRule:
        """Apply when ``predicate(task, requirements)`` is true."""
        if not callable(predicate):
            raise InvalidTaskError(
                "predicate", f"must be callable, got {predicate!r}", where="RoutingRule.when"
            )
        self._conditions.append(RoutingCondition("predicate", predicate, str(description)))
        return self

    def default(self) -> RoutingRule:
        """Apply to every task (use last, as the fallback)."""
        self._conditions.append(RoutingCondition("default", None, "default"))
        return self

    # -- targets -----------------------------------------------------------------------------

    def _set_target(self, target: RoutingTarget) -> RoutingRule:
        if self._target is not _NO_TARGET:
            raise InvalidTaskError(
                "target",
                f"a rule has one target and it is already {self._target.describe()}",
                where=f"RoutingRule.{_TARGET_METHODS[target.kind]}",
            )
        self._target = target
        return self

    def route_to(self, backend: str) -> RoutingRule:
        """Send matching tasks to the backend registered under this name."""
        if not isinstance(backend, str) or not backend:
            raise InvalidTaskError(
                "backend",
                f"backend name must be a non-empty string, got {backend!r}",
                where="RoutingRule.route_to",
            )
        return self._set_target(RoutingTarget("backend", (backend,)))

    def route_to_any(self, *backends: str) -> RoutingRule:
        """Send matching tasks to whichever of these backends should finish them first."""
        if not backends or not all(isinstance(b, str) and b for b in backends):
            raise InvalidTaskError(
                "backends",
                f"expected one or more backend names, got {backends!r}",
                where="RoutingRule.route_to_any",
            )
        return self._set_target(RoutingTarget("any_of", tuple(backends)))

    def route_to_shortest_queue(self) -> RoutingRule:
        """Send matching tasks to the eligible backend with the least work per slot."""
        return self._set_target(RoutingTarget("shortest_queue"))

    def route_to_least_expected_completion(self) -> RoutingRule:
        """Send matching tasks to the eligible backend expected to finish them first."""
        return self._set_target(RoutingTarget("least_expected_completion"))

    def route_to_lowest_error_rate(self) -> RoutingRule:
        """Send matching tasks to the eligible backend with the lowest error rate."""
        return self._set_target(RoutingTarget("lowest_error_rate"))

    def route_to_highest_fidelity(self) -> RoutingRule:
        """Send matching tasks to the eligible backend where this circuit is expected to
        succeed most often (its estimate on that backend's best qubits; docs/fidelity.md).

        Backends without an estimate rank after those with one, by expected completion; with
        no estimate at all, this is least expected completion. The choice is kept: load
        balancing does not move the task elsewhere.
        """
        return self._set_target(RoutingTarget("highest_fidelity"))

    def route_by_score(
        self, *, fidelity_weight: float = 1.0, time_weight: float = 1.0
    ) -> RoutingRule:
        """Send matching tasks to the eligible backend with the best weighted score of
        estimated fidelity and expected completion time.

        ``score = fidelity_weight * F / F_best + time_weight * T_best / T``, where ``F`` is
        the backend's fidelity estimate for this circuit, ``T`` its expected completion time,
        and ``F_best`` and ``T_best`` the best of each among the candidates: both terms lie
        in (0, 1], so the weights say how much each counts. Backends without an estimate
        rank after those with one. ``time_weight=0`` is :meth:`route_to_highest_fidelity`;
        ``fidelity_weight=0`` is :meth:`route_to_least_expected_completion`.

        Args:
            fidelity_weight: Weight of fidelity (>= 0).
            time_weight: Weight of expected completion time (>= 0).
        """
        for field, value in (("fidelity_weight", fidelity_weight), ("time_weight", time_weight)):
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidTaskError(
                    field,
                    f"must be a finite number >= 0, got {value!r}",
                    where="RoutingRule.route_by_score",
                )
        if fidelity_weight == 0 and time_weight == 0:
            raise InvalidTaskError(
                "fidelity_weight",
                "fidelity_weight and time_weight are both 0: give at least one a weight",
                where="RoutingRule.route_by_score",
            )
        weights = (float(fidelity_weight), float(time_weight))
        return self._set_target(RoutingTarget("score", weights=weights))

    def refuse(self) -> RoutingRule:
        """Refuse matching tasks at submit (``NoRouteError``), naming why.

        Meant after :meth:`when_fidelity_below`: the error names each backend's estimate, the
        floor, and the ways out.
        """
        return self._set_target(RoutingTarget("refuse"))

    @property
    def needs_estimates(self) -> bool:
        """Whether this rule reads fidelity estimates (its target or a fidelity floor)."""
        return self._target.needs_estimates or any(
            c.kind == "fidelity_below" for c in self._conditions
        )

    def describe(self) -> str:
        """The rule in words."""
        cond = " and ".join(c.description for c in self._conditions) or "always"
        return f"when {cond} -> {self._target.describe()}"

    def check(self) -> None:
        """Raise InvalidTaskError if the rule has no target."""
        if self._target is _NO_TARGET:
            raise InvalidTaskError(
                "target",
                f"rule '{self.describe()}' has no target: end it with route_to(...) or another "
                "route_to_* method",
                where="RoutingRule",
            )

    def __repr__(self) -> str:
        return f"<RoutingRule {self.describe()}>"


class BackendView(NamedTuple):
    """What routing knows of a backend at decision time (filled in by the runtime).

    A named tuple: the runtime makes one per backend for every routing decision, so it must
    be cheap to build, and it is a snapshot that routing only reads.

    Attributes:
        name: Registered name.
        caps: The backend's capabilities when last taken (see :class:`BackendCapabilities`).
        queued: Tasks waiting for it in this scheduler.
        busy: Jobs it runs now.
        in_rotation: False while its circuit breaker is open or it is being removed.
        observed_per_circuit: Seconds per circuit its recent jobs took (an average that
            forgets), 0 before its first job.
    """

    name: str
    caps: BackendCapabilities
    queued: int
    busy: int
    in_rotation: bool = True
    observed_per_circuit: float = 0.0

    def job_seconds(self, circuits: int, shots: int) -> float:
        """Expected seconds of a job: the backend's own estimate, or what its jobs have been
        observed to cost per circuit here, whichever is larger (a backend that simulates
        noise on many qubits can be far slower than it declares)."""
        declared = self.caps.cost.seconds(circuits, shots)
        observed = self.observed_per_circuit * circuits
        return declared if declared >= observed else observed


def expected_completion(view: BackendView, shots: int) -> float:
    """Seconds until a task sent to this backend now is expected to finish.

    Jobs ahead = the tasks already waiting here, packed ``max_circuits_per_job`` to a job and
    spread over its ``max_concurrent_jobs`` slots, plus one round if every slot is busy.
    """
    caps = view.caps
    per_job = caps.max_circuits_per_job
    slots = caps.max_concurrent_jobs
    load = view.queued + 1
    rounds: float = -(-load // (per_job * slots))  # ceil, in integers
    if view.busy >= slots:
        rounds += 1
    # Jobs queued at the backend itself, outside this scheduler, run before ours.
    pending = caps.pending_jobs
    if pending:
        rounds += pending / slots
    batch = per_job if per_job < load else load
    return rounds * view.job_seconds(batch, batch * shots)


class _Considered(Mapping[str, str]):
    """``RoutingDecision.considered``: every backend with what routing thought of it.

    Built on every decision but read rarely (traces, errors, signatures), so it keeps what
    it is made of and answers from that instead of building a dictionary up front.
    """

    __slots__ = ("_views", "_unfit", "_chosen")

    def __init__(self, views: Sequence[BackendView], unfit: Mapping[str, str], chosen: str) -> None:
        self._views = views
        self._unfit = unfit
        self._chosen = chosen

    def __getitem__(self, name: str) -> str:
        if name == self._chosen:
            return "chosen"
        why = self._unfit.get(name)
        if why is not None:
            return why
        if any(v.name == name for v in self._views):
            return "eligible"
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (v.name for v in self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return repr(dict(self))


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Why a task went where it went.

    Attributes:
        backend: The chosen backend's name.
        rule: The rule that decided, in words ("pinned", or "fallback" when none did).
        rule_index: Its index in the rule list (None for pinned and fallback).
        considered: Every registered backend with what routing thought of it: "chosen",
            "eligible" (could run it, not chosen) or why it could not.
        reason: The decision in one sentence.
        allowed: The backends the deciding rule allows, when it names them (a pinned task,
            ``route_to``, ``route_to_any``, and ``route_to_lowest_error_rate``, which chose
            for quality); None when any eligible backend serves (load-balancing targets and
            the fallback). Load balancing moves a task only within what is allowed.
        overhead: What routing the circuit onto the chosen backend's coupling map added to
            it (:class:`RoutingOverhead`), once the backend has transpiled it; None before,
            and for backends that do not transpile.
        estimates: Each backend's estimated fidelity (success probability) for this circuit,
            as routing saw them: filled in when a rule reads them, empty otherwise.
    """

    backend: str
    rule: str
    rule_index: int | None
    considered: Mapping[str, str]
    reason: str
    allowed: tuple[str, ...] | None = None
    estimates: Mapping[str, float] = dataclasses.field(default_factory=dict)
    overhead: RoutingOverhead | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for traces, logs and signatures."""
        return {
            "backend": self.backend,
            "rule": self.rule,
            "rule_index": self.rule_index,
            "considered": dict(self.considered),
            "reason": self.reason,
            "allowed": list(self.allowed) if self.allowed is not None else None,
            "overhead": self.overhead.as_dict() if self.overhead is not None else None,
            "estimates": dict(self.estimates),
        }


def needs_estimates(rules: Sequence[RoutingRule]) -> bool:
    """Whether any of these rules reads fidelity estimates (so the runtime asks for them)."""
    return any(rule.needs_estimates for rule in rules)


def reusable_for_alike(decision: RoutingDecision, rules: Sequence[RoutingRule]) -> bool:
    """Whether ``decision`` is also the decision for any task alike, at the same moment.

    Alike: the same circuit requirements, priority, pinned backend and shots, and no backend
    to exclude; the same moment: the same backends, rules and rotation, loads aside. That
    holds when the decision depended on nothing else: no rule read fidelity estimates (they
    are the circuit's own) or called a predicate (which may read anything of the task), and
    the choice did not weigh loads, because the task was pinned, a rule named one backend,
    or only one backend could run the circuit at all. A batch of such tasks is then routed
    once (the runtime's :meth:`submit_many`), not once a task.

    Args:
        decision: What :func:`decide_route` returned for one of the tasks.
        rules: The rules it was decided by.
    """
    if needs_estimates(rules) or any(
        c.kind == "predicate" for rule in rules for c in rule.conditions
    ):
        return False
    if decision.rule == "pinned" and decision.rule_index is None:
        return True
    index = decision.rule_index
    if index is not None and rules[index].target.kind == "backend":
        return True
    able = sum(1 for why in decision.considered.values() if why in ("chosen", "eligible"))
    return able == 1


def _by_fidelity(
    candidates: Sequence[BackendView], shots: int, estimates: Mapping[str, float]
) -> BackendView:
    # Unknown ranks after known (no estimate is not a good estimate); ties and the unknown
    # by expected completion, then by name.
    return min(
        candidates,
        key=lambda v: (
            -estimates.get(v.name, -1.0),
            expected_completion(v, shots),
            v.name,
        ),
    )


def _by_score(
    candidates: Sequence[BackendView],
    shots: int,
    estimates: Mapping[str, float],
    weights: tuple[float, float],
) -> BackendView:
    known = [v for v in candidates if v.name in estimates]
    if not known:
        return min(candidates, key=lambda v: (expected_completion(v, shots), v.name))
    fidelity_weight, time_weight = weights
    times = {v.name: expected_completion(v, shots) for v in known}
    best_f = max(estimates[v.name] for v in known)
    best_t = min(times.values())

    def score(v: BackendView) -> float:
        f = estimates[v.name] / best_f if best_f > 0 else 1.0
        t = best_t / times[v.name] if times[v.name] > 0 else 1.0
        return fidelity_weight * f + time_weight * t

    return min(known, key=lambda v: (-score(v), times[v.name], v.name))


def _pick(
    target: RoutingTarget,
    candidates: Sequence[BackendView],
    shots: int,
    estimates: Mapping[str, float],
) -> BackendView | None:
    if not candidates:
        return None
    kind = target.kind
    if kind == "backend":
        return candidates[0]
    if kind == "shortest_queue":
        return min(
            candidates,
            key=lambda v: ((v.queued + v.busy) / v.caps.max_concurrent_jobs, v.name),
        )
    if kind == "lowest_error_rate":
        return min(
            candidates,
            key=lambda v: (
                v.caps.error_rate if v.caps.error_rate is not None else math.inf,
                expected_completion(v, shots),
                v.name,
            ),
        )
    if kind == "highest_fidelity":
        return _by_fidelity(candidates, shots, estimates)
    if kind == "score":
        return _by_score(candidates, shots, estimates, target.weights)
    # "any_of" and "least_expected_completion"
    return min(candidates, key=lambda v: (expected_completion(v, shots), v.name))


def _estimates_in_words(estimates: Mapping[str, float], names: Sequence[str]) -> str:
    known = [(estimates[n], n) for n in names if n in estimates]
    known.sort(key=lambda e: (-e[0], e[1]))
    return ", ".join(f"{n} {f:.3g}" for f, n in known) or "none"


def _refusal(
    req: CircuitRequirements,
    index: int,
    rule: RoutingRule,
    eligible: Sequence[BackendView],
    estimates: Mapping[str, float],
    unfit: Mapping[str, str],
) -> NoRouteError:
    floors = [c.value for c in rule.conditions if c.kind == "fidelity_below"]
    reasons = dict(unfit)
    for v in eligible:
        if not floors:
            why = "could run it, but the rule refuses the task"
        elif v.name in estimates:
            why = f"estimated fidelity {estimates[v.name]:.3g} < floor {floors[0]:g}"
        else:
            why = "no fidelity estimate"
        reasons[v.name] = why
    way_out = f"refused by rule {index} ({rule.describe()}); ways out: "
    if floors:
        way_out += (
            "fewer two-qubit gates or qubits (each one multiplies the estimate by its success "
            "probability), a lower floor, or a redirect in its place, such as "
            "when_fidelity_below(x).route_to('<simulator>')"
        )
    else:
        way_out += "change the task so that the rule does not match it, or the rule"
    return NoRouteError(f"{req.describe()}; {way_out}", reasons)


def decide_route(
    task: Task[Any],
    req: CircuitRequirements,
    rules: Sequence[RoutingRule],
    views: Sequence[BackendView],
    *,
    exclude: frozenset[str] = frozenset(),
    estimates: Mapping[str, float] | None = None,
) -> RoutingDecision:
    """Choose a backend for ``task`` (pure: no I/O, no state change).

    Args:
        task: The task (its priority and pinned backend matter).
        req: What its circuit needs.
        rules: Routing rules, in order.
        views: The registered backends as they stand.
        exclude: Backends not to use this time (ones that just failed the task).
        estimates: Each backend's estimated fidelity for this circuit (a success
            probability in [0, 1]), for the fidelity rules; a backend missing from it has no
            estimate. The runtime fills it in when :func:`needs_estimates` says so.

    Raises:
        NoRouteError: If no backend can run the circuit, naming what each one lacks; or if
            a rule refuses it (``when_fidelity_below(x).refuse()``), naming each estimate.
    """
    estimates = {} if estimates is None else estimates
    unfit: dict[str, str] = {}
    eligible: list[BackendView] = []
    for v in views:
        why = v.caps.check_requirements(req)
        if why is None:
            if not v.in_rotation:
                why = "out of rotation (its breaker is open, or it is being unregistered)"
            elif exclude and v.name in exclude:
                why = "excluded after a failed attempt"
        if why is None:
            eligible.append(v)
        else:
            unfit[v.name] = why
    views = tuple(views)  # kept by the decision's ``considered``: a snapshot

    def considered(chosen: str) -> Mapping[str, str]:
        return _Considered(views, unfit, chosen)

    part = task.quantum_part
    pinned = None if part is None else part.backend
    shots = 1024 if part is None else part.shots
    if pinned is not None:
        if not any(v.name == pinned for v in views):
            raise NoRouteError(
                req.describe(),
                {pinned: "no backend is registered under this name"} | unfit,
            )
        if pinned in unfit:
            raise NoRouteError(req.describe(), {pinned: unfit[pinned]})
        return RoutingDecision(
            pinned,
            "pinned",
            None,
            considered(pinned),
            f"task pinned to {pinned!r}",
            (pinned,),
            estimates,
        )

    notes: list[str] = []
    by_name = {v.name: v for v in views} if rules else {}
    known = [estimates[v.name] for v in eligible if v.name in estimates]
    best_fidelity = max(known) if known else None
    for index, rule in enumerate(rules):
        if not all(c.matches(task, req, best_fidelity) for c in rule.conditions):
            continue
        target = rule.target
        if target.kind == "refuse":
            raise _refusal(req, index, rule, eligible, estimates, unfit)
        if target.kind in ("backend", "any_of"):
            pool = [by_name[n] for n in target.names if n in by_name and n not in unfit]
            if not pool:
                lacks = [f"{n}: {unfit.get(n, 'not registered')}" for n in target.names]
                notes.append(f"rule {index} matched but {'; '.join(lacks)}")
                continue
        else:
            pool = eligible
        chosen = _pick(target, pool, shots, estimates)
        if chosen is None:
            notes.append(f"rule {index} matched but no eligible backend")
            continue
        reason = f"rule {index} ({rule.describe()}) chose {chosen.name!r}"
        if rule.needs_estimates:
            names = [v.name for v in pool]
            reason += f" (estimated fidelity: {_estimates_in_words(estimates, names)})"
        if notes:
            reason += "; earlier: " + "; ".join(notes)
        if target.kind in ("backend", "any_of"):
            allowed: tuple[str, ...] | None = target.names
        elif target.kind in ("lowest_error_rate", "highest_fidelity", "score"):
            allowed = (chosen.name,)
        else:
            allowed = None
        return RoutingDecision(
            chosen.name, rule.describe(), index, considered(chosen.name), reason, allowed, estimates
        )

    if not eligible:
        raise NoRouteError(req.describe(), unfit)
    # The fallback, least expected completion, written out: it runs on every submit of a
    # task that no rule decides.
    chosen = eligible[0]
    if len(eligible) > 1:
        best = (expected_completion(chosen, shots), chosen.name)
        for v in eligible[1:]:
            key = (expected_completion(v, shots), v.name)
            if key < best:
                best, chosen = key, v
    reason = f"no rule decided; least expected completion chose {chosen.name!r}"
    if notes:
        reason += "; " + "; ".join(notes)
    return RoutingDecision(
        chosen.name, "fallback", None, considered(chosen.name), reason, None, estimates
    )
