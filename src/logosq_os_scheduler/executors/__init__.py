"""Where classical work runs: the event loop, worker threads (more executors are extras)."""

from ._threads import ThreadWorkers

__all__ = ["ThreadWorkers"]
