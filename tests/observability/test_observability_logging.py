"""Logging with the task on every record: the filter, the adapter, and the transition logger
on a real run."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from logosq_os_scheduler import ManualClock, QuantumScheduler, SchedulerConfig, Task, TaskStatus
from logosq_os_scheduler.core import SchedulerCore
from logosq_os_scheduler.observability import (
    DEFAULT_FORMAT,
    LOGGER_NAME,
    TaskContextFilter,
    TaskLoggerAdapter,
    TransitionLogger,
    configure_logging,
    task_fields,
)

S = TaskStatus


@pytest.fixture
def scheduler_logger() -> Iterator[logging.Logger]:
    """The scheduler's logger, restored to its level and handlers afterwards."""
    logger = logging.getLogger(LOGGER_NAME)
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


def boom() -> None:
    raise ValueError("bad input")


def test_filter_gives_records_without_a_task_placeholder_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskContextFilter())
    handler.setFormatter(logging.Formatter("[%(task_id)s %(backend)s %(attempt)s] %(message)s"))
    logger = logging.getLogger(LOGGER_NAME + ".test-filter")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("scheduler started")
        logger.info("task ran", extra={"task_id": 7, "backend": "aer", "attempt": 2})
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["[- - -] scheduler started", "[7 aer 2] task ran"]


def test_adapter_reads_the_task_fields_when_it_logs(caplog: pytest.LogCaptureFixture) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), ManualClock())
    task = Task.classical("prep").with_function(abs, -1).build()
    log = TaskLoggerAdapter(logging.getLogger(LOGGER_NAME), task)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        log.info("before admission")
        core.admit(task, core.classical, 0.0)  # starts at once: attempt 1 on "classical"
        log.info("running")
        log.info("overridden", extra={"backend": "aer"})
    first, second, third = caplog.records
    assert (first.task_id, first.backend, first.attempt) == (task.task_id, "-", 0)
    assert (second.backend, second.attempt, second.task) == ("classical", 1, "prep")
    assert second.priority == "NORMAL"
    assert third.backend == "aer"
    assert task_fields(task)["attempt"] == 1


async def test_transition_logger_on_a_real_run(
    caplog: pytest.LogCaptureFixture, scheduler_logger: logging.Logger
) -> None:
    async with QuantumScheduler(2) as s:
        steps = TransitionLogger.attach(s)
        with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
            ok = await s.submit(Task.classical("ok").with_function(abs, -3))
            bad = await s.submit(Task.classical("bad").with_function(boom))
            await s.join()
        steps.detach()
    records = [r for r in caplog.records if r.name == LOGGER_NAME + ".transitions"]
    about_ok = [r for r in records if r.task_id == ok.task_id]
    assert [r.getMessage().split(" at ")[0] for r in about_ok] == [
        f"task {ok.task_id} ('ok') pending -> queued",
        f"task {ok.task_id} ('ok') queued -> running",
        f"task {ok.task_id} ('ok') running -> completed",
    ]
    assert [r.levelno for r in about_ok] == [logging.DEBUG] * 3
    assert [r.attempt for r in about_ok] == [0, 1, 1]
    assert {r.backend for r in about_ok} == {"classical"}
    failure = [r for r in records if r.task_id == bad.task_id][-1]
    assert failure.levelno == logging.WARNING
    assert failure.getMessage().endswith("ValueError: bad input")


async def test_transition_logger_costs_nothing_below_its_level(
    caplog: pytest.LogCaptureFixture, scheduler_logger: logging.Logger
) -> None:
    async with QuantumScheduler(2) as s:
        TransitionLogger.attach(s)
        with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
            for i in range(20):
                await s.submit(Task.classical("ok").with_function(abs, -i))
            await s.submit(Task.classical("bad").with_function(boom))
            await s.join()
    # Only the failure was worth a record at WARNING.
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_configure_logging_formats_task_fields(scheduler_logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = configure_logging(logging.INFO, stream=stream)
    assert handler.formatter is not None and handler.formatter._fmt == DEFAULT_FORMAT
    core = SchedulerCore(SchedulerConfig(workers=1), ManualClock())
    task = Task.classical("t").with_function(abs, -1).build()
    core.admit(task, core.classical, 0.0)
    TaskLoggerAdapter(scheduler_logger, task).info("hello")
    scheduler_logger.getChild("runtime").info("no task here")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(f"[task={task.task_id} backend=classical attempt=1] hello")
    assert lines[1].endswith(
        "logosq_os_scheduler.runtime [task=- backend=- attempt=-] no task here"
    )
