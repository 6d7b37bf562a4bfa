"""Where classical work runs: the event loop, worker threads, and pluggable executors."""

from ._base import Executor
from ._threads import ThreadWorkers

__all__ = ["Executor", "ThreadWorkers"]
