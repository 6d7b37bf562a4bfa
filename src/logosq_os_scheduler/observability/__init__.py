"""Seeing what the scheduler did: metrics snapshots (and exporters, as extras)."""

from ._metrics import BackendMetrics, SchedulerMetrics, percentile

__all__ = ["BackendMetrics", "SchedulerMetrics", "percentile"]
