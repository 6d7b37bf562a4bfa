"""Seeing what the scheduler did: metrics snapshots, traces, Prometheus, timelines, logging.

The standard-library parts are imported with the package. The parts that need the
``observability`` extra load on first use, so importing the scheduler never imports
prometheus-client or matplotlib: :class:`PrometheusExporter` and :func:`render_timeline`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..core._statistics import percentile
from ._listeners import ListenerChain, add_listener, remove_listener
from ._logging import (
    DEFAULT_FORMAT,
    LOGGER_NAME,
    TaskContextFilter,
    TaskLoggerAdapter,
    TransitionLogger,
    configure_logging,
    task_fields,
)
from ._metrics import BackendMetrics, SchedulerMetrics, UserMetrics
from ._trace import TraceRecorder, TraceValidationError, load_trace, validate_trace

if TYPE_CHECKING:
    from ._prometheus import PrometheusExporter
    from ._timeline import render_timeline

__all__ = [
    "DEFAULT_FORMAT",
    "LOGGER_NAME",
    "BackendMetrics",
    "ListenerChain",
    "PrometheusExporter",
    "SchedulerMetrics",
    "TaskContextFilter",
    "TaskLoggerAdapter",
    "TraceRecorder",
    "TraceValidationError",
    "TransitionLogger",
    "UserMetrics",
    "add_listener",
    "configure_logging",
    "load_trace",
    "percentile",
    "remove_listener",
    "render_timeline",
    "task_fields",
    "validate_trace",
]

# name -> module that defines it, imported on first access (these need the extra).
_LAZY = {"PrometheusExporter": "._prometheus", "render_timeline": "._timeline"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value: object = getattr(importlib.import_module(module, __name__), name)
    except ImportError as exc:
        raise ImportError(
            f"{name} needs the observability extra: "
            "pip install 'logosq-os-scheduler[observability]'"
        ) from exc
    globals()[name] = value
    return value
