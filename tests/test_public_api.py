"""The public face: __all__, the embedded profile, the blocking entry point."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import logosq_os_scheduler as pkg
from logosq_os_scheduler import (
    BlockingScheduler,
    InvalidConfigError,
    QuantumScheduler,
    SchedulerClosedError,
    SchedulerConfig,
    SchedulerError,
    Task,
    TaskPriority,
    TaskStatus,
)

LAZY = {"RayExecutor"}  # loaded on first access, so that importing the package skips Ray


def test_all_lists_exactly_the_public_names() -> None:
    subpackages = {
        "backends",
        "client",
        "core",
        "executors",
        "journal",
        "observability",
        "security",
        "service",
        "simulate",
        "workflows",
    }
    public = {n for n in dir(pkg) if not n.startswith("_")} - subpackages - {"cli"}
    assert set(pkg.__all__) - {"__version__"} == public | LAZY
    for name in set(pkg.__all__) - LAZY:
        assert hasattr(pkg, name), name


def test_every_error_is_a_scheduler_error() -> None:
    errors = [getattr(pkg, n) for n in pkg.__all__ if n.endswith("Error")]
    assert len(errors) >= 15
    assert all(issubclass(e, SchedulerError) for e in errors)


def test_core_imports_with_the_standard_library_alone() -> None:
    code = (
        "import sys, logosq_os_scheduler as p, asyncio\n"
        "heavy = {'qiskit', 'qiskit_aer', 'qiskit_ibm_runtime', 'braket', 'ray', 'numpy',"
        " 'matplotlib', 'prometheus_client', 'rich', 'cryptography', 'scipy', 'dask', 'uvloop'}\n"
        "loaded = heavy & {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded, loaded\n"
        "async def main():\n"
        "    async with p.QuantumScheduler(2) as s:\n"
        "        h = await s.submit(p.Task.classical('x').with_function(pow, 2, 10))\n"
        "        assert (await h).value == 1024\n"
        "asyncio.run(main())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_priorities_are_ordered_by_urgency() -> None:
    assert sorted(TaskPriority) == [
        TaskPriority.IDLE,
        TaskPriority.LOW,
        TaskPriority.NORMAL,
        TaskPriority.HIGH,
        TaskPriority.CRITICAL,
    ]
    assert TaskPriority.CRITICAL > TaskPriority.HIGH
    assert {s for s in TaskStatus if s.is_terminal} == {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
    }


def test_config_errors_name_the_setting() -> None:
    with pytest.raises(InvalidConfigError, match="'workers'"):
        QuantumScheduler(0)
    with pytest.raises(InvalidConfigError, match="'aging_threshold'"):
        SchedulerConfig(aging_threshold=-1)
    with pytest.raises(InvalidConfigError, match="'bogus'"):
        SchedulerConfig().replace(bogus=1)
    s = QuantumScheduler(2).with_max_concurrent_quantum(10).with_max_queue_depth(1000)
    s.with_task_timeout(3600)
    assert (s.config.max_concurrent_quantum, s.config.max_queue_depth) == (10, 1000)
    assert s.config.task_timeout == 3600.0


def test_blocking_scheduler_for_plain_scripts() -> None:
    caller = threading.get_ident()
    with BlockingScheduler(2) as s:
        handles = [s.submit(Task.classical(f"t{i}").with_function(pow, i, 2)) for i in range(10)]
        assert [h.result(timeout=10).value for h in handles] == [i * i for i in range(10)]
        ran_on = s.submit(Task.classical("where").with_function(threading.get_ident))
        assert ran_on.result(timeout=10).value != caller
        s.join(timeout=10)
        assert s.metrics().completed == 11
    with pytest.raises(SchedulerClosedError):
        s.submit(Task.classical("late").with_function(pow, 1, 1))


def test_the_service_package_lists_its_public_names() -> None:
    import logosq_os_scheduler.service as service

    # create_app and serve load Starlette, uvicorn and msgspec on first access; the rest is
    # the standard library's only.
    lazy = {"create_app", "serve"}
    for name in set(service.__all__) - lazy:
        assert hasattr(service, name), name
    assert lazy <= set(service.__all__)
    public = {n for n in vars(service) if not n.startswith("_")}
    assert public - {"TYPE_CHECKING"} <= set(service.__all__)
