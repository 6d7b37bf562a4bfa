"""Where classical work runs: the event loop, worker threads, and pluggable executors.

:class:`ProcessExecutor` needs only the standard library and is imported here directly;
:class:`RayExecutor` is loaded on first use, so that importing this package never imports Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Executor
from ._errors import ResourceLimitError, WorkerCrashedError
from ._process import ProcessExecutor, ProcessExecutorStatistics
from ._threads import ThreadWorkers

if TYPE_CHECKING:
    from ._ray import RayExecutor

__all__ = [
    "Executor",
    "ProcessExecutor",
    "ProcessExecutorStatistics",
    "RayExecutor",
    "ResourceLimitError",
    "ThreadWorkers",
    "WorkerCrashedError",
]


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":
        from ._ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
