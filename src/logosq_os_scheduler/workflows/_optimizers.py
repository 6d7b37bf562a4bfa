"""Classical optimisers for hybrid algorithms, shaped for batching through the scheduler.

An optimiser minimises an :class:`Objective` whose evaluations are asynchronous: each call to
:meth:`Objective.evaluate` sends *all* of its points to the scheduler at once and costs about
one backend round trip. The optimisers use that: SPSA evaluates both perturbed points of an
iteration (and all of its calibration points) in one call; Adam gets a parameter-shift
gradient with the value in one call. COBYLA is inherently sequential (one point per step).

* :class:`COBYLA`: SciPy's ``minimize(method="COBYLA")``, gradient-free; best with exact or
  low-noise energies.
* :class:`SPSA`: simultaneous perturbation stochastic approximation (Spall), for noisy
  (shot-based) energies; two evaluations per iteration whatever the number of parameters.
* :class:`Adam`: Adam on exact parameter-shift gradients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from .._errors import InvalidTaskError

__all__ = [
    "COBYLA",
    "SPSA",
    "Adam",
    "Checkpoint",
    "Objective",
    "Optimizer",
    "OptimizerResult",
    "as_optimizer",
]

Vector = NDArray[np.float64]


@runtime_checkable
class Objective(Protocol):
    """A function to minimise whose evaluations go through the scheduler."""

    @property
    def num_parameters(self) -> int:
        """The dimension of a point."""
        ...

    async def evaluate(self, points: Vector) -> Vector:
        """The values at every row of ``points`` (shape ``(k, n)``), in one round trip."""
        ...

    async def value_and_gradient(self, point: Vector) -> tuple[float, Vector]:
        """The value and gradient at ``point``, in one round trip."""
        ...

    def report(self, iteration: int, point: Vector, value: float) -> None:
        """Record one optimiser iteration (called on the scheduler's loop)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class OptimizerResult:
    """What an optimiser found.

    Attributes:
        x: The final point.
        fun: The objective's value evaluated at ``x`` (a fresh evaluation, not the lowest
            noisy value seen).
        iterations: Iterations run.
        converged: Whether its stopping criterion was met before the iteration budget.
        message: Why it stopped.
    """

    x: Vector
    fun: float
    iterations: int
    converged: bool
    message: str


Checkpoint = Callable[[dict[str, Any]], None]
"""Called by a resumable optimiser after each iteration with everything it needs to go on
from the next (numbers and arrays): a hybrid task stores it in the scheduler's journal."""


@runtime_checkable
class Optimizer(Protocol):
    """Something that minimises an :class:`Objective` (COBYLA, SPSA, Adam, or your own).

    An optimiser with ``resumable = True`` also takes ``resume=`` (a state it gave before)
    and ``checkpoint=`` (a :data:`Checkpoint`) keywords: a VQE or QAOA task running it on a
    scheduler with a journal then goes on from its last finished iteration after a restart.
    Adam and SPSA are resumable; COBYLA (SciPy's, which keeps its state to itself) is not.
    """

    async def minimize(self, objective: Objective, x0: Vector) -> OptimizerResult:
        """Minimise ``objective`` from ``x0``."""
        ...


def _positive_int(field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidTaskError(field, f"must be a positive integer, got {value!r}")
    return value


def _positive(field: str, value: object, *, allow_zero: bool = False) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise InvalidTaskError(field, f"must be a positive number, got {value!r}")
    return float(value)


class _Stopped(Exception):
    """Raised inside SciPy's loop to end it when the optimisation is cancelled."""


class COBYLA:
    """SciPy's COBYLA (``scipy.optimize.minimize(method="COBYLA")``).

    SciPy's loop runs in a helper thread; each function value it asks for is one evaluation
    through the scheduler. Cancelling the optimisation stops SciPy at its next request.

    Args:
        maxiter: Most function evaluations (SciPy's ``maxiter``).
        rhobeg: Initial change of the variables.
        tol: Final accuracy of the trust region (SciPy's ``tol``), or None for SciPy's.
    """

    def __init__(self, maxiter: int = 200, *, rhobeg: float = 0.5, tol: float | None = None):
        self.maxiter = _positive_int("maxiter", maxiter)
        self.rhobeg = _positive("rhobeg", rhobeg)
        self.tol = None if tol is None else _positive("tol", tol)

    async def minimize(self, objective: Objective, x0: Vector) -> OptimizerResult:
        """Minimise ``objective`` from ``x0``."""
        from scipy.optimize import minimize

        loop = asyncio.get_running_loop()
        stop = threading.Event()
        pending: list[concurrent.futures.Future[Vector]] = []
        count = 0

        def fun(x: Vector) -> float:
            nonlocal count
            if stop.is_set():
                raise _Stopped
            point = np.array(x, dtype=float)
            fut = asyncio.run_coroutine_threadsafe(objective.evaluate(point[None, :]), loop)
            pending[:] = [fut]
            if stop.is_set():
                # Cancelled between the check above and now: the canceller may have missed
                # this evaluation, so cancel it here (it then submits nothing, or cancels
                # what it submitted).
                fut.cancel()
                raise _Stopped
            try:
                value = float(fut.result()[0])
            except concurrent.futures.CancelledError:
                raise _Stopped from None
            loop.call_soon_threadsafe(objective.report, count, point, value)
            count += 1
            return value

        options: dict[str, Any] = {"maxiter": self.maxiter, "rhobeg": self.rhobeg}
        try:
            res = await asyncio.to_thread(
                minimize,
                fun,
                np.asarray(x0, dtype=float),
                method="COBYLA",
                tol=self.tol,
                options=options,
            )
        except BaseException:
            # Cancelled (or failed): stop SciPy and the evaluation it waits on.
            stop.set()
            for fut in pending:
                fut.cancel()
            raise
        # The reports SciPy's thread queued with call_soon_threadsafe ran before this
        # coroutine resumed: the loop runs callbacks in the order they were queued.
        x = np.asarray(res.x, dtype=float)
        # SciPy's res.fun is the lowest value seen; on a noisy objective that is biased low.
        # Evaluate the returned point afresh, so that fun is an estimate *at* x.
        (at_x,) = await objective.evaluate(x[None, :])
        return OptimizerResult(
            x=x,
            fun=float(at_x),
            iterations=count,
            converged=bool(res.success),
            message=str(res.message),
        )

    def __repr__(self) -> str:
        return f"COBYLA(maxiter={self.maxiter}, rhobeg={self.rhobeg}, tol={self.tol})"


class SPSA:
    """Simultaneous perturbation stochastic approximation, for noisy objectives.

    Each iteration estimates the gradient from the objective at ``x + c_k d`` and
    ``x - c_k d`` for a random sign vector ``d`` (``resamplings`` such pairs, averaged), all
    evaluated in one batch, and steps ``x -= a_k g``. Gains follow Spall's power laws,
    ``a_k = a / (k + 1 + A)**alpha`` and ``c_k = c / (k + 1)**gamma``. Without a
    ``learning_rate``, ``a`` is calibrated as Qiskit's ``SPSA.calibrate`` does, so that the
    first step has size ``target_magnitude``; the calibration points are one batch too.

    Args:
        maxiter: Iterations.
        learning_rate: ``a``, or None to calibrate it.
        perturbation: ``c``.
        alpha: The learning-rate decay exponent.
        gamma: The perturbation decay exponent.
        stability: ``A``.
        target_magnitude: The calibrated size of the first step.
        calibration_samples: Perturbation pairs used to calibrate ``a``.
        resamplings: Perturbation pairs averaged per iteration.
        last_avg: Return the mean of the last ``last_avg`` iterates (as Qiskit's SPSA does):
            on a noisy objective the mean sits closer to the optimum than any one iterate.
        seed: Seeds the perturbations.
    """

    def __init__(
        self,
        maxiter: int = 100,
        *,
        learning_rate: float | None = None,
        perturbation: float = 0.2,
        alpha: float = 0.602,
        gamma: float = 0.101,
        stability: float = 0.0,
        target_magnitude: float = 2 * math.pi / 10,
        calibration_samples: int = 25,
        resamplings: int = 1,
        last_avg: int = 1,
        seed: int | None = None,
    ) -> None:
        self.maxiter = _positive_int("maxiter", maxiter)
        self.learning_rate = (
            None if learning_rate is None else _positive("learning_rate", learning_rate)
        )
        self.perturbation = _positive("perturbation", perturbation)
        self.alpha = _positive("alpha", alpha)
        self.gamma = _positive("gamma", gamma)
        self.stability = _positive("stability", stability, allow_zero=True)
        self.target_magnitude = _positive("target_magnitude", target_magnitude)
        self.calibration_samples = _positive_int("calibration_samples", calibration_samples)
        self.resamplings = _positive_int("resamplings", resamplings)
        self.last_avg = _positive_int("last_avg", last_avg)
        if self.last_avg > self.maxiter:
            raise InvalidTaskError("last_avg", f"must be at most maxiter={maxiter}")
        self.seed = seed

    async def _calibrate(self, objective: Objective, x0: Vector, rng: np.random.Generator) -> float:
        c = self.perturbation
        deltas = rng.choice([-1.0, 1.0], size=(self.calibration_samples, len(x0)))
        values = await objective.evaluate(np.vstack([x0 + c * deltas, x0 - c * deltas]))
        n = self.calibration_samples
        magnitude = float(np.mean(np.abs(values[:n] - values[n:]) / (2 * c)))
        if magnitude < 1e-12:
            # A flat objective around x0: fall back to the target itself as the rate.
            return self.target_magnitude
        return float(self.target_magnitude * (1 + self.stability) ** self.alpha / magnitude)

    resumable = True

    async def minimize(
        self,
        objective: Objective,
        x0: Vector,
        *,
        resume: Mapping[str, Any] | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> OptimizerResult:
        """Minimise ``objective`` from ``x0``, or go on from a ``resume`` state that an
        earlier run gave ``checkpoint`` (called after every iteration)."""
        rng = np.random.default_rng(self.seed)
        x = np.array(x0, dtype=float)
        a = self.learning_rate
        tail: list[Vector] = []
        start = 0
        if resume is not None:
            start = int(resume["k"])
            x = np.array(resume["x"], dtype=float)
            a = float(resume["a"])
            rng.bit_generator.state = resume["rng"]
            tail = [np.array(t, dtype=float) for t in resume["tail"]]
        elif a is None:
            a = await self._calibrate(objective, x, rng)
        r = self.resamplings
        for k in range(start, self.maxiter):
            ak = a / (k + 1 + self.stability) ** self.alpha
            ck = self.perturbation / (k + 1) ** self.gamma
            deltas = rng.choice([-1.0, 1.0], size=(r, len(x)))
            values = await objective.evaluate(np.vstack([x + ck * deltas, x - ck * deltas]))
            plus, minus = values[:r], values[r:]
            gradient = np.mean(((plus - minus) / (2 * ck))[:, None] * deltas, axis=0)
            objective.report(k, x.copy(), float(np.mean(values)))
            x = x - ak * gradient
            if k >= self.maxiter - self.last_avg:
                tail.append(x)
            if checkpoint is not None:
                state = {"k": k + 1, "x": x, "a": a, "rng": rng.bit_generator.state}
                checkpoint({**state, "tail": list(tail)})
        x = np.mean(tail, axis=0)
        (fun,) = await objective.evaluate(x[None, :])
        return OptimizerResult(
            x=x,
            fun=float(fun),
            iterations=self.maxiter,
            converged=False,
            message="ran its iteration budget",
        )

    def __repr__(self) -> str:
        return (
            f"SPSA(maxiter={self.maxiter}, learning_rate={self.learning_rate}, "
            f"perturbation={self.perturbation}, resamplings={self.resamplings}, "
            f"last_avg={self.last_avg})"
        )


class Adam:
    """Adam (Kingma and Ba) on exact parameter-shift gradients.

    Each iteration asks the objective for the value and gradient at ``x`` (one batch of
    ``2K + 1`` points for ``K`` parametrised gates) and takes an Adam step. Stops when the
    gradient's norm falls to ``tol``.

    Args:
        maxiter: Most iterations.
        lr: Learning rate.
        beta1: Decay of the first-moment estimate.
        beta2: Decay of the second-moment estimate.
        eps: Keeps the step finite where the second moment is zero.
        tol: Gradient norm at which it stops.
        amsgrad: Use the AMSGrad variant (the running maximum of the second moment).
    """

    def __init__(
        self,
        maxiter: int = 100,
        *,
        lr: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        tol: float = 1e-6,
        amsgrad: bool = False,
    ) -> None:
        self.maxiter = _positive_int("maxiter", maxiter)
        self.lr = _positive("lr", lr)
        for field, value in (("beta1", beta1), ("beta2", beta2)):
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise InvalidTaskError(field, f"must be in [0, 1), got {value!r}")
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = _positive("eps", eps)
        self.tol = _positive("tol", tol, allow_zero=True)
        self.amsgrad = bool(amsgrad)

    resumable = True

    async def minimize(
        self,
        objective: Objective,
        x0: Vector,
        *,
        resume: Mapping[str, Any] | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> OptimizerResult:
        """Minimise ``objective`` from ``x0``, or go on from a ``resume`` state that an
        earlier run gave ``checkpoint`` (called after every iteration)."""
        x = np.array(x0, dtype=float)
        m = np.zeros_like(x)
        v = np.zeros_like(x)
        v_max = np.zeros_like(x)
        start = 1
        if resume is not None:
            start = int(resume["t"])
            x, m, v, v_max = (np.array(resume[k], dtype=float) for k in ("x", "m", "v", "v_max"))
        for t in range(start, self.maxiter + 1):
            value, gradient = await objective.value_and_gradient(x)
            objective.report(t - 1, x.copy(), value)
            if float(np.linalg.norm(gradient)) <= self.tol:
                return OptimizerResult(
                    x=x,
                    fun=value,
                    iterations=t,
                    converged=True,
                    message=f"gradient norm fell to tol={self.tol}",
                )
            m = self.beta1 * m + (1 - self.beta1) * gradient
            v = self.beta2 * v + (1 - self.beta2) * gradient**2
            m_hat = m / (1 - self.beta1**t)
            if self.amsgrad:
                v_max = np.maximum(v_max, v)
                v_hat = v_max / (1 - self.beta2**t)
            else:
                v_hat = v / (1 - self.beta2**t)
            x = x - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
            if checkpoint is not None:
                checkpoint({"t": t + 1, "x": x, "m": m, "v": v, "v_max": v_max})
        (fun,) = await objective.evaluate(x[None, :])
        return OptimizerResult(
            x=x,
            fun=float(fun),
            iterations=self.maxiter,
            converged=False,
            message="ran its iteration budget",
        )

    def __repr__(self) -> str:
        return f"Adam(maxiter={self.maxiter}, lr={self.lr}, tol={self.tol})"


_BY_NAME = {"cobyla": COBYLA, "spsa": SPSA, "adam": Adam}


def as_optimizer(optimizer: object) -> Optimizer:
    """An :class:`Optimizer` from an optimiser or its name (``"COBYLA"``, ``"SPSA"``,
    ``"Adam"``, with default settings).

    Raises:
        InvalidTaskError: If it is neither.
    """
    if isinstance(optimizer, str):
        factory = _BY_NAME.get(optimizer.lower())
        if factory is None:
            raise InvalidTaskError(
                "optimizer", f"unknown optimizer {optimizer!r}; known: COBYLA, SPSA, Adam"
            )
        made: Optimizer = factory()
        return made
    if isinstance(optimizer, Optimizer) and inspect.iscoroutinefunction(optimizer.minimize):
        return optimizer
    raise InvalidTaskError(
        "optimizer",
        f"{type(optimizer).__name__} is not an optimizer: it needs an async "
        "minimize(objective, x0) method (use COBYLA, SPSA or Adam)",
    )
