"""The durable journal: every submit, start, end and result, in SQLite, by group commit.

The journal is one more observer of the core's status changes (``core.listener``) plus a
call at submit. It never writes on the event loop: what one loop turn records goes into one
buffer, and one writer thread commits each buffer as one transaction. While a commit is under
way the next buffer fills, so under load the commits grow and their count stays small (group
commit); an idle scheduler commits within the loop turn after a submit.

Invariants:

* A row is buffered in ``_inserts`` (its task was submitted since the last commit was sent)
  or ``_updates`` (its task's newer state, for a row already sent); never both. A task's
  later change to a buffered insert edits that insert, so a task submitted and finished
  within one commit costs one INSERT.
* A buffered status update keeps the start time it carries until it is written, through later
  changes and the task's end: ``submits.started`` is the file's only record of it.
* ``_live`` holds every journaled task whose terminal row is not yet committed: a lookup by
  id or key finds it there, and finds it in the file once it has left.
* Generations: each buffer sent to the writer gets the next number (``_sent_gen``), and
  batches commit in that order. ``persisted()`` waits for the generation that holds every
  row buffered when it was called; a commit wakes the waiters of its generation and older.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .._errors import InvalidTaskError, JournalError
from .._task import TERMINAL, Task, TaskPriority, TaskStatus, TaskType, restored_task
from . import _codec
from ._store import Durability, Lock, connect, delete_ended, fail, open_store, prepare_path

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Durability", "Journal", "JournalRow", "read_row"]

log = logging.getLogger("logosq_os_scheduler.journal")

_RUNNING = TaskStatus.RUNNING
_QUEUED = TaskStatus.QUEUED
_PENDING = TaskStatus.PENDING
_COMPLETED = TaskStatus.COMPLETED
_FAILED = TaskStatus.FAILED

# The file keeps a task in two append-only tables: ``submits`` (written at submit, and its
# status updated to running or back to queued) and ``ends`` (written once, when it ends);
# the ``tasks`` view joins them. Inserting an end costs a third of rewriting the row.
#
# A buffered submit row is a list, edited in place until it is sent. Most rows have only the
# first 9 columns (_INSERT); one with a key or a user is extended to 12 (_INSERT_KEYED).
_I_ID, _I_NAME, _I_TYPE, _I_PRIORITY, _I_SUBMITTED, _I_SPEC = range(6)
_I_STATUS, _I_STARTED, _I_ATTEMPTS = range(6, 9)
_SHORT = 9
_INSERT = (
    "INSERT INTO submits(id, name, type, priority, submitted, spec, status, started, attempts) "
    "VALUES (?,?,?,?,?,?,?,?,?)"
)
_INSERT_KEYED = (
    "INSERT INTO submits(id, name, type, priority, submitted, spec, status, started, attempts, "
    "key, recovery, user) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
# A status update of a submit already sent: status, started (kept when None), attempts, id.
_UPDATE = "UPDATE submits SET status=?, started=coalesce(?, started), attempts=? WHERE id=?"
_U_STATUS, _U_STARTED, _U_ATTEMPTS, _U_ID = range(4)
# An end: id, status, finished, attempts, result_kind, result, error, recovery, backend.
_END = (
    "INSERT OR REPLACE INTO ends(id, status, finished, attempts, result_kind, result, error, "
    "recovery, backend) VALUES (?,?,?,?,?,?,?,?,?)"
)
# A turn that buffers this many rows sends them to the writer at once, without waiting for
# the turn to end, so that writing overlaps the rest of the turn.
_EARLY = 2048
_MAX_IN_FLIGHT = 64

# What one commit writes: submit rows, status updates, ends, other statements (jobs,
# checkpoints), in that order.
_Batch = tuple[
    list[list[Any]], list[list[Any]], list[tuple[Any, ...]], list[tuple[str, tuple[Any, ...]]]
]

_COLUMNS = (
    "id, key, name, type, priority, submitted, spec, status, started, finished, attempts, "
    "result_kind, result, error, recovery, backend, job_id, user"
)
# What recovery reads: the columns an unfinished task has (JournalRow fills the rest in).
_UNFINISHED = (
    "s.id, s.key, s.name, s.type, s.priority, s.submitted, s.spec, s.status, s.attempts, "
    "s.user "
    "FROM submits s WHERE NOT EXISTS (SELECT 1 FROM ends e WHERE e.id = s.id) ORDER BY s.id"
)
# Status and type texts by member: Enum.value is a slow property on the hot path.
_TEXT: dict[object, str] = {m: m.value for m in (*TaskStatus, *TaskType)}
# And back: calling an Enum to look a member up is slow too (recovery reads a million rows).
_TYPES = {m.value: m for m in TaskType}
_PRIORITIES = {int(m): m for m in TaskPriority}
_STATUSES = {m.value: m for m in TaskStatus}


def _fold(row: list[Any], upd: list[Any]) -> None:
    """Apply a newer status update to a submit row not yet written."""
    row[_I_STATUS] = upd[_U_STATUS]
    if upd[_U_STARTED] is not None:
        row[_I_STARTED] = upd[_U_STARTED]
    row[_I_ATTEMPTS] = upd[_U_ATTEMPTS]


def _fold_update(older: list[Any], upd: list[Any]) -> None:
    """Apply a newer status update to an older one not yet written (a start time stays)."""
    older[_U_STATUS] = upd[_U_STATUS]
    if upd[_U_STARTED] is not None:
        older[_U_STARTED] = upd[_U_STARTED]
    older[_U_ATTEMPTS] = upd[_U_ATTEMPTS]


def read_row(conn: sqlite3.Connection, path: str, ref: int | str) -> JournalRow | None:
    """The row of the task with id or client key ``ref`` in the journal at ``path``, or None.

    Raises:
        JournalError: If it cannot be read.
    """
    column = "key" if isinstance(ref, str) else "id"
    try:
        found = conn.execute(f"SELECT {_COLUMNS} FROM tasks WHERE {column}=?", (ref,)).fetchone()
    except sqlite3.Error as exc:
        raise fail(path, exc) from exc
    return None if found is None else JournalRow(found)


class JournalRow:
    """One task as the journal holds it (what ``logosq jobs`` and recovery read)."""

    __slots__ = (
        "task_id",
        "key",
        "name",
        "task_type",
        "priority",
        "submitted",
        "spec",
        "status",
        "started",
        "finished",
        "attempts",
        "result_kind",
        "result",
        "error",
        "recovery",
        "backend",
        "job_id",
        "user",
    )

    def __init__(self, row: Sequence[Any]) -> None:
        if len(row) == 10:  # an unfinished task's row (_UNFINISHED)
            row = (*row[:8], None, None, row[8], 0, None, None, None, None, None, row[9])
        (
            self.task_id,
            self.key,
            self.name,
            task_type,
            priority,
            self.submitted,
            self.spec,
            status,
            self.started,
            self.finished,
            self.attempts,
            self.result_kind,
            self.result,
            self.error,
            self.recovery,
            self.backend,
            self.job_id,
            self.user,
        ) = row
        self.task_type = _TYPES[task_type]
        self.priority = _PRIORITIES[priority]
        self.status = _STATUSES[status]

    def value(self) -> object:
        """The task's value, decoded."""
        return _codec.decode_result(self.result_kind, self.result)

    def failure(self) -> BaseException | None:
        """Why it failed, decoded (None if it did not)."""
        return _codec.decode_error(self.error)


class Journal:
    """A scheduler's durable record, in the SQLite file at ``path``.

    Give a scheduler a path (``QuantumScheduler(journal="runs/sched.db")``) rather than
    building one: the scheduler opens it, recovers what it holds, and closes it.

    Args:
        path: The journal's file (created, with its directory, if missing).
        durability: What an acknowledged write survives (:class:`Durability`).
        retention: Seconds a finished task is kept; None keeps them until ``logosq jobs gc``.

    Raises:
        JournalError: If the file cannot be opened, is not a journal, has a newer schema, is
            corrupted, or is in use by another scheduler.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        durability: Durability = Durability.PROCESS,
        *,
        retention: float | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.durability = durability
        self.retention = retention
        prepare_path(self.path)
        self._lock = Lock(self.path)
        try:
            self._conn, meta = open_store(self.path, durability)
        except BaseException:
            self._lock.release()
            raise
        try:
            self._reader = connect(self.path, durability)
        except BaseException:
            self._conn.close()
            self._lock.release()
            raise
        self.uid = meta["uid"]
        try:
            self.max_id = self._reader.execute("SELECT max(id) FROM submits").fetchone()[0] or 0
        except sqlite3.Error as exc:
            self._close_files()
            raise fail(self.path, exc) from exc
        self._inserts: dict[int, list[Any]] = {}
        self._updates: dict[int, list[Any]] = {}
        self._ends: list[tuple[Any, ...]] = []
        self._jobs: list[tuple[str, tuple[Any, ...]]] = []
        self._live: dict[int, Task[Any]] = {}
        # Backend jobs whose rows are in the file, and the tasks still in each.
        self._job_tasks: dict[str, set[int]] = {}
        self._task_job: dict[int, str] = {}
        self._keys: dict[str, Task[Any]] = {}
        self._sent_gen = 0
        # Batches sent to the writer and not yet done; failed ones wait in _failed (oldest
        # first) until every batch sent before them is done, then go back into the buffer.
        self._in_flight = 0
        self._failed: list[_Batch] = []
        # Set by the writer after a failed commit: it fails every batch queued after it
        # without trying; cleared by the loop when it sends again with nothing queued.
        self._poisoned = False
        self._scheduled = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._offset = time.time() - time.monotonic()
        self.error: JournalError | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        if retention is not None:
            self.gc(retention)

    # -- lifecycle ---------------------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop, now: Callable[[], float]) -> None:
        """Start writing from the scheduler's loop; ``now`` is the scheduler's clock."""
        self._loop = loop
        self._offset = time.time() - now()
        self._thread = threading.Thread(
            target=self._writer, name=f"logosq-journal-{self.uid}", daemon=True
        )
        self._thread.start()

    def wall(self, now: float) -> float:
        """A time on the scheduler's clock as wall-clock seconds (what the file stores)."""
        return now + self._offset

    def close(self) -> None:
        """Write what is buffered (on this thread, waiting for it), stop the writer, release
        the file and its lock. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._thread is not None:
            self._work.put(None)
            self._thread.join()
            self._thread = None
        # Batches the writer did not get to (its loop closed under it), oldest first.
        left: list[_Batch] = []
        while not self._work.empty():
            item = self._work.get_nowait()
            if item is not None:
                left.append(item[1])
        failed, self._failed = self._failed, []
        batch = self._take()
        last_error: BaseException | None = None
        for pending in (*failed, *left, batch):  # in the order they were made
            if pending is not None:
                error = self._commit(pending)
                if error is not None:
                    log.error("%s", error)
                    last_error = error
        # Whoever still waits for a write hears now: it is done, or it failed.
        waiters, self._waiters = self._waiters, []
        for _gen, fut in waiters:
            if not fut.done():
                if last_error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(last_error)
        self._close_files()

    def _close_files(self) -> None:
        for conn in (getattr(self, "_conn", None), getattr(self, "_reader", None)):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._lock.release()

    # -- recording (on the loop) -------------------------------------------------------------

    def submitted(self, task: Task[Any], spec: bytes, now: float) -> None:
        """Buffer a submit: called before the core admits the task (:meth:`retract` undoes)."""
        tid = task.task_id
        row = [
            tid,
            task.name,
            _TEXT[task.task_type],
            int(task.priority),
            now + self._offset,
            spec,
            "queued",
            None,
            0,
        ]
        inserts = self._inserts
        inserts[tid] = row
        if len(inserts) >= _EARLY:
            self._flush(early=True)  # a long turn of submits: write while it goes on
        self._live[tid] = task
        extras = task.extras
        if extras is not None and (extras.key is not None or extras.user is not None):
            row.append(extras.key)
            row.append(extras.recovery)
            row.append(extras.user)
            if extras.key is not None:
                self._keys[extras.key] = task
        if not self._scheduled:
            self._schedule()

    def retract(self, task: Task[Any]) -> None:
        """Forget a submit the core refused (the queue was full)."""
        tid = task.task_id
        self._inserts.pop(tid, None)
        self._live.pop(tid, None)
        key = task.key
        if key is not None and self._keys.get(key) is task:
            del self._keys[key]

    def adopt(self, task: Task[Any]) -> None:
        """Follow a task whose row is already in the file (recovered after a restart)."""
        self._live[task.task_id] = task
        key = task.key
        if key is not None:
            self._keys[key] = task

    def listener(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        """The core's transition listener: record the changes recovery needs."""
        tid = task.task_id
        if tid not in self._live:
            return  # not journaled (a workflow's internal step)
        if new is _RUNNING:
            status = "running"
        elif new in TERMINAL:
            status = _TEXT[new]
            if self._task_job:
                self._left_job(tid)
        elif new is _QUEUED and old is not _PENDING:
            status = "queued"  # back in a queue (a retry, a preemption that restarts)
            if self._task_job:
                self._left_job(tid)
        else:
            return
        wall = now + self._offset
        if status == "running" or status == "queued":
            row = self._inserts.get(tid)
            if row is not None:
                row[_I_STATUS] = status
                if status == "running":
                    row[_I_STARTED] = wall
                row[_I_ATTEMPTS] = task.attempts
                return
            updates = self._updates
            started = wall if status == "running" else None
            older = updates.get(tid)
            if older is None:
                updates[tid] = [status, started, task.attempts, tid]
            else:
                _fold_update(older, [status, started, task.attempts, tid])  # keeps its start
            if len(updates) >= _EARLY:
                self._flush(early=True)
            elif not self._scheduled:
                self._schedule()
            return
        # The end: one row in ``ends``; a status update still buffered is moot now, unless it
        # carries the start (a task that started and ended since its row was sent): ``ends``
        # has no start time, so that update is written too.
        if self._updates:
            upd = self._updates.get(tid)
            if upd is not None and upd[_U_STARTED] is None:
                del self._updates[tid]
        extras = task.extras
        kind = 0
        result = error = None
        if new is _COMPLETED:
            kind, result = _codec.encode_result(task.value)
        else:
            error = _codec.encode_error(None if extras is None else extras.error)
        if extras is not None and extras.saved_state is not None:
            self._jobs.append(("DELETE FROM checkpoints WHERE task_id=?", (tid,)))
        part = task.quantum_part
        ends = self._ends
        ends.append(
            (
                tid,
                status,
                wall,
                task.attempts,
                kind,
                result,
                error,
                None if extras is None else extras.recovery,
                None if part is None else part.backend_used,
            )
        )
        if len(ends) >= _EARLY:
            self._flush(early=True)
        elif not self._scheduled:
            self._schedule()

    def save_state(self, task: Task[Any], state: object) -> None:
        """Write ``task``'s newest saved state (replacing the one before).

        Raises:
            InvalidTaskError: If the state does not pickle.
        """
        try:
            blob = pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise InvalidTaskError(
                "state",
                f"cannot be written to the journal ({type(exc).__name__}: {exc}): save "
                "numbers, arrays, lists and dicts",
            ) from exc
        self._jobs.append(
            (
                "INSERT OR REPLACE INTO checkpoints(task_id, state) VALUES (?, ?)",
                (task.task_id, blob),
            )
        )
        if not self._scheduled:
            self._schedule()

    def saved_states(self) -> dict[int, object]:
        """The state each unfinished task saved last, by task id."""
        try:
            found = self._reader.execute("SELECT task_id, state FROM checkpoints").fetchall()
        except sqlite3.Error as exc:
            raise fail(self.path, exc) from exc
        return {tid: pickle.loads(blob) for tid, blob in found}

    def job_intent(
        self, backend: str, job_key: str, task_ids: Sequence[int]
    ) -> Coroutine[Any, Any, None] | None:
        """A backend job is about to be sent: record it, and return the wait for that record
        to be written (the dispatcher sends the job only then, so that after a crash a job
        the backend may have is never unknown here). None with durability OFF."""
        ids = ",".join(map(str, task_ids))
        self._jobs.append(
            (
                "INSERT OR REPLACE INTO jobs(key, backend, job_id, task_ids, created) "
                "VALUES (?,?,NULL,?,?)",
                (job_key, backend, ids, time.time()),
            )
        )
        self.follow_job(job_key, task_ids)
        if not self._scheduled:
            self._schedule()
        return None if self.durability is Durability.OFF else self.persisted()

    def follow_job(self, job_key: str, task_ids: Sequence[int]) -> None:
        """Forget the job's row once every task of it has left it (ended, or gone back to a
        queue): written with, or after, the tasks' own ends, so a crash never leaves a task
        running without the job it was in."""
        live = self._live
        mine = {tid for tid in task_ids if tid in live}
        if not mine:
            return
        self._job_tasks[job_key] = mine
        for tid in mine:
            self._task_job[tid] = job_key

    def forget_jobs(self, job_keys: set[str]) -> None:
        """Delete the rows of jobs none of whose tasks is unfinished."""
        for job_key in sorted(job_keys):
            self._jobs.append(("DELETE FROM jobs WHERE key=?", (job_key,)))
        if job_keys and not self._scheduled:
            self._schedule()

    def job_acknowledged(self, job_key: str, job_id: str) -> None:
        """The backend acknowledged a job with its ID."""
        self._jobs.append(("UPDATE jobs SET job_id=? WHERE key=?", (job_id, job_key)))
        if not self._scheduled:
            self._schedule()

    def job_done(self, job_key: str) -> None:
        """A job is over; its row goes when its tasks leave it (see :meth:`follow_job`)."""

    def _left_job(self, tid: int) -> None:
        job_key = self._task_job.pop(tid, None)
        if job_key is None:
            return
        tasks = self._job_tasks.get(job_key)
        if tasks is not None:
            tasks.discard(tid)
            if not tasks:
                del self._job_tasks[job_key]
                self._jobs.append(("DELETE FROM jobs WHERE key=?", (job_key,)))

    async def persisted(self) -> None:
        """Wait until everything recorded so far is committed to the file.

        Raises:
            JournalError: If that commit failed (a full disk): the tasks submitted since the
                last successful commit were not acknowledged.
        """
        if self._inserts or self._updates or self._ends or self._jobs:
            target = self._sent_gen + 1
            if not self._scheduled:
                self._schedule()
        elif self._in_flight:
            target = self._sent_gen
        else:
            if self.error is not None:
                raise self.error
            return
        assert self._loop is not None
        fut = self._loop.create_future()
        self._waiters.append((target, fut))
        await fut

    # -- group commit ------------------------------------------------------------------------

    def _schedule(self) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return  # before start (recovery) or after close: close() writes what is left
        self._scheduled = True
        loop.call_soon(self._turn_ended)

    def _turn_ended(self) -> None:
        """The loop turn that buffered rows is over: send them (group commit)."""
        self._scheduled = False
        self._flush()

    def _take(self) -> _Batch | None:
        if not (self._inserts or self._updates or self._ends or self._jobs):
            return None
        batch = (
            list(self._inserts.values()),
            list(self._updates.values()),
            self._ends,
            self._jobs,
        )
        self._inserts = {}
        self._updates = {}
        self._ends = []
        self._jobs = []
        return batch

    def _flush(self, early: bool = False) -> None:
        """Send the buffer to the writer.

        At the end of a loop turn (``early`` False) only when no commit is under way: while
        one is, the buffer grows, and the writer's completion sends it (group commit). A
        turn that has buffered ``_EARLY`` rows sends them at once (``early``), up to
        ``_MAX_IN_FLIGHT`` commits queued, so that writing overlaps the rest of a long turn.
        """
        if self._closed or self._failed:
            return  # failed batches are merged back first (_done), then sent again
        if self._in_flight and (not early or self._in_flight >= _MAX_IN_FLIGHT):
            return
        batch = self._take()
        if batch is None:
            return
        if not self._in_flight:
            self._poisoned = False  # nothing older is queued: the writer may try again
        self._sent_gen += 1
        self._in_flight += 1
        self._work.put((self._sent_gen, batch))

    def _writer(self) -> None:
        work = self._work
        loop = self._loop
        assert loop is not None
        while True:
            item = work.get()
            if item is None:
                return
            gen, batch = item
            if self._poisoned:
                # An earlier batch failed: a later one must not commit before it does (an
                # update would miss the row its failed insert was to write).
                error: BaseException | None = JournalError(
                    self.path, "not written: an earlier write failed; it is retried"
                )
            else:
                error = self._commit(batch)
                if error is not None:
                    self._poisoned = True
            try:
                loop.call_soon_threadsafe(self._done, gen, batch, error)
            except RuntimeError:  # the loop closed under us: close() finishes the work
                return

    def _commit(self, batch: _Batch) -> BaseException | None:
        inserts, updates, ends, statements = batch
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if inserts:
                    short = [r for r in inserts if len(r) == _SHORT]
                    if short:
                        conn.executemany(_INSERT, short)
                    if len(short) != len(inserts):
                        conn.executemany(_INSERT_KEYED, [r for r in inserts if len(r) != _SHORT])
                if updates:
                    conn.executemany(_UPDATE, updates)
                if ends:
                    conn.executemany(_END, ends)
                for sql, params in statements:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            return fail(self.path, exc)
        return None

    def _done(self, gen: int, batch: _Batch, error: BaseException | None) -> None:
        self._in_flight -= 1
        if error is None:
            if self.error is not None:
                log.warning("journal %s is writable again", self.path)
                self.error = None
            self._forget_ended(batch)
            self._wake(gen, None)
        else:
            assert isinstance(error, JournalError)
            if not self._failed:
                log.error("%s", error)
                self.error = error
            self._failed.append(batch)
            self._wake(gen, self.error)
            if self._in_flight:
                return  # the later batches fail too, in order; merge them all then
            self._requeue_failed()
            loop = self._loop
            if loop is not None and self._retry is None:
                self._retry = loop.call_later(1.0, self._retry_now)
            return
        if not self._in_flight and (self._inserts or self._updates or self._ends or self._jobs):
            self._flush()

    def _forget_ended(self, batch: _Batch) -> None:
        """Tasks whose end this committed batch wrote are found in the file from now on."""
        live = self._live
        keys = self._keys
        for end in batch[2]:
            task = live.pop(end[0], None)
            if task is not None:
                extras = task.extras
                if extras is not None and extras.key is not None:
                    keys.pop(extras.key, None)

    def _wake(self, gen: int, error: BaseException | None) -> None:
        """Resolve the persisted() waiters that this commit (of generation ``gen``) served."""
        waiters = [w for w in self._waiters if w[0] <= gen]
        if not waiters:
            return
        self._waiters = [w for w in self._waiters if w[0] > gen]
        for _g, fut in waiters:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    def _retry_now(self) -> None:
        self._retry = None
        if not self._in_flight:
            self._flush()

    def _requeue_failed(self) -> None:
        """Put the batches whose commits failed back, oldest first, in front of what was
        buffered since, folding each newer status update into the submit row it changes."""
        inserts: dict[int, list[Any]] = {}
        updates: dict[int, list[Any]] = {}
        ends: list[tuple[Any, ...]] = []
        statements: list[tuple[str, tuple[Any, ...]]] = []
        newest = (
            list(self._inserts.values()),
            list(self._updates.values()),
            self._ends,
            self._jobs,
        )
        for batch in (*self._failed, newest):
            for row in batch[0]:
                inserts[row[_I_ID]] = row
            for upd in batch[1]:
                tid = upd[_U_ID]
                pending = inserts.get(tid)
                if pending is not None:
                    _fold(pending, upd)
                elif tid in updates:
                    _fold_update(updates[tid], upd)
                else:
                    updates[tid] = upd
            ends.extend(batch[2])
            statements.extend(batch[3])
        self._failed = []
        self._inserts = inserts
        self._updates = updates
        self._ends = ends
        self._jobs = statements

    # -- reading -----------------------------------------------------------------------------

    def live(self, ref: int | str) -> Task[Any] | None:
        """The in-memory task with that id or key whose end is not yet in the file."""
        if isinstance(ref, str):
            return self._keys.get(ref)
        return self._live.get(ref)

    def row(self, ref: int | str) -> JournalRow | None:
        """The file's row for the task with that id or key, or None."""
        return read_row(self._reader, self.path, ref)

    def spec(self, task_id: int) -> bytes | None:
        """The spec journaled for the task (buffered, or in the file), or None if there is
        none, or it is on its way to the file (a commit under way).

        Raises:
            JournalError: If the file cannot be read.
        """
        row = self._inserts.get(task_id)
        if row is not None:
            spec: bytes | None = row[_I_SPEC]
            return spec
        try:
            found = self._reader.execute("SELECT spec FROM submits WHERE id=?", (task_id,))
            stored = found.fetchone()
        except sqlite3.Error as exc:
            raise fail(self.path, exc) from exc
        return None if stored is None else stored[0]

    def unfinished(self) -> list[JournalRow]:
        """Every task not yet ended, in submission order (without the columns only an ended
        task has: reading a million rows is most of a recovery's time)."""
        try:
            found = self._reader.execute(f"SELECT {_UNFINISHED}").fetchall()
        except sqlite3.Error as exc:
            raise fail(self.path, exc) from exc
        return [JournalRow(r) for r in found]

    def jobs(self) -> dict[int, tuple[str, str, str | None]]:
        """Jobs written but not collected: task id -> (job key, backend, job ID or None)."""
        try:
            found = self._reader.execute("SELECT key, backend, job_id, task_ids FROM jobs")
            out: dict[int, tuple[str, str, str | None]] = {}
            for key, backend, job_id, ids in found.fetchall():
                for tid in ids.split(","):
                    if tid:
                        out[int(tid)] = (key, backend, job_id)
            return out
        except sqlite3.Error as exc:
            raise fail(self.path, exc) from exc

    def gc(self, older_than: float) -> int:
        """Delete the rows of tasks that ended more than ``older_than`` seconds ago.

        Returns:
            How many were deleted.
        """
        try:
            return delete_ended(self._conn, time.time() - older_than)
        except sqlite3.Error as exc:
            raise fail(self.path, exc) from exc

    def ended_task(self, row: JournalRow) -> Task[Any]:
        """A finished task as the file holds it, with its times moved onto the scheduler's
        clock by the offset this journal writes with (:meth:`wall`), for a handle: the same
        task read twice has the same times."""
        task = restored_task(row.task_id, row.name, row.task_type, row.priority, row.status)
        offset = self._offset
        task.submitted_at = row.submitted - offset
        task.started_at = None if row.started is None else row.started - offset
        task.finished_at = None if row.finished is None else row.finished - offset
        task.attempts = row.attempts
        if row.status is _COMPLETED:
            task.value = row.value()
        elif row.status is _FAILED:
            task.error = row.failure()
        if row.key is not None:
            task.key = row.key
        if row.recovery is not None:
            task.recovery = row.recovery
        if row.backend is not None:
            task.backend_used = row.backend
        if row.user is not None:
            task.user = row.user
        return task
