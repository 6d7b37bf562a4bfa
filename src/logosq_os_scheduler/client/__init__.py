"""The client of a scheduler service (``logosq serve``): the task API, over HTTP.

:class:`SchedulerClient` (async) and :class:`BlockingSchedulerClient` (for synchronous code)
submit tasks to a shared scheduler and hand back handles to await, inspect and cancel, as a
local :class:`~logosq_os_scheduler.QuantumScheduler` does; ``client.task(id_or_key)`` finds a
task again from any client, after either side restarted. :class:`RemoteSampler` and
:class:`RemoteEstimator` are Qiskit's V2 primitives run by the server.

Needs the ``client`` extra (httpx; the primitives also the ``qiskit`` extra). The names are
loaded on first access, so ``import logosq_os_scheduler`` stays standard-library only and a
missing extra is reported by name (:class:`~logosq_os_scheduler.MissingExtraError`).

One module per piece: :mod:`._wire` (requests out, refusals in, sans-I/O), :mod:`._views`
(what the server answers, as frozen snapshots), :mod:`._retry` (the retry policy),
:mod:`._client` (the async client and its handles), :mod:`._blocking` (the blocking twin),
:mod:`._primitives` (the remote Sampler and Estimator).
"""

from __future__ import annotations

import importlib
import typing

from .._errors import MissingExtraError as _MissingExtraError

if typing.TYPE_CHECKING:
    from ._blocking import BlockingRemoteTaskHandle, BlockingSchedulerClient
    from ._client import RemoteTaskHandle, SchedulerClient
    from ._primitives import RemoteEstimator, RemoteSampler
    from ._retry import RetryPolicy
    from ._views import AccountView, BackendView, RemoteTaskResult, TaskView
    from ._wire import TaskRequest

__all__ = [
    "AccountView",
    "BackendView",
    "BlockingRemoteTaskHandle",
    "BlockingSchedulerClient",
    "RemoteEstimator",
    "RemoteSampler",
    "RemoteTaskHandle",
    "RemoteTaskResult",
    "RetryPolicy",
    "SchedulerClient",
    "TaskRequest",
    "TaskView",
]

# Where each public name lives, and the extra its module needs.
_LAZY: dict[str, tuple[str, str]] = {
    "AccountView": ("._views", "client"),
    "BackendView": ("._views", "client"),
    "BlockingRemoteTaskHandle": ("._blocking", "client"),
    "BlockingSchedulerClient": ("._blocking", "client"),
    "RemoteEstimator": ("._primitives", "qiskit"),
    "RemoteSampler": ("._primitives", "qiskit"),
    "RemoteTaskHandle": ("._client", "client"),
    "RemoteTaskResult": ("._views", "client"),
    "RetryPolicy": ("._retry", "client"),
    "SchedulerClient": ("._client", "client"),
    "TaskRequest": ("._wire", "client"),
    "TaskView": ("._views", "client"),
}

# The third-party packages each extra brings: an ImportError of one of them is a missing
# extra; any other ImportError is a bug and propagates as it is.
_EXTRA_PACKAGES = {"client": ("httpx",), "qiskit": ("qiskit", "numpy", "httpx")}


def __getattr__(name: str) -> object:
    try:
        module, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        value = getattr(importlib.import_module(module, __name__), name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _EXTRA_PACKAGES[extra]:
            raise
        if missing == "httpx":
            extra = "client"
        raise _MissingExtraError(extra, f"logosq_os_scheduler.client.{name}") from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
