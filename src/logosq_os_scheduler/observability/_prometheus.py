"""Prometheus exposition of the scheduler's metrics (needs the ``observability`` extra).

:class:`PrometheusExporter` registers a collector that takes one
:meth:`~logosq_os_scheduler.QuantumScheduler.metrics` snapshot per scrape and turns it into
metric families. Nothing is counted per task on the scheduler's hot path: the figures are the
ones the scheduler keeps anyway, read when Prometheus asks. The metrics, all prefixed
``logosq_``:

======================================  =========  =========================================
Name                                    Type       Labels
======================================  =========  =========================================
tasks_submitted_total                   counter
tasks_submitted_by_priority_total       counter    priority
tasks_submitted_by_type_total           counter    type
tasks_finished_total                    counter    status (+ priority, type if the snapshot
                                                   has ``finished_by_class``)
tasks_active                            gauge      status (queued, running, preempted)
queue_depth                             gauge      priority
task_latency_seconds                    summary    quantile 0.5, 0.99, 0.999 (completed tasks)
task_queue_wait_seconds                 summary    quantile 0.5, 0.99
worker_utilisation_ratio                gauge
throughput_tasks_per_second             gauge      window ("uptime", "recent")
uptime_seconds                          gauge
retries_total, reroutes_total,          counter
preemptions_total, breaker_trips_total,
preempted_seconds_total
abandoned_threads_total,                counter
unreplaced_threads_total
abandoned_threads_running               gauge
backend_capacity, backend_busy,         gauge      backend
backend_queue_depth, backend_healthy,
backend_utilisation_ratio
backend_breaker_state                   gauge      backend, state (1 for the current state)
backend_completed_total,                counter    backend
backend_failed_attempts_total,
backend_withdrawn_jobs_total
======================================  =========  =========================================
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .._task import TERMINAL, TaskPriority, TaskStatus, TaskType
from ._metrics import SchedulerMetrics

__all__ = ["MetricsSource", "PrometheusExporter", "SchedulerCollector", "read_snapshot"]

_PRIORITIES = sorted(TaskPriority, reverse=True)
# Label order: the enum's own.
_FINISHED = tuple(s for s in TaskStatus if s in TERMINAL)
_ACTIVE = tuple(s for s in TaskStatus if s not in TERMINAL and s is not TaskStatus.PENDING)
_BREAKER_STATES = ("closed", "open", "half_open")


@runtime_checkable
class MetricsSource(Protocol):
    """Anything with a ``metrics()`` snapshot: a QuantumScheduler or a BlockingScheduler."""

    def metrics(self) -> SchedulerMetrics:
        """A snapshot of the scheduler's figures."""
        ...


@runtime_checkable
class _FromAnyThread(Protocol):
    """A source whose snapshot must be taken on its own loop (a QuantumScheduler)."""

    def metrics_from_any_thread(self, timeout: float | None = 5.0) -> SchedulerMetrics: ...


def read_snapshot(source: MetricsSource, timeout: float = 5.0) -> SchedulerMetrics:
    """Take ``source.metrics()`` safely from any thread.

    A QuantumScheduler's state belongs to its event-loop thread, and a scrape arrives on the
    HTTP server's thread: its ``metrics_from_any_thread`` takes the snapshot on the loop and
    hands it back. A BlockingScheduler's ``metrics()`` makes that hop itself.

    Raises:
        TimeoutError: If the loop does not take the snapshot within ``timeout`` seconds.
    """
    if isinstance(source, _FromAnyThread):
        return source.metrics_from_any_thread(timeout)
    return source.metrics()


def _nan_if_none(value: float | None) -> float:
    # Prometheus reports the quantiles of a summary with no observations as NaN.
    return math.nan if value is None else value


class SchedulerCollector(Collector):
    """A custom Prometheus collector reading a scheduler's metrics snapshot at scrape time.

    Args:
        source: The scheduler (anything with ``metrics()``).
        namespace: Prefix of every metric name.
        timeout: Seconds a scrape waits for the scheduler's loop to take the snapshot.
    """

    def __init__(
        self, source: MetricsSource, *, namespace: str = "logosq", timeout: float = 5.0
    ) -> None:
        if not isinstance(source, MetricsSource):
            raise TypeError(f"expected a scheduler with metrics(), got {type(source).__name__}")
        self._source = source
        self._ns = namespace
        self._timeout = timeout

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples, so a registry can check names without a scrape."""
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        """One snapshot, as metric families."""
        yield from self._families(read_snapshot(self._source, self._timeout))

    def _families(self, m: SchedulerMetrics | None) -> Iterator[Metric]:
        ns = self._ns

        def counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(f"{ns}_{name}", doc, labels=labels)

        def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{ns}_{name}", doc, labels=labels)

        submitted = counter("tasks_submitted", "Tasks admitted since the scheduler started.")
        by_priority = counter(
            "tasks_submitted_by_priority", "Tasks admitted, by priority.", ["priority"]
        )
        by_type = counter("tasks_submitted_by_type", "Tasks admitted, by task type.", ["type"])
        by_class = getattr(m, "finished_by_class", None) if m is not None else None
        finished = counter(
            "tasks_finished",
            "Tasks that reached a terminal state, by that state.",
            ["status", "priority", "type"] if isinstance(by_class, Mapping) else ["status"],
        )
        active = gauge("tasks_active", "Tasks in a non-terminal state now.", ["status"])
        depth = gauge("queue_depth", "Tasks waiting for a slot now, by priority.", ["priority"])
        latency = Metric(
            f"{ns}_task_latency_seconds",
            "Submission to completion of recently completed tasks.",
            "summary",
        )
        wait = Metric(
            f"{ns}_task_queue_wait_seconds",
            "Submission to first start of recently started tasks.",
            "summary",
        )
        utilisation = gauge(
            "worker_utilisation_ratio", "Share of classical slot time in use since start."
        )
        throughput = gauge(
            "throughput_tasks_per_second",
            "Tasks completed per second: over the uptime, or over the recent completions.",
            ["window"],
        )
        uptime = gauge("uptime_seconds", "Seconds since the scheduler started.")
        retries = counter("retries", "Attempts retried after a retryable backend error.")
        reroutes = counter("reroutes", "Tasks sent to another backend than first chosen.")
        preemptions = counter("preemptions", "Running tasks preempted for more urgent work.")
        trips = counter("breaker_trips", "Times a backend's circuit breaker opened.")
        preempted = counter(
            "preempted_seconds", "Time tasks spent preempted, waiting to resume (their cost)."
        )
        abandoned = counter(
            "abandoned_threads",
            "Worker threads given up (and replaced) because their task ended early.",
        )
        abandoned_running = gauge(
            "abandoned_threads_running", "Abandoned worker threads still running their function."
        )
        unreplaced = counter(
            "unreplaced_threads",
            "Threads of tasks ended early that kept their slot: max_abandoned_threads was reached.",
        )
        b_capacity = gauge("backend_capacity", "Jobs a backend may run at once.", ["backend"])
        b_busy = gauge("backend_busy", "Jobs a backend runs now.", ["backend"])
        b_depth = gauge("backend_queue_depth", "Tasks waiting for a backend now.", ["backend"])
        b_healthy = gauge(
            "backend_healthy", "1 if the backend is in rotation (breaker closed).", ["backend"]
        )
        b_util = gauge(
            "backend_utilisation_ratio", "Share of a backend's slot time in use.", ["backend"]
        )
        b_state = gauge(
            "backend_breaker_state",
            "The circuit breaker's state: 1 for the current one.",
            ["backend", "state"],
        )
        b_done = counter("backend_completed", "Tasks a backend completed.", ["backend"])
        b_failed = counter(
            "backend_failed_attempts", "Attempts on a backend that raised.", ["backend"]
        )
        b_withdrawn = counter(
            "backend_withdrawn_jobs",
            "Jobs taken back unstarted from a backend's queue for more urgent work.",
            ["backend"],
        )
        families: list[Metric] = [
            submitted,
            by_priority,
            by_type,
            finished,
            active,
            depth,
            latency,
            wait,
            utilisation,
            throughput,
            uptime,
            retries,
            reroutes,
            preemptions,
            trips,
            preempted,
            abandoned,
            abandoned_running,
            unreplaced,
            b_capacity,
            b_busy,
            b_depth,
            b_healthy,
            b_util,
            b_state,
            b_done,
            b_failed,
            b_withdrawn,
        ]
        if m is None:
            yield from families
            return

        submitted.add_metric([], m.submitted)
        for p in _PRIORITIES:
            by_priority.add_metric([p.name], m.by_priority.get(p, 0))
            depth.add_metric([p.name], m.queue_depth_by_priority.get(p, 0))
        for t in TaskType:
            by_type.add_metric([t.value], m.by_type.get(t, 0))
        counts = m.by_status
        if isinstance(by_class, Mapping):
            # Every combination, zeros included, so each series exists from the first scrape.
            for s in _FINISHED:
                for p in _PRIORITIES:
                    for t in TaskType:
                        finished.add_metric([s.value, p.name, t.value], by_class.get((s, p, t), 0))
        else:
            for s in _FINISHED:
                finished.add_metric([s.value], counts[s])
        for s in _ACTIVE:
            active.add_metric([s.value], counts[s])

        for q, value in (
            ("0.5", m.latency_p50),
            ("0.99", m.latency_p99),
            ("0.999", m.latency_p999),
        ):
            latency.add_sample(latency.name, {"quantile": q}, _nan_if_none(value))
        # Latencies are recorded for every completed task.
        latency.add_sample(latency.name + "_count", {}, m.completed)
        latency_sum = getattr(m, "latency_sum", None)
        if isinstance(latency_sum, float):
            latency.add_sample(latency.name + "_sum", {}, latency_sum)
        for q, value in (("0.5", m.queue_wait_p50), ("0.99", m.queue_wait_p99)):
            wait.add_sample(wait.name, {"quantile": q}, _nan_if_none(value))

        utilisation.add_metric([], m.worker_utilisation)
        throughput.add_metric(["uptime"], m.throughput)
        throughput.add_metric(["recent"], m.recent_throughput)
        uptime.add_metric([], m.uptime)
        retries.add_metric([], m.retries)
        reroutes.add_metric([], m.reroutes)
        preemptions.add_metric([], m.preemptions)
        trips.add_metric([], m.breaker_trips)
        preempted.add_metric([], m.preempted_seconds)
        abandoned.add_metric([], m.abandoned_threads)
        abandoned_running.add_metric([], m.abandoned_threads_running)
        unreplaced.add_metric([], m.unreplaced_threads)

        for name, b in sorted(m.backends.items()):
            b_capacity.add_metric([name], b.capacity)
            b_busy.add_metric([name], b.busy)
            b_depth.add_metric([name], b.queued)
            b_healthy.add_metric([name], 1.0 if b.healthy else 0.0)
            b_util.add_metric([name], b.utilisation)
            for state in _BREAKER_STATES:
                b_state.add_metric([name, state], 1.0 if b.breaker_state == state else 0.0)
            b_done.add_metric([name], b.completed)
            b_failed.add_metric([name], b.failed_attempts)
            b_withdrawn.add_metric([name], b.withdrawn_jobs)
        yield from families


class PrometheusExporter:
    """Exposes a scheduler's metrics to Prometheus.

    Serve them on a port for Prometheus to scrape::

        exporter = PrometheusExporter(scheduler)
        port = exporter.serve(9464)        # http://127.0.0.1:9464/metrics

    or render the text format yourself with :meth:`exposition`.

    Args:
        scheduler: A :class:`~logosq_os_scheduler.QuantumScheduler` or ``BlockingScheduler``
            (anything with ``metrics()``).
        registry: Where to register the collector. Default: a registry of its own, so two
            exporters (or tests) never clash on names; pass ``prometheus_client.REGISTRY`` to
            join the process-wide one your application already serves.
        namespace: Prefix of every metric name.
        timeout: Seconds a scrape waits for the scheduler's event loop to take the snapshot.

    Raises:
        TypeError: If ``scheduler`` has no ``metrics()``.
        ValueError: If ``registry`` already has metrics of these names.
    """

    def __init__(
        self,
        scheduler: MetricsSource,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "logosq",
        timeout: float = 5.0,
    ) -> None:
        self.collector = SchedulerCollector(scheduler, namespace=namespace, timeout=timeout)
        self.registry = CollectorRegistry() if registry is None else registry
        self.registry.register(self.collector)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def exposition(self) -> str:
        """The metrics now, in the Prometheus text exposition format."""
        return prometheus_client.generate_latest(self.registry).decode("utf-8")

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP on a daemon thread.

        Args:
            port: The TCP port; 0 picks a free one.
            addr: The address to listen on. The default is local only; pass ``"0.0.0.0"`` to
                let other machines scrape.

        Returns:
            The port it listens on.

        Raises:
            RuntimeError: If it is serving already.
            OSError: If the port cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError(
                f"already serving on port {self._server.server_port}; close() it first"
            )
        server, thread = prometheus_client.start_http_server(port, addr, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_port)

    @property
    def port(self) -> int | None:
        """The port being served, or None."""
        return None if self._server is None else int(self._server.server_port)

    def close(self) -> None:
        """Stop serving (if serving) and unregister the collector."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()
        # A second close() finds it unregistered already.
        with contextlib.suppress(KeyError):
            self.registry.unregister(self.collector)

    def __enter__(self) -> PrometheusExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
