"""Prometheus exposition: the text parses, and every figure agrees with the metrics snapshot."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import urllib.error
import urllib.request
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from logosq_os_scheduler import (
    BackendMetrics,
    BlockingScheduler,
    ManualClock,
    QuantumScheduler,
    SchedulerMetrics,
    Task,
    TaskPriority,
    TaskStatus,
    TaskType,
)
from logosq_os_scheduler.observability._prometheus import PrometheusExporter

pytestmark = pytest.mark.observability

P = TaskPriority
Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Exposition text -> {sample name: {labels: value}} and {family name: type}."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return samples, types


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples[name][frozenset(labels.items())]


def finished_with(samples: Samples, status: str) -> float:
    """Tasks ended in ``status``, summed over the priority and type labels."""
    return sum(
        n
        for labels, n in samples["logosq_tasks_finished_total"].items()
        if dict(labels)["status"] == status
    )


def add(a: int, b: int) -> int:
    return a + b


def boom() -> None:
    raise ValueError("fails on purpose")


async def wait_for(event: asyncio.Event) -> str:
    await event.wait()
    return "released"


def check_against(samples: Samples, m: SchedulerMetrics) -> None:
    """Every family the exporter writes, against the snapshot it was taken from."""
    assert one(samples, "logosq_tasks_submitted_total") == m.submitted
    for p in TaskPriority:
        assert (
            one(samples, "logosq_tasks_submitted_by_priority_total", priority=p.name)
            == (m.by_priority[p])
        )
        assert one(samples, "logosq_queue_depth", priority=p.name) == m.queue_depth_by_priority[p]
    for t in TaskType:
        assert one(samples, "logosq_tasks_submitted_by_type_total", type=t.value) == m.by_type[t]
    finished = samples["logosq_tasks_finished_total"]
    # One series per (status, priority, type), each equal to the snapshot's count.
    assert {k: v for k, v in finished.items() if v} == {
        frozenset({("status", st.value), ("priority", p.name), ("type", t.value)}): n
        for (st, p, t), n in m.finished_by_class.items()
    }
    by_status: dict[str, float] = {}
    for labels, n in finished.items():
        if n:
            status = dict(labels)["status"]
            by_status[status] = by_status.get(status, 0) + n
    assert by_status == {
        k: v
        for k, v in {
            "completed": m.completed,
            "failed": m.failed,
            "cancelled": m.cancelled,
            "timed_out": m.timed_out,
        }.items()
        if v
    }
    assert samples["logosq_tasks_active"] == {
        frozenset({("status", "queued")}): m.queued,
        frozenset({("status", "running")}): m.running,
        frozenset({("status", "preempted")}): m.preempted,
    }
    assert sum(finished.values()) + sum(samples["logosq_tasks_active"].values()) == m.submitted
    assert sum(samples["logosq_queue_depth"].values()) == m.queue_depth
    for q, value in (("0.5", m.latency_p50), ("0.99", m.latency_p99), ("0.999", m.latency_p999)):
        got = one(samples, "logosq_task_latency_seconds", quantile=q)
        assert math.isnan(got) if value is None else got == value
    assert one(samples, "logosq_task_latency_seconds_count") == m.completed
    for q, value in (("0.5", m.queue_wait_p50), ("0.99", m.queue_wait_p99)):
        got = one(samples, "logosq_task_queue_wait_seconds", quantile=q)
        assert math.isnan(got) if value is None else got == value
    assert one(samples, "logosq_worker_utilisation_ratio") == m.worker_utilisation
    assert one(samples, "logosq_throughput_tasks_per_second", window="uptime") == m.throughput
    assert one(samples, "logosq_throughput_tasks_per_second", window="recent") == (
        m.recent_throughput
    )
    assert one(samples, "logosq_uptime_seconds") == m.uptime
    assert one(samples, "logosq_retries_total") == m.retries
    assert one(samples, "logosq_reroutes_total") == m.reroutes
    assert one(samples, "logosq_preemptions_total") == m.preemptions
    assert one(samples, "logosq_breaker_trips_total") == m.breaker_trips
    assert one(samples, "logosq_preempted_seconds_total") == m.preempted_seconds


async def test_exposition_agrees_with_the_snapshot_while_busy_and_when_done() -> None:
    clock = ManualClock(100.0)
    async with QuantumScheduler(2, clock=clock) as s:
        exporter = PrometheusExporter(s)
        gate = asyncio.Event()
        holders = [
            await s.submit(Task.classical("hold").with_function(wait_for, gate)) for _ in "ab"
        ]
        priorities = [P.CRITICAL, P.HIGH, P.HIGH, P.NORMAL, P.LOW, P.LOW, P.LOW, P.IDLE]
        queued = [
            await s.submit(Task.classical(f"q{i}").with_function(add, i, 1).with_priority(p))
            for i, p in enumerate(priorities)
        ]
        failing = [await s.submit(Task.classical("f").with_function(boom)) for _ in range(3)]
        assert queued[7].cancel() is True

        # Busy: two running, ten waiting (one cancelled), nothing finished but the cancel.
        samples, types = parse(exporter.exposition())
        m = s.metrics()
        check_against(samples, m)
        assert (m.running, m.queued, m.cancelled) == (2, 10, 1)
        assert one(samples, "logosq_queue_depth", priority="LOW") == 3
        assert one(samples, "logosq_queue_depth", priority="NORMAL") == 4  # q3 and 3 failing
        assert math.isnan(one(samples, "logosq_task_latency_seconds", quantile="0.5"))
        assert types["logosq_task_latency_seconds"] == "summary"
        assert types["logosq_tasks_finished"] == "counter"
        assert types["logosq_queue_depth"] == "gauge"

        clock.advance(3.0)  # everything queued has now waited three seconds
        gate.set()
        await s.join()
        clock.advance(1.0)
        samples, _ = parse(exporter.exposition())
        m = s.metrics()
        check_against(samples, m)
        assert (m.completed, m.failed, m.cancelled, m.submitted) == (9, 3, 1, 13)
        assert one(samples, "logosq_task_latency_seconds", quantile="0.5") == 3.0
        assert one(samples, "logosq_uptime_seconds") == 4.0
        assert one(samples, "logosq_throughput_tasks_per_second", window="uptime") == 9 / 4.0
        assert samples.get("logosq_backend_capacity", {}) == {}  # no backends registered
        assert all(h.done() for h in holders + queued + failing)


async def test_serves_over_http_from_another_thread_and_stops() -> None:
    async with QuantumScheduler(2) as s:
        handles = [await s.submit(Task.classical("t").with_function(add, i, 1)) for i in range(25)]
        await s.join()
        with PrometheusExporter(s) as exporter:
            port = exporter.serve(0)
            assert exporter.port == port
            url = f"http://127.0.0.1:{port}/metrics"
            # The scrape runs on the HTTP server's thread; the snapshot is taken on this loop,
            # which must stay free meanwhile: fetch from a thread.
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
            samples, _ = parse(body.decode())
            m = s.metrics()
            assert one(samples, "logosq_tasks_submitted_total") == m.submitted == 25
            assert finished_with(samples, "completed") == 25
            with pytest.raises(RuntimeError, match="already serving"):
                exporter.serve(0)
        assert exporter.port is None
        with pytest.raises(urllib.error.URLError):
            await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    assert all(h.done() for h in handles)


def test_blocking_scheduler_is_scraped_without_deadlock() -> None:
    with BlockingScheduler(2) as s:
        for i in range(5):
            s.submit(Task.classical("t").with_function(add, i, 1)).result(10)
        exporter = PrometheusExporter(s)
        samples, _ = parse(exporter.exposition())
        assert finished_with(samples, "completed") == 5


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsWithClasses(SchedulerMetrics):
    """The snapshot as it would be with the per-class counts proposed for the core."""

    finished_by_class: Mapping[tuple[TaskStatus, TaskPriority, TaskType], int] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    latency_sum: float | None = None


class FixedSource:
    """A snapshot source for the parts of the snapshot the classical runtime cannot yet fill
    (backends, per-class counts): it returns the snapshot it was given."""

    def __init__(self, snapshot: SchedulerMetrics) -> None:
        self.snapshot = snapshot

    def metrics(self) -> SchedulerMetrics:
        return self.snapshot


def snapshot_with_backends(**extra: Any) -> SchedulerMetrics:
    zeros = MappingProxyType(dict.fromkeys(TaskPriority, 0))
    base: dict[str, Any] = dict(
        submitted=12,
        queued=2,
        running=1,
        preempted=0,
        completed=7,
        failed=1,
        cancelled=1,
        timed_out=0,
        by_priority=MappingProxyType({**zeros, P.HIGH: 5, P.NORMAL: 7}),
        by_type=MappingProxyType({TaskType.CLASSICAL: 4, TaskType.QUANTUM: 8, TaskType.HYBRID: 0}),
        queue_depth=2,
        queue_depth_by_priority=MappingProxyType({**zeros, P.NORMAL: 2}),
        uptime=10.0,
        throughput=0.7,
        recent_throughput=1.5,
        queue_wait_p50=0.01,
        queue_wait_p99=0.5,
        latency_p50=0.2,
        latency_p99=1.25,
        latency_p999=1.25,
        worker_utilisation=0.25,
        retries=3,
        reroutes=1,
        preemptions=2,
        breaker_trips=1,
        preempted_seconds=0.75,
        backends=MappingProxyType(
            {
                "aer": BackendMetrics("aer", 4, 1, 2, 5, 0, True, "closed", 0.5),
                "ibm_fake": BackendMetrics("ibm_fake", 1, 0, 0, 0, 5, False, "open", 0.0),
            }
        ),
        finished_by_class=MappingProxyType(
            {
                (TaskStatus.COMPLETED, P.HIGH, TaskType.QUANTUM): 5,
                (TaskStatus.COMPLETED, P.NORMAL, TaskType.CLASSICAL): 2,
                (TaskStatus.FAILED, P.NORMAL, TaskType.QUANTUM): 1,
                (TaskStatus.CANCELLED, P.NORMAL, TaskType.CLASSICAL): 1,
            }
        ),
        latency_sum=0.0,
    )
    base.update(extra)
    if extra:
        return MetricsWithClasses(**base)
    return SchedulerMetrics(**base)


def test_backend_families_and_fault_counters() -> None:
    m = snapshot_with_backends()
    samples, types = parse(PrometheusExporter(FixedSource(m)).exposition())
    check_against(samples, m)
    assert samples["logosq_backend_capacity"] == {
        frozenset({("backend", "aer")}): 4,
        frozenset({("backend", "ibm_fake")}): 1,
    }
    assert one(samples, "logosq_backend_busy", backend="aer") == 1
    assert one(samples, "logosq_backend_queue_depth", backend="aer") == 2
    assert one(samples, "logosq_backend_completed_total", backend="aer") == 5
    assert one(samples, "logosq_backend_failed_attempts_total", backend="ibm_fake") == 5
    assert one(samples, "logosq_backend_healthy", backend="ibm_fake") == 0
    assert one(samples, "logosq_backend_utilisation_ratio", backend="aer") == 0.5
    states = {
        dict(labels)["state"]: v
        for labels, v in samples["logosq_backend_breaker_state"].items()
        if dict(labels)["backend"] == "ibm_fake"
    }
    assert states == {"closed": 0, "open": 1, "half_open": 0}
    assert types["logosq_backend_completed"] == "counter"
    assert types["logosq_breaker_trips"] == "counter"
    assert one(samples, "logosq_task_latency_seconds_sum") == 0.0


def test_per_class_counts_and_latency_sum_when_the_snapshot_has_them() -> None:
    by_class = {
        (TaskStatus.COMPLETED, P.HIGH, TaskType.QUANTUM): 5,
        (TaskStatus.COMPLETED, P.NORMAL, TaskType.CLASSICAL): 2,
        (TaskStatus.FAILED, P.NORMAL, TaskType.QUANTUM): 1,
        (TaskStatus.CANCELLED, P.NORMAL, TaskType.CLASSICAL): 1,
    }
    m = snapshot_with_backends(finished_by_class=MappingProxyType(by_class), latency_sum=2.5)
    samples, _ = parse(PrometheusExporter(FixedSource(m)).exposition())
    finished = samples["logosq_tasks_finished_total"]
    assert len(finished) == 4 * 5 * 3  # every combination, zeros included
    assert (
        one(
            samples,
            "logosq_tasks_finished_total",
            status="completed",
            priority="HIGH",
            type="quantum",
        )
        == 5
    )
    assert sum(finished.values()) == m.finished
    assert one(samples, "logosq_task_latency_seconds_sum") == 2.5


def test_exporters_on_one_registry_clash_but_own_registries_do_not() -> None:
    source = FixedSource(snapshot_with_backends())
    first = PrometheusExporter(source)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusExporter(source, first.registry)
    second = PrometheusExporter(source, namespace="other")
    assert "other_tasks_submitted_total 12.0" in second.exposition()
    first.close()
    first.close()  # closing twice is harmless
    PrometheusExporter(source, first.registry)  # the names are free again


def test_rejects_what_has_no_metrics() -> None:
    with pytest.raises(TypeError, match="metrics"):
        PrometheusExporter(object())  # type: ignore[arg-type]
