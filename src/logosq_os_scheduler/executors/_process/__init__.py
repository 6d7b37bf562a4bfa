"""ProcessExecutor: pure-Python work in isolated worker processes, one pipe per worker.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: it moves every task through one
shared queue, one feeder thread and one result-handler thread, and that single path caps its
speed-up for short tasks (see BENCHMARKS.md, scaling). Here each worker has its own socket
pair. The event loop writes a task straight into an idle worker's socket and reads the result
from that socket with ``loop.add_reader``: no helper threads, no shared queue, no locks, so
dispatch costs the loop the same small time per task whatever the worker count.

The wire format, both directions, is a fixed binary header followed by a pickle (protocol 5):

* to a worker: ``<kind, task id, payload length, memory limit, CPU limit>``, then for RUN
  ``pickle((fn, args, kwargs))``; kinds RUN, CANCEL (of a task queued in the worker), EXIT.
* from a worker: ``<kind, task id, body length>`` then the body: the pickled value, or a packed
  exception (its chain pickled link by link, plus the worker's formatted traceback); SKIPPED
  says a queued task was cancelled before it started.

Prefetch (``prefetch=1``) hides the round trip: a worker gets its next task while it still
runs one, and starts it the moment it finishes. A queued task is not yet committed: when a
worker finishes a task it first reads whatever has arrived, drops the queued tasks the parent
cancelled (a SKIPPED frame for each), and only then sends the result and starts the next one.
The parent sees those frames in that order, so when a result arrives it knows exactly which
task the worker is now running: a cancelled task that the worker committed to before it saw
the cancel is stopped by killing the worker, as a running task always is.

Crash containment: each worker's exit is watched through its process sentinel, also with
``add_reader``. A worker that dies fails only the task it was running, with
:class:`WorkerCrashedError` naming the exit code or signal; tasks queued behind it go to other
workers, and a replacement is started at once so that the pool stays at full capacity.

Limits are applied inside the worker around one task with ``setrlimit``: ``RLIMIT_AS`` (soft
limit only, restored afterwards, so the worker is reused) and ``RLIMIT_CPU`` (whose hard
limit, lowered as a backstop for code stuck in C, cannot be raised again: such a worker is
retired after the task).

The start method is ``forkserver`` where the platform has it, else ``spawn``. Not ``fork``:
the scheduler's process has threads (forking one is unsafe), and a forked worker would inherit
the other workers' sockets, so a dead worker's socket would never report end-of-file.

This package's modules (:mod:`._executor` imports :mod:`._child` and :mod:`._wire`,
:mod:`._child` imports :mod:`._wire`, and none imports back):

* :mod:`._wire`: the frame headers and kinds, :func:`._wire._send_frames`, and the packing
  of a task's exception for the trip back.
* :mod:`._child`: the worker process, :func:`._child._worker_main` (the target each worker is
  started with) and what it runs a task with.
* :mod:`._executor`: :class:`ProcessExecutor`, :class:`ProcessExecutorStatistics` and the
  parent's bookkeeping of workers and jobs.

A test that patches a name must patch it on the module that uses it, not on this package.
"""

from __future__ import annotations

from ._executor import ProcessExecutor, ProcessExecutorStatistics

__all__ = ["ProcessExecutor", "ProcessExecutorStatistics"]
