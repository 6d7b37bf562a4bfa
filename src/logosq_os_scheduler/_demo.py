"""``logosq demo``: a mixed workload across all five priorities, shown live, then summed up.

The demo is a list of *parts*, each an async function that submits work through a
:class:`DemoContext` and says what outcome each task should have. Parts run one after another
on one scheduler while a live progress display follows every priority (on a terminal; else a
plain progress line every few seconds); at the end the demo checks every task ended as
planned, prints tables of metrics, and writes the trace and the timeline picture.

What the tables count: *By priority*, the tasks the demo submitted itself (each checked
against its planned outcome); *Backends* and *Routing*, every circuit that completed on a
backend, the VQE's own circuits included, so that each backend's rows in *Routing* add up to
its count in *Backends*.

To add work (quantum circuits, a VQE, a backend fault), register backends in
:func:`build_scheduler` and append parts to :func:`workload_parts`; nothing else changes.

Needs the ``observability`` extra (rich for the display, matplotlib for the picture).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import TaskError
from ._handle import TaskHandle
from ._scheduler import QuantumScheduler
from ._task import Task, TaskBuilder, TaskPriority, TaskStatus, TaskType
from .core._routing import RoutingRule
from .observability._listeners import add_listener, remove_listener
from .observability._logging import LOGGER_NAME, TransitionLogger
from .observability._metrics import SchedulerMetrics
from .observability._trace import TraceRecorder

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "DemoContext",
    "DemoOptions",
    "DemoReport",
    "Part",
    "build_scheduler",
    "classical_burst",
    "quantum_burst",
    "main_async",
    "workload_parts",
]

_S = TaskStatus
_PRIORITIES = sorted(TaskPriority, reverse=True)


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """How to run the demo.

    Attributes:
        quick: A small, fast run (for CI and a first look).
        trace: Where to write the Chrome trace / Perfetto JSON; None to skip it.
        timeline: Where to write the timeline picture (PNG); None to skip it.
        progress: True: a live display; False: none (a line as each part starts); None: the
            live display on a terminal, else a plain progress line every
            ``progress_interval`` seconds.
        workers: Classical worker slots.
        seed: Seed of the workload's randomness (the same seed plans the same tasks).
        progress_interval: Seconds between plain progress lines.
        journal: Run the scheduler on this durable journal (``logosq jobs`` reads it after).
    """

    quick: bool = False
    trace: Path | None = Path("logosq-demo.trace.json")
    timeline: Path | None = Path("logosq-demo-timeline.png")
    progress: bool | None = None
    workers: int = 4
    seed: int = 2024
    progress_interval: float = 3.0
    journal: Path | None = None

    def __post_init__(self) -> None:
        if not self.progress_interval > 0:
            raise ValueError(
                f"progress_interval must be a positive number of seconds, "
                f"got {self.progress_interval!r}"
            )


@dataclasses.dataclass
class _Planned:
    handle: TaskHandle[Any]
    expected: TaskStatus
    part: str


class DemoContext:
    """What a part of the demo works with.

    Attributes:
        scheduler: The scheduler everything runs on.
        rng: The workload's randomness (seeded from the options).
        quick: Whether this is the small run.
        console: Where to print.
    """

    def __init__(
        self, scheduler: QuantumScheduler, rng: random.Random, quick: bool, console: Console
    ) -> None:
        self.scheduler = scheduler
        self.rng = rng
        self.quick = quick
        self.console = console
        self.planned: list[_Planned] = []
        self.part = ""
        # Tasks this context submitted so far, by priority (not the ones a task submits).
        self.submitted: Counter[TaskPriority] = Counter()
        # The VQE's hybrid task, when the demo runs one.
        self.vqe: TaskHandle[Any] | None = None

    async def submit(
        self, builder: TaskBuilder[Any], *, expect: TaskStatus = _S.COMPLETED
    ) -> TaskHandle[Any]:
        """Submit a task and note the outcome it should have."""
        handle = await self.scheduler.submit(builder)
        self.planned.append(_Planned(handle, expect, self.part))
        self.submitted[handle.priority] += 1
        return handle

    def cancel(self, handle: TaskHandle[Any]) -> bool:
        """Cancel a task; if it finished first, it is expected to have completed instead."""
        cancelled = handle.cancel()
        for planned in reversed(self.planned):
            if planned.handle is handle:
                planned.expected = _S.CANCELLED if cancelled else planned.expected
                break
        return cancelled


Part = Callable[[DemoContext], Awaitable[None]]
"""One part of the workload: submits tasks through the context (it need not wait for them)."""


# -- the classical burst --------------------------------------------------------------------------

_BLOCK = bytes(range(256)) * 256  # 64 KiB


def checksum(blocks: int) -> str:
    """CPU work: a SHA-256 over ``blocks`` x 64 KiB (hashlib lets other threads run meanwhile)."""
    digest = hashlib.sha256()
    for _ in range(blocks):
        digest.update(_BLOCK)
    return digest.hexdigest()


async def fetch(seconds: float) -> float:
    """I/O-bound work: waits ``seconds`` on the event loop, as a network call would."""
    await asyncio.sleep(seconds)
    return seconds


def validate(record: int) -> None:
    """A validation step that rejects its record: the task fails, on purpose."""
    raise ValueError(f"record {record} is malformed")


async def watchdog(seconds: float) -> None:
    """Waits far longer than its deadline allows: the task times out, on purpose."""
    await asyncio.sleep(seconds)


async def classical_burst(ctx: DemoContext) -> None:
    """Waves of classical work at every priority, each wave arriving while the last still runs.

    Background work (LOW, IDLE) arrives first and fills the queue; batch jobs (NORMAL) come
    next; interactive queries (HIGH) and calibrations (CRITICAL) arrive last and go straight
    to the front. A few tasks fail, a few time out, and some speculative IDLE work is
    cancelled before it gets a worker.
    """
    rng = ctx.rng
    scale = 1 if ctx.quick else 3
    io = (0.001, 0.004) if ctx.quick else (0.005, 0.040)
    cpu = (1, 4) if ctx.quick else (4, 32)
    pause = 0.01 if ctx.quick else 0.4

    def work(name: str, priority: TaskPriority) -> TaskBuilder[Any]:
        builder = Task.classical(name).with_priority(priority)
        if rng.random() < 0.5:
            return builder.with_function(checksum, rng.randint(*cpu))
        return builder.with_function(fetch, rng.uniform(*io))

    speculative: list[TaskHandle[Any]] = []
    for i in range(60 * scale):
        await ctx.submit(work(f"warm-cache-{i}", TaskPriority.LOW))
        handle = await ctx.submit(work(f"speculate-{i}", TaskPriority.IDLE))
        if i % 4 == 0:
            speculative.append(handle)
    await asyncio.sleep(pause)

    for i in range(80 * scale):
        if i % 20 == 7:
            builder = Task.classical(f"validate-{i}").with_function(validate, i)
            await ctx.submit(builder, expect=_S.FAILED)
        else:
            await ctx.submit(work(f"batch-report-{i}", TaskPriority.NORMAL))
    # Speculative work nobody needs any more: cancel it while it still waits.
    for handle in speculative:
        ctx.cancel(handle)
    await asyncio.sleep(pause)

    for wave in range(3):
        for i in range(20 * scale):
            await ctx.submit(work(f"query-{wave}-{i}", TaskPriority.HIGH))
        for i in range(6 * scale):
            await ctx.submit(work(f"calibrate-{wave}-{i}", TaskPriority.CRITICAL))
        # A calibration that hangs: its deadline ends it (it starts at once, being CRITICAL).
        hang = Task.classical(f"calibrate-hang-{wave}").with_priority(TaskPriority.CRITICAL)
        hang = hang.with_function(watchdog, 30.0).with_timeout(0.05 if ctx.quick else 0.3)
        await ctx.submit(hang, expect=_S.TIMED_OUT)
        await asyncio.sleep(pause)


# -- the quantum burst ----------------------------------------------------------------------------

CLOUD = "cloud_qpu"


def _qiskit_available() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("qiskit", "qiskit_aer", "qiskit_ibm_runtime")
    )


def _circuits(rng: random.Random) -> dict[str, Any]:
    """Named circuits of several shapes: Qiskit circuits with the qiskit extra, else specs."""
    if not _qiskit_available():
        from .backends import CircuitSpec

        line = tuple((i, i + 1) for i in range(11))
        return {
            "bell": CircuitSpec(2, ((0, 1),)),
            "ghz5": CircuitSpec(5, line[:4]),
            "ghz12": CircuitSpec(12, line[:11]),
            "star6": CircuitSpec(6, tuple((0, i) for i in range(1, 6))),
        }
    from qiskit import QuantumCircuit

    def ghz(n: int) -> QuantumCircuit:
        qc = QuantumCircuit(n)
        qc.h(0)
        for i in range(n - 1):
            qc.cx(i, i + 1)
        qc.measure_all()
        return qc

    star = QuantumCircuit(6)
    star.h(0)
    for i in range(1, 6):
        star.cx(0, i)
    star.measure_all()
    return {"bell": ghz(2), "ghz5": ghz(5), "ghz12": ghz(12), "star6": star}


def _make_backends(seed: int) -> dict[str, Any]:
    """The embedded default backends: Aer, an offline IBM device model and an all-to-all model
    (with the qiskit extra; shape-only doubles of them without it), and a cloud-like QPU
    double with a fixed cost per job and occasional transient faults."""
    from .backends import MockBackend

    backends: dict[str, Any] = {}
    if _qiskit_available():
        from qiskit.providers.fake_provider import GenericBackendV2
        from qiskit_aer import AerSimulator
        from qiskit_ibm_runtime.fake_provider import FakeBrisbane

        backends["aer"] = AerSimulator()
        backends["ibm_brisbane"] = FakeBrisbane()
        backends["all_to_all_11q"] = GenericBackendV2(11, seed=seed)
    else:
        line = [(i, i + 1) for i in range(126)]
        backends["ibm_brisbane"] = MockBackend(
            "ibm_brisbane", num_qubits=127, all_to_all=False, coupling_map=line,
            latency=0.004, seed=seed,
        )  # fmt: skip
        backends["all_to_all_11q"] = MockBackend(
            "all_to_all_11q", num_qubits=11, latency=0.002, seed=seed
        )
    backends[CLOUD] = MockBackend(
        CLOUD,
        num_qubits=27,
        latency=(0.02, 0.0002),
        failure_rate=0.05,
        max_concurrent_jobs=2,
        max_circuits_per_job=50,
        seed=seed,
    )
    return backends


ROUTING_RULES = (
    "qubits > 11 -> ibm_brisbane; all-to-all -> all_to_all_11q; "
    "default -> least expected completion"
)


async def quantum_burst(ctx: DemoContext) -> None:
    """Circuits at every priority through the routing rules, with a backend outage halfway.

    Small circuits spread across the backends by expected completion time; a 12-qubit GHZ
    state goes to the 127-qubit device model; a star-shaped circuit that asks for all-to-all
    connectivity (``with_all_to_all()``) goes to the all-to-all model. Halfway, the cloud
    QPU goes down: its jobs fail, its breaker opens, its queued work moves elsewhere, and it
    is brought back once a probe finds it healthy.
    """
    rng = ctx.rng
    circuits = _circuits(rng)
    backend = ctx.scheduler.backends.get(CLOUD)
    rounds = 2 if ctx.quick else 6
    per_round = 12 if ctx.quick else 40
    for r in range(rounds):
        if r == rounds // 2 and backend is not None:
            backend.go_down()  # type: ignore[attr-defined]
        for i in range(per_round):
            # A 12-qubit GHZ state under the device model's full noise is slow to simulate
            # (one noisy trajectory per shot): keep it rare.
            name = (
                "ghz12"
                if i % 6 == 5 and r % 2 == 0
                else rng.choice(["bell", "bell", "ghz5", "ghz5", "star6"])
            )
            priority = _PRIORITIES[i % len(_PRIORITIES)]
            builder = (
                Task.quantum(f"{name}-{r}-{i}")
                .with_circuit(circuits[name])
                .with_shots(128 if name == "ghz12" else 256)
                .with_priority(priority)
            )
            if name == "star6":
                # It would run on a coupling map too, with SWAPs; it asks for direct gates.
                builder = builder.with_all_to_all()
            await ctx.submit(builder)
        await asyncio.sleep(0.05 if ctx.quick else 0.2)
        if r == rounds // 2 and backend is not None:
            backend.go_up()  # type: ignore[attr-defined]


async def vqe_h2(ctx: DemoContext) -> None:
    """A VQE on H2 as one hybrid task: every energy sampled on Aer through the scheduler.

    SPSA's evaluations of one iteration go to the backend together, so an iteration costs
    one job. The result is checked against the exact (FCI) energy at the end.
    """
    if not _qiskit_available() or "aer" not in ctx.scheduler.backends:
        ctx.console.print("vqe h2: skipped (needs the qiskit extra)")
        return
    from .workflows import SPSA, VQE, h2_ansatz, h2_hamiltonian

    vqe = VQE(
        h2_hamiltonian(),
        h2_ansatz(),
        optimizer=SPSA(maxiter=10 if ctx.quick else 40, last_avg=5, seed=ctx.rng.randrange(1000)),
        shots=2048 if ctx.quick else 4096,
        final_shots=50_000 if ctx.quick else 200_000,
        initial_point=[0.8],
    )
    task = (
        Task.hybrid("vqe_h2")
        .with_algorithm(vqe)
        .with_backend("aer")
        .with_priority(TaskPriority.HIGH)
    )
    handle = await ctx.submit(task)
    ctx.vqe = handle


def build_scheduler(options: DemoOptions) -> QuantumScheduler:
    """The demo's scheduler: classical workers, the default backends and routing rules.

    The backends are built first, so that loading Qiskit's device models is not counted in
    the scheduler's own time.
    """
    from ._config import SchedulerConfig

    backends = _make_backends(options.seed)
    config = SchedulerConfig(
        workers=options.workers, max_retries=5, breaker_cooldown=0.2, job_timeout=60.0
    )
    scheduler = QuantumScheduler(config=config, journal=options.journal)
    for name, backend in backends.items():
        scheduler.register_backend_nowait(name, backend)
    scheduler.set_routing_rules(
        [
            RoutingRule().when_qubit_count_exceeds(11).route_to("ibm_brisbane"),
            RoutingRule().when_requires_all_to_all().route_to("all_to_all_11q"),
            RoutingRule().default().route_to_least_expected_completion(),
        ]
    )
    return scheduler


def workload_parts(options: DemoOptions) -> list[tuple[str, Part]]:
    """The parts of the demo, in order, each with its title."""
    return [
        ("vqe h2", vqe_h2),
        ("classical burst", classical_burst),
        ("quantum burst", quantum_burst),
    ]


# -- running and reporting ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoReport:
    """What the demo did.

    Attributes:
        metrics: The scheduler's metrics at the end.
        outcomes: Tasks by priority and final status.
        latencies: Completed tasks' latencies in seconds, by priority.
        mismatches: Tasks that did not end as planned, described.
        seconds: Wall-clock duration of the run.
        routing: Circuits (quantum tasks) completed on each backend, by (backend, the routing
            rule that sent them there); every circuit, the ones the VQE submitted included,
            so a backend's rows add up to its ``metrics.backends[name].completed``.
        vqe_energy: The VQE's H2 energy in hartree, when it ran and completed.
    """

    metrics: SchedulerMetrics
    outcomes: dict[TaskPriority, Counter[TaskStatus]]
    latencies: dict[TaskPriority, list[float]]
    mismatches: list[str]
    seconds: float
    routing: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    vqe_energy: float | None = None


class _Tally:
    """Transition listener counting every task the scheduler sees, the demo's own and the ones
    its parts submit inside the scheduler (the VQE's circuits).

    ``admitted`` and ``finished`` count tasks by priority as they are queued and as they end
    (the progress bars); ``circuits`` counts completed circuits by (backend, routing rule),
    the way the scheduler counts a backend's ``completed``: a circuit that ran to completion.
    """

    __slots__ = ("admitted", "circuits", "finished")

    def __init__(self) -> None:
        self.admitted: Counter[TaskPriority] = Counter()
        self.finished: Counter[TaskPriority] = Counter()
        self.circuits: Counter[tuple[str, str]] = Counter()

    def __call__(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        if old is _S.PENDING:
            self.admitted[task.priority] += 1
        if not new.is_terminal:
            return
        self.finished[task.priority] += 1
        if new is _S.COMPLETED and task.task_type is TaskType.QUANTUM:
            backend = task.backend_used
            if backend is not None:
                routing = task.routing
                rule = routing.rule if routing is not None else "(no routing decision)"
                self.circuits[(backend, rule)] += 1


async def run_demo(
    options: DemoOptions,
    console: Console,
    parts: Sequence[tuple[str, Part]] | None = None,
) -> tuple[DemoReport, TraceRecorder]:
    """Run the workload with live progress; return the report and the recorded trace."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.text import Text

    parts = workload_parts(options) if parts is None else parts
    # A terminal gets the live display; anything else (a pipe, a CI log) plain lines.
    show = console.is_terminal if options.progress is None else options.progress
    lines = options.progress is None and not show
    rng = random.Random(options.seed)
    started = time.perf_counter()
    scheduler = build_scheduler(options)
    recorder = scheduler.enable_tracing(max_events=None)
    tally = _Tally()
    add_listener(scheduler, tally)
    steps: TransitionLogger | None = None
    if logging.getLogger(LOGGER_NAME + ".transitions").isEnabledFor(logging.DEBUG):
        steps = TransitionLogger.attach(scheduler)  # `logosq -vv demo`: every task's steps
    ctx = DemoContext(scheduler, rng, options.quick, console)

    progress = Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        auto_refresh=False,
    )
    bars = {p: progress.add_task(p.name, total=0) for p in _PRIORITIES}
    status = Text()

    def refresh() -> None:
        for p, bar in bars.items():
            progress.update(bar, total=tally.admitted[p], completed=tally.finished[p])
        m = scheduler.metrics()
        status.plain = (
            f"{ctx.part}: {m.running} running, {m.queue_depth} waiting, "
            f"{m.finished}/{m.submitted} done, {m.throughput:,.0f} tasks/s"
        )

    async def follow(live: Live) -> None:
        while True:
            refresh()
            live.refresh()
            await asyncio.sleep(0.1)

    def progress_line(rate: float) -> str:
        m = scheduler.metrics()
        return (
            f"[{time.perf_counter() - started:6.1f} s] {ctx.part}: "
            f"{m.finished:,}/{m.submitted:,} tasks done, {m.running} running, "
            f"{m.queue_depth} waiting, {rate:,.0f} tasks/s"
        )

    async def report_every(interval: float) -> None:
        # The rate is over the last interval, not the whole run: it shows a stall.
        last_at, last_done = time.perf_counter(), scheduler.metrics().finished
        while True:
            await asyncio.sleep(interval)
            at, done = time.perf_counter(), scheduler.metrics().finished
            console.print(
                progress_line((done - last_done) / max(at - last_at, 1e-9)), soft_wrap=True
            )
            last_at, last_done = at, done

    async with scheduler:
        for backend in scheduler.backends.values():
            await backend.start()  # simulator workers start loading while classical work runs
        live = Live(Group(progress, status), console=console, auto_refresh=False, transient=False)
        follower: asyncio.Task[None] | None = None
        if show:
            live.start()
            follower = asyncio.create_task(follow(live))
        elif lines:
            follower = asyncio.create_task(report_every(options.progress_interval))
        try:
            for title, part in parts:
                ctx.part = title
                if not show:
                    console.print(f"running {title} ...")
                await part(ctx)
            ctx.part = "finishing"
            await scheduler.join()
        finally:
            if follower is not None:
                follower.cancel()
                # Wait for the follower to stop; a cancellation of this task still propagates.
                await asyncio.gather(follower, return_exceptions=True)
            if show:
                refresh()
                live.refresh()
                live.stop()
        metrics = scheduler.metrics()
        if lines:
            ctx.part = "done"
            rate = metrics.finished / (time.perf_counter() - started)
            console.print(progress_line(rate), soft_wrap=True)
    remove_listener(scheduler, tally)
    recorder.detach()
    if steps is not None:
        steps.detach()

    outcomes: dict[TaskPriority, Counter[TaskStatus]] = {p: Counter() for p in _PRIORITIES}
    latencies: dict[TaskPriority, list[float]] = {p: [] for p in _PRIORITIES}
    mismatches: list[str] = []
    for planned in ctx.planned:
        handle = planned.handle
        outcomes[handle.priority][handle.status] += 1
        if handle.status is not planned.expected:
            mismatches.append(
                f"task {handle.task_id} ({handle.name!r}, {planned.part}): "
                f"{handle.status.value}, expected {planned.expected.value}"
            )
        if handle.status is _S.COMPLETED:
            try:
                result = await handle
            except TaskError:  # pragma: no cover - a completed handle does not raise
                continue
            latencies[handle.priority].append(result.latency)
    vqe_energy = None
    if ctx.vqe is not None and ctx.vqe.status is _S.COMPLETED:
        vqe_energy = float((await ctx.vqe).value.energy)
    report = DemoReport(
        metrics,
        outcomes,
        latencies,
        mismatches,
        time.perf_counter() - started,
        dict(tally.circuits),
        vqe_energy,
    )
    return report, recorder


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:,.1f} ms"


def print_report(report: DemoReport, console: Console) -> None:
    """The end-of-run tables: metrics, outcomes by priority, and backends when there are any."""
    from rich.table import Table

    m = report.metrics
    summary = Table(title="Scheduler metrics", show_header=False, title_justify="left")
    summary.add_column("metric", style="bold")
    summary.add_column("value", justify="right")
    rows = [
        ("tasks submitted", f"{m.submitted:,}"),
        ("completed / failed", f"{m.completed:,} / {m.failed:,}"),
        ("timed out / cancelled", f"{m.timed_out:,} / {m.cancelled:,}"),
        ("throughput", f"{m.throughput:,.0f} tasks/s"),
        ("queue wait p50 / p99", f"{_ms(m.queue_wait_p50)} / {_ms(m.queue_wait_p99)}"),
        ("latency p50 / p99", f"{_ms(m.latency_p50)} / {_ms(m.latency_p99)}"),
        ("worker utilisation", f"{m.worker_utilisation:.0%}"),
        ("retries / reroutes", f"{m.retries} / {m.reroutes}"),
        ("preemptions / breaker trips", f"{m.preemptions} / {m.breaker_trips}"),
        ("wall time", f"{report.seconds:.2f} s"),
    ]
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)

    own = sum(sum(counts.values()) for counts in report.outcomes.values())
    inner = m.submitted - own
    caption = f"The {own:,} tasks the demo submitted, each checked against its planned outcome"
    if inner > 0:
        caption += (
            f"; the other {inner:,} of the {m.submitted:,} submitted were submitted by its "
            "tasks themselves (the VQE's circuits, counted in Backends and Routing below)"
        )
    by_priority = Table(
        title="By priority: the demo's own tasks",
        title_justify="left",
        caption=caption + ".",
        caption_justify="left",
    )
    for column in ("priority", "tasks", "completed", "failed", "timed out", "cancelled"):
        by_priority.add_column(column, justify="left" if column == "priority" else "right")
    by_priority.add_column("latency p50", justify="right")
    for p in _PRIORITIES:
        counts = report.outcomes[p]
        lats = sorted(report.latencies[p])
        p50 = lats[(len(lats) - 1) // 2] if lats else None
        by_priority.add_row(
            p.name,
            str(sum(counts.values())),
            str(counts[_S.COMPLETED]),
            str(counts[_S.FAILED]),
            str(counts[_S.TIMED_OUT]),
            str(counts[_S.CANCELLED]),
            _ms(p50),
        )
    console.print(by_priority)

    if m.backends:
        backends = Table(
            title="Backends: circuits run on each",
            title_justify="left",
            caption=(
                "circuits completed: quantum tasks that ran to completion on the backend, the "
                "VQE's included; failed jobs: jobs that raised (their circuits were retried, "
                "rerouted or failed); utilisation: share of its job slots' time in use."
            ),
            caption_justify="left",
        )
        columns = ("backend", "circuits completed", "failed jobs", "breaker", "utilisation")
        for column in columns:
            backends.add_column(column, justify="left" if column == "backend" else "right")
        for name, b in sorted(m.backends.items()):
            backends.add_row(
                name, str(b.completed), str(b.failed_attempts), b.breaker_state,
                f"{b.utilisation:.0%}",
            )  # fmt: skip
        console.print(backends)
    if report.vqe_energy is not None:
        # The VQE ran, so the qiskit extra it needs is there.
        from .workflows._problems import H2_FCI_ELECTRONIC_ENERGY as exact

        error = (report.vqe_energy - exact) * 1e3
        console.print(
            f"VQE H2 (sampled on Aer): {report.vqe_energy:.6f} Ha, "
            f"{error:+.2f} mHa from the exact {exact} Ha"
        )
    if report.routing:
        routing = Table(
            title="Routing: completed circuits by the rule that chose their backend",
            title_justify="left",
            caption=(
                "Every completed circuit, the VQE's included: a backend's rows add up to its "
                "circuits completed in Backends. 'pinned': the task named its backend."
            ),
            caption_justify="left",
        )
        for column in ("backend", "rule", "circuits completed"):
            routing.add_column(
                column, justify="left" if column != "circuits completed" else "right"
            )
        for (backend, rule), n in sorted(report.routing.items()):
            routing.add_row(backend, rule, str(n))
        console.print(routing)


async def main_async(
    options: DemoOptions,
    console: Console | None = None,
    parts: Sequence[tuple[str, Part]] | None = None,
) -> int:
    """Run the demo, print its report, write the trace and the timeline.

    Args:
        options: How to run it.
        console: Where to print (default: stdout).
        parts: The workload (default: :func:`workload_parts`).

    Returns:
        0 if every task ended as planned, 1 otherwise.
    """
    from rich.console import Console

    console = console or Console(file=sys.stdout)
    report, recorder = await run_demo(options, console, parts)
    print_report(report, console)
    if options.trace is not None:
        path = recorder.export_chrome_trace(options.trace)
        console.print(f"trace: {path} (open it in https://ui.perfetto.dev)")
    if options.timeline is not None:
        from .observability._timeline import render_timeline

        trace = recorder.chrome_trace()
        title = (
            f"logosq demo{' --quick' if options.quick else ''}: {report.metrics.submitted} tasks"
        )
        path = render_timeline(trace, options.timeline, title=title)
        console.print(f"timeline: {path}")
    if report.mismatches:
        console.print(f"[bold red]{len(report.mismatches)} tasks did not end as planned:[/]")
        for line in report.mismatches[:20]:
            console.print(f"  {line}")
        return 1
    console.print("[bold green]every task ended as planned[/]")
    return 0
