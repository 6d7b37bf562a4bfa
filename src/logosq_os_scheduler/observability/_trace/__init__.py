"""Every status change of every task, recorded and exported as a Chrome trace / Perfetto file.

A :class:`TraceRecorder` attaches to a scheduler's transition hook and appends one tuple per
status change. Nothing else happens on the hot path: slices, lanes and counters are worked out
only when the trace is exported. The file is the Chrome trace-event JSON format, which
https://ui.perfetto.dev and ``chrome://tracing`` open::

    process "classical"               one process per pool: the classical workers, then
      thread "worker 1"  [NORMAL 7][HIGH 9]        each quantum backend; a task's run is a
      thread "worker 2"  [LOW 3] [CRITICAL 12]     complete ("X") slice on a lane
      async  "queued HIGH"   <-- wait -->          waits are async slices, one track per
      async  "preempted LOW" <-- wait -->          priority; queue depth is a counter
      counter "queue depth"  _/"\\__
    process "aer"
      thread "lane 1" ...    thread "batches 1"    backend jobs (batches) on lanes of their own

Running slices are laid out on lanes by a per-pool allocator, so slices on one lane never
overlap: a classical lane is a worker slot; a backend's lanes are as many as circuits ran on
it at once (a job runs several in one slot). Retries, preemptions, reroutes, failures,
time-outs and cancellations are instant events. Slices are coloured by priority: ``cname`` for
``chrome://tracing``, and for Perfetto (which colours a slice by its name with the digits
stripped) each run is named ``"<PRIORITY> <task id>"``; the task's own name is in its args.

:func:`validate_trace` checks a trace's structure, that every task's slices follow one another
without gap or overlap, and, given independently recorded state histories, that they match.

One module per piece: :mod:`._recorder` (the recorder, the only code on the hot path),
:mod:`._spans` (status changes turned into per-state spans, laid out on lanes),
:mod:`._chrome` (spans, batches and marks written as Chrome trace events), :mod:`._load`
(reading a trace back), :mod:`._validate` (checking it), and :mod:`._schema` (what the writer
and the readers agree on: the recorded tuples, span categories, colours and the time unit).
"""

from __future__ import annotations

from ._load import TraceValidationError, load_trace
from ._recorder import TraceRecorder
from ._schema import PRIORITY_COLORS
from ._validate import validate_trace

__all__ = [
    "PRIORITY_COLORS",
    "TraceRecorder",
    "TraceValidationError",
    "load_trace",
    "validate_trace",
]
