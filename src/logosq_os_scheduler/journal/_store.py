"""The journal's file: an SQLite database in WAL mode, opened, checked and locked.

Everything here is plain synchronous SQLite from the standard library. The writer thread of
:class:`~logosq_os_scheduler.journal.Journal` owns one connection; reads for lookups and
recovery use another. Every SQLite failure becomes a :class:`JournalError` that names the file
and what to do.

Schema (version 2; a version 1 file gains the ``user`` column when opened)::

    meta(key TEXT PRIMARY KEY, value TEXT)        uid, schema, created
    submits(id INTEGER PRIMARY KEY,               the task id, kept across restarts
            key TEXT,                             client key (with_key) or NULL; unique where
                                                  set (a partial index)
            name, type, priority,                 as submitted
            submitted REAL,                       wall-clock time of the submit
            spec BLOB,                            journal._codec.encode_spec
            status TEXT,                          queued or running (updated while unfinished)
            started REAL, attempts INTEGER,
            recovery TEXT, backend, job_id,
            user TEXT)                            whose task (with_user) or NULL
    ends(id INTEGER PRIMARY KEY,                  written once, when the task ended
         status TEXT, finished REAL,              its terminal status; wall-clock time
         attempts, result_kind INTEGER,
         result BLOB, error BLOB,                 journal._codec.encode_result / encode_error
         recovery TEXT, backend TEXT)             how it crossed a restart; where it ran
    tasks                                         a view: submits LEFT JOIN ends, one row a
                                                  task with its latest status (what to read)
    jobs(key TEXT PRIMARY KEY, backend TEXT,      a backend job: intent first, then its ID
         job_id TEXT, task_ids TEXT, created REAL)
    checkpoints(task_id INTEGER PRIMARY KEY,      the newest state a running task saved
                state BLOB)                       (TaskContext.save_state), pickled

``PRAGMA application_id`` marks the file as a journal and ``PRAGMA user_version`` holds the
schema version: a file without the mark is refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from pathlib import Path

from .._config import Durability
from .._errors import JournalError

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "Durability",
    "Lock",
    "connect",
    "delete_ended",
    "fail",
    "open_for_reading",
    "open_store",
    "prepare_path",
]

APPLICATION_ID = 0x4C4F4751  # "LOGQ"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submits(
    id INTEGER PRIMARY KEY,
    key TEXT,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    priority INTEGER NOT NULL,
    submitted REAL NOT NULL,
    spec BLOB,
    status TEXT NOT NULL,
    started REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    recovery TEXT,
    backend TEXT,
    job_id TEXT,
    user TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS submits_key ON submits(key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS ends(
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    finished REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result_kind INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    error BLOB,
    recovery TEXT,
    backend TEXT
);
CREATE VIEW IF NOT EXISTS tasks AS SELECT
    s.id AS id, s.key AS key, s.name AS name, s.type AS type, s.priority AS priority,
    s.submitted AS submitted, s.spec AS spec, coalesce(e.status, s.status) AS status,
    s.started AS started, e.finished AS finished, coalesce(e.attempts, s.attempts) AS attempts,
    coalesce(e.result_kind, 0) AS result_kind, e.result AS result, e.error AS error,
    coalesce(e.recovery, s.recovery) AS recovery, coalesce(e.backend, s.backend) AS backend,
    s.job_id AS job_id, s.user AS user
    FROM submits s LEFT JOIN ends e ON e.id = s.id;
CREATE TABLE IF NOT EXISTS checkpoints(task_id INTEGER PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs(
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    job_id TEXT,
    task_ids TEXT NOT NULL,
    created REAL NOT NULL
);
"""


_SYNCHRONOUS = {Durability.OFF: "OFF", Durability.PROCESS: "NORMAL", Durability.POWER: "FULL"}


def fail(path: str, exc: BaseException) -> JournalError:
    """The :class:`JournalError` for an SQLite failure on the journal at ``path``: what it
    means for the file, and what to do."""
    text = str(exc)
    if "not a database" in text or "file is encrypted" in text:
        return JournalError(
            path,
            "is not a logosq journal (not an SQLite database): give the scheduler a new path, "
            "or move this file away",
        )
    if "malformed" in text or "corrupt" in text:
        return JournalError(
            path,
            f"is corrupted ({text}): restore it from a backup, or salvage its rows with "
            f"`sqlite3 {path} .recover` into a new file",
        )
    if "full" in text:
        return JournalError(
            path,
            f"cannot be written: {text}; free space (or raise the limit) and submit again: "
            "what was acknowledged before is safe",
        )
    if "readonly" in text or "unable to open" in text or "permission" in text.lower():
        return JournalError(
            path,
            f"cannot be opened for writing ({text}): choose a path in a directory this "
            "process may write",
        )
    return JournalError(path, f"SQLite error: {text}")


def connect(path: str, durability: Durability) -> sqlite3.Connection:
    """A connection to the journal at ``path`` with its settings applied.

    Raises:
        JournalError: If SQLite cannot open it.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
        return conn
    except sqlite3.Error as exc:
        raise fail(path, exc) from exc


def _check_journal(conn: sqlite3.Connection, path: str, *, fresh_ok: bool) -> None:
    """Refuse a database that is not a journal this version reads. ``fresh_ok``: an empty
    database (a new file) passes, to be made a journal.

    Raises:
        JournalError: If it is some other database, or a journal of a newer schema.
        sqlite3.Error: If it cannot be read.
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id != APPLICATION_ID:
        if fresh_ok and app_id == 0 and not conn.execute("SELECT 1 FROM sqlite_master").fetchone():
            return
        raise JournalError(
            path,
            "is an SQLite database but not a logosq journal: give the scheduler a new path; "
            "it never writes over a database of something else",
        )
    if version > SCHEMA_VERSION:
        raise JournalError(
            path,
            f"was written by a newer logosq-os-scheduler (journal schema {version}; this "
            f"version reads up to {SCHEMA_VERSION}): upgrade the package to open it",
        )


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring a journal of an older schema to this one (in place; nothing is lost)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 1:
        # Version 2 records whose task it is (with_user); the view is made again with it.
        with conn:
            conn.execute("ALTER TABLE submits ADD COLUMN user TEXT")
            conn.execute("DROP VIEW IF EXISTS tasks")


class Lock:
    """An exclusive lock on ``<journal>-lock``: one scheduler per journal.

    ``fcntl.flock`` ends with the process that holds it, so a killed scheduler never leaves
    a stale lock behind. Where ``fcntl`` is missing (Windows) there is no lock.
    """

    def __init__(self, path: str) -> None:
        self.path = path + "-lock"
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(
                path,
                f"cannot create its lock file {self.path} ({exc.strerror}): choose a path in a "
                "directory this process may write",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JournalError(
                path,
                f"is in use by another scheduler (process {holder}): stop that one first, or "
                "give this scheduler its own journal path",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def prepare_path(path: str) -> None:
    """Create the journal's directory; refuse a path that cannot hold a journal file.

    Raises:
        JournalError: If the directory cannot be created or the path is a directory.
    """
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalError(
            path,
            f"cannot create its directory {parent} ({exc.strerror}): choose a path in a "
            "directory this process may write",
        ) from exc
    if os.path.isdir(path):
        raise JournalError(path, "is a directory: give the path of a file, such as runs/sched.db")


def open_store(path: str, durability: Durability) -> tuple[sqlite3.Connection, dict[str, str]]:
    """Open (creating if new) the journal at ``path`` and check it is one this version reads.

    Returns:
        The writer's connection, and the journal's meta table (``uid`` among it).

    Raises:
        JournalError: If the path cannot be written, the file is not a journal, it has a
            newer schema, or it is corrupted.
    """
    conn = connect(path, durability)
    try:
        _check_journal(conn, path, fresh_ok=True)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise JournalError(path, f"SQLite refused WAL mode (got {mode!r})")
        _upgrade(conn)
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('uid', ?), ('created', "
            "strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
            (uuid.uuid4().hex[:12],),
        )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except JournalError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise fail(path, exc) from exc
    return conn, meta


def open_for_reading(path: str) -> sqlite3.Connection:
    """A connection to an existing journal, for ``logosq jobs``: checked like
    :func:`open_store`, never created, not locked (a running scheduler may hold it).

    Raises:
        JournalError: If there is no journal at ``path`` or it is not one this version reads.
    """
    if not os.path.isfile(path):
        raise JournalError(path, "no such journal: give the path a scheduler was started with")
    conn = connect(path, Durability.PROCESS)
    try:
        _check_journal(conn, path, fresh_ok=False)
    except JournalError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise fail(path, exc) from exc
    return conn


def delete_ended(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete the tasks that ended before ``cutoff`` (wall-clock seconds); how many."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "DELETE FROM submits WHERE id IN (SELECT id FROM ends WHERE finished < ?)", (cutoff,)
        )
        deleted: int = conn.execute("DELETE FROM ends WHERE finished < ?", (cutoff,)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return deleted
