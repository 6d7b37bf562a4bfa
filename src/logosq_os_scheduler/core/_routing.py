"""Routing: which backend a quantum task goes to, and why.

Rules are tried in order, most specific first (like httpx's mounts): the first rule whose
conditions all hold and whose target yields a backend that can run the circuit decides. A
task pinned with ``with_backend(name)`` skips the rules. With no rule deciding, the task goes
to the eligible backend with the least expected completion time. Every decision records its
reason: the rule, the backends considered, and why each other one was not chosen.
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
]


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingCondition:
    """When a rule applies. Build them through :class:`RoutingRule`'s ``when_*`` methods.

    Attributes:
        kind: ``"qubit_count_exceeds"``, ``"requires_all_to_all"``, ``"priority_at_least"``,
            ``"predicate"`` or ``"default"`` (always).
        value: The threshold, priority or predicate.
        description: The condition in words (shown in routing reasons).
    """

    kind: str
    value: Any = None
    description: str = ""

    def matches(self, task: Task[Any], req: CircuitRequirements) -> bool:
        """Whether the condition holds for this task and circuit."""
        kind = self.kind
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
            expected completion), ``"shortest_queue"``, ``"least_expected_completion"`` or
            ``"lowest_error_rate"``.
        names: The backend names for ``backend`` and ``any_of``.
    """

    kind: str
    names: tuple[str, ...] = ()

    def describe(self) -> str:
        """The target in words."""
        if self.kind == "backend":
            return f"backend {self.names[0]!r}"
        if self.kind == "any_of":
            return f"one of {', '.join(repr(n) for n in self.names)}"
        return self.kind.replace("_", " ")


_NO_TARGET = RoutingTarget("unset")

# The method that sets each kind of target, for errors that name the call the user wrote.
_TARGET_METHODS = {
    "backend": "route_to",
    "any_of": "route_to_any",
    "shortest_queue": "route_to_shortest_queue",
    "least_expected_completion": "route_to_least_expected_completion",
    "lowest_error_rate": "route_to_lowest_error_rate",
}


class RoutingRule:
    """A routing rule: conditions (all must hold) and a target.

    Example:
        >>> rules = [
        ...     RoutingRule().when_qubit_count_exceeds(20).route_to("ibm_brisbane"),
        ...     RoutingRule().when_requires_all_to_all().route_to("ionq_aria"),
        ...     RoutingRule().default().route_to_shortest_queue(),
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
    """

    backend: str
    rule: str
    rule_index: int | None
    considered: Mapping[str, str]
    reason: str
    allowed: tuple[str, ...] | None = None
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
        }


def _pick(
    target: RoutingTarget, candidates: Sequence[BackendView], shots: int
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
    # "any_of" and "least_expected_completion"
    return min(candidates, key=lambda v: (expected_completion(v, shots), v.name))


def decide_route(
    task: Task[Any],
    req: CircuitRequirements,
    rules: Sequence[RoutingRule],
    views: Sequence[BackendView],
    *,
    exclude: frozenset[str] = frozenset(),
) -> RoutingDecision:
    """Choose a backend for ``task`` (pure: no I/O, no state change).

    Args:
        task: The task (its priority and pinned backend matter).
        req: What its circuit needs.
        rules: Routing rules, in order.
        views: The registered backends as they stand.
        exclude: Backends not to use this time (ones that just failed the task).

    Raises:
        NoRouteError: If no backend can run the circuit, naming what each one lacks.
    """
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
            pinned, "pinned", None, considered(pinned), f"task pinned to {pinned!r}", (pinned,)
        )

    notes: list[str] = []
    by_name = {v.name: v for v in views} if rules else {}
    for index, rule in enumerate(rules):
        if not all(c.matches(task, req) for c in rule.conditions):
            continue
        target = rule.target
        if target.kind in ("backend", "any_of"):
            pool = [by_name[n] for n in target.names if n in by_name and n not in unfit]
            if not pool:
                lacks = [f"{n}: {unfit.get(n, 'not registered')}" for n in target.names]
                notes.append(f"rule {index} matched but {'; '.join(lacks)}")
                continue
        else:
            pool = eligible
        chosen = _pick(target, pool, shots)
        if chosen is None:
            notes.append(f"rule {index} matched but no eligible backend")
            continue
        reason = f"rule {index} ({rule.describe()}) chose {chosen.name!r}"
        if notes:
            reason += "; earlier: " + "; ".join(notes)
        if target.kind in ("backend", "any_of"):
            allowed: tuple[str, ...] | None = target.names
        elif target.kind == "lowest_error_rate":
            allowed = (chosen.name,)
        else:
            allowed = None
        return RoutingDecision(
            chosen.name, rule.describe(), index, considered(chosen.name), reason, allowed
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
    return RoutingDecision(chosen.name, "fallback", None, considered(chosen.name), reason)
