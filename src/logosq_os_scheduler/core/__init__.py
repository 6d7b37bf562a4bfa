"""The sans-I/O scheduling core: queues, admission, deadlines and the task state machine.

Nothing in here performs I/O, starts threads or reads the system time: it takes time from the
:class:`~logosq_os_scheduler.Clock` it is given and returns decisions for a runtime to carry
out. That makes every policy testable with a :class:`~logosq_os_scheduler.ManualClock`.
"""

from ._core import ListenerChain, Pool, SchedulerCore
from ._queue import ReadyQueue
from ._state import ALLOWED, TERMINAL

__all__ = ["ALLOWED", "TERMINAL", "ListenerChain", "Pool", "ReadyQueue", "SchedulerCore"]
