"""Reading a journal from outside its scheduler: what ``logosq jobs`` prints.

A journal may be read (and compacted) while a scheduler runs on it: SQLite in WAL mode lets
readers and one writer work at once, so these functions take no lock.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from .._errors import JournalError
from ._journal import _COLUMNS, JournalRow, read_row
from ._store import delete_ended, fail, open_for_reading

__all__ = [
    "counts",
    "describe_value",
    "format_age",
    "gc",
    "list_rows",
    "page_ids",
    "parse_duration",
    "show_row",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "timed_out")


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"`` or plain seconds, as seconds.

    Raises:
        ValueError: If ``text`` is none of those.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 7d, 12h, 30m or 45s, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_age(seconds: float) -> str:
    """A duration as a person reads it: ``42s``, ``3m``, ``5h``, ``2d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def list_rows(path: str, *, status: str | None = None, limit: int = 50) -> Iterator[JournalRow]:
    """The newest ``limit`` tasks of the journal at ``path`` (of one status if given).

    Raises:
        JournalError: If the journal cannot be read, or ``status`` is not a status.
    """
    if status is not None and status not in _STATUSES:
        raise JournalError(path, f"no status {status!r}; choose one of {', '.join(_STATUSES)}")
    conn = open_for_reading(path)
    try:
        where = "" if status is None else "WHERE status=?"
        params: tuple[Any, ...] = () if status is None else (status,)
        found = conn.execute(
            f"SELECT {_COLUMNS} FROM tasks {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
    except sqlite3.Error as exc:
        raise fail(path, exc) from exc
    finally:
        conn.close()
    return (JournalRow(r) for r in reversed(found))


def page_ids(
    conn: sqlite3.Connection,
    path: str,
    *,
    user: str | None = None,
    users_only: bool = False,
    status: str | None = None,
    priority: int | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[int]:
    """Ids of the newest tasks matching every filter given, newest first: a page of a
    listing (pass the last id of one page as ``before`` for the next).

    Args:
        conn: A connection from ``open_for_reading(path)``.
        path: The journal's file (for error messages).
        user: Only this user's tasks (``with_user``).
        users_only: Only tasks of some user (what a service made, not the tasks of a
            hybrid algorithm it runs).
        status: Only tasks of this status (as the file has it: ``"queued"``, ...).
        priority: Only tasks of this priority (``int(TaskPriority)``).
        before: Only tasks with a smaller id.
        limit: Most ids returned.

    Raises:
        JournalError: If the journal cannot be read.
    """
    where: list[str] = []
    params: list[Any] = []
    if user is not None:
        where.append("user = ?")
        params.append(user)
    elif users_only:
        where.append("user IS NOT NULL")
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if priority is not None:
        where.append("priority = ?")
        params.append(priority)
    if before is not None:
        where.append("id < ?")
        params.append(before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    try:
        found = conn.execute(
            f"SELECT id FROM tasks {clause} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
    except sqlite3.Error as exc:
        raise fail(path, exc) from exc
    return [row[0] for row in found]


def counts(path: str) -> dict[str, int]:
    """How many tasks the journal holds in each status."""
    conn = open_for_reading(path)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall())
    except sqlite3.Error as exc:
        raise fail(path, exc) from exc
    finally:
        conn.close()


def show_row(path: str, ref: int | str) -> JournalRow:
    """The task with that id or client key.

    Raises:
        JournalError: If the journal has no such task or cannot be read.
    """
    conn = open_for_reading(path)
    try:
        found = read_row(conn, path, ref)
    finally:
        conn.close()
    if found is None:
        kind = "key" if isinstance(ref, str) else "id"
        raise JournalError(path, f"has no task with {kind} {ref!r}")
    return found


def gc(path: str, older_than: float) -> int:
    """Delete the tasks that ended more than ``older_than`` seconds ago, and give the space
    back to the file system. Returns how many were deleted."""
    conn = open_for_reading(path)
    try:
        deleted = delete_ended(conn, time.time() - older_than)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if deleted:
            conn.execute("VACUUM")
        return deleted
    except sqlite3.Error as exc:
        raise fail(path, exc) from exc
    finally:
        conn.close()


def describe_value(row: JournalRow) -> str:
    """A task's stored value or error, as text (``repr`` of the value)."""
    try:
        if row.status.value == "failed":
            err = row.failure()
            return "" if err is None else f"{type(err).__name__}: {err}"
        return repr(row.value())
    except Exception as exc:  # a value whose class cannot be imported here
        return f"<cannot be read here: {type(exc).__name__}: {exc}>"
