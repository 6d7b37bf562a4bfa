"""The package is a library: it prints nothing on stderr unless its user configures logging."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

import logosq_os_scheduler
from logosq_os_scheduler import (
    CircuitSpec,
    MockBackend,
    QuantumScheduler,
    RoutingRule,
    SchedulerConfig,
    Task,
)
from logosq_os_scheduler.observability import LOGGER_NAME

# Tasks that time out, fail and are cancelled, and a backend whose failures trip its breaker
# (a WARNING record), with the caller handling each outcome.
_WORKLOAD = textwrap.dedent(
    """
    import asyncio
    import logosq_os_scheduler as lq

    def boom():
        raise ValueError("bad input")

    async def main():
        config = lq.SchedulerConfig(workers=2, max_retries=0, breaker_threshold=1)
        clock = lq.ManualClock()  # time moves when the script says: no waiting on the wall
        async with lq.QuantumScheduler(config=config, clock=clock) as s:
            await s.register_backend("flaky", lq.MockBackend("flaky", failure_rate=1.0))
            circuit = lq.CircuitSpec(2, ((0, 1),))
            quantum = await s.submit(lq.Task.quantum("q").with_circuit(circuit))
            never = asyncio.Event()
            timed = await s.submit(lq.Task.classical("sleepy").with_function(never.wait)
                                   .with_timeout(5))
            failed = await s.submit(lq.Task.classical("boom").with_function(boom))
            parked = await s.submit(lq.Task.classical("parked").with_function(never.wait))
            parked.cancel()
            clock.advance(5)  # past the sleepy task's deadline
            for handle, error in ((timed, lq.TaskTimeoutError), (failed, lq.TaskFailedError),
                                  (parked, lq.TaskCancelledError), (quantum, lq.TaskError)):
                try:
                    await handle
                except error:
                    pass
                else:
                    raise SystemExit(f"{handle!r} did not raise {error.__name__}")
        print("done")

    asyncio.run(main())
    """
)


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger(logosq_os_scheduler.__name__).handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)
    assert logosq_os_scheduler.__name__ == LOGGER_NAME


def test_handled_timeouts_failures_and_cancellations_print_nothing() -> None:
    proc = _run(_WORKLOAD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    assert proc.stderr == ""


def test_a_user_who_configures_logging_sees_the_records() -> None:
    proc = _run("import logging; logging.basicConfig(level=logging.INFO)\n" + _WORKLOAD)
    assert proc.returncode == 0, proc.stderr
    assert "task 2 ('sleepy') timed out" in proc.stderr
    assert "task 3 ('boom') failed: ValueError: bad input" in proc.stderr
    assert "backend 'flaky' taken out of rotation (circuit breaker open)" in proc.stderr


def test_without_the_null_handler_python_would_print_the_warnings() -> None:
    # The workload does produce a WARNING record: the NullHandler is what keeps it off stderr.
    unguarded = "import logosq_os_scheduler, logging\n"
    unguarded += "logging.getLogger('logosq_os_scheduler').handlers.clear()\n"
    proc = _run(unguarded + _WORKLOAD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "backend 'flaky' taken out of rotation (circuit breaker open)\n"


async def test_a_breaker_trip_warns_once_however_many_jobs_find_the_backend_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Four jobs in flight at once all find the backend down: one trip, one warning; the rest
    # is INFO. Their circuits are rerouted to the spare backend and complete there.
    down = MockBackend("down", max_concurrent_jobs=4, max_circuits_per_job=1)
    down.go_down()
    spare = MockBackend("spare")
    circuit = CircuitSpec(2, ((0, 1),))
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        async with QuantumScheduler(config=SchedulerConfig(batch_window=0)) as s:
            await s.register_backend("down", down)
            await s.register_backend("spare", spare)
            s.set_routing_rules([RoutingRule().default().route_to("down")])
            handles = [
                await s.submit(Task.quantum(f"q{i}").with_circuit(circuit)) for i in range(4)
            ]
            results = [await h for h in handles]
            assert {r.backend for r in results} == {"spare"}
            assert s.metrics().breaker_trips == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["backend 'down' taken out of rotation (circuit breaker open)"]
