"""The wire protocol between a :class:`ProcessExecutor` and its worker processes.

The frame layouts, both :class:`~logosq_os_scheduler._framing.Framing` (the frame format
the package's worker protocols share with the Qiskit simulator workers): ``_TO_WORKER`` and
its header ``_HDR_IN``, ``_FROM_WORKER`` and its header ``_HDR_OUT``. The per-task loops cut
frames inline from the headers (a call per frame would cost on a path every task takes).
Then the frame kinds, the socket read and write sizes, :func:`_send_frames` (the worker's
writer), and the body format of a failure: :func:`_pack_exception` (in the worker) and
:func:`_unpack_exception` (in the parent). Imports no other module of this package.
"""

from __future__ import annotations

import itertools
import os
import pickle
import socket
import traceback

from ..._errors import TaskFailedError
from ..._framing import Framing

_PROTOCOL = 5
# Frames no larger than this are sent as one buffer (header and body joined).
_JOIN_LIMIT = 1 << 16
_RECV_SIZE = 1 << 18
_RECV_MAX = 1 << 24

# parent -> worker: kind, task id, payload length, memory limit (0: none), CPU limit (0: none)
_TO_WORKER = Framing("<BqQQd", length_at=2)
_HDR_IN = _TO_WORKER.header
_RUN = 0
_EXIT = 1
_CANCEL = 2
# worker -> parent: kind, task id, body length
_FROM_WORKER = Framing("<BqQ", length_at=2)
_HDR_OUT = _FROM_WORKER.header
_READY = 0
_OK = 1
_RAISED = 2
_BAD_INPUT = 3  # the function or its arguments could not be unpickled in the worker
_BAD_RESULT = 4  # the value could not be pickled
_OVER_LIMIT = 5
_SKIPPED = 6  # a queued task was cancelled before it started


def _send_frames(sock: socket.socket, frames: list[tuple[int, int, bytes]]) -> None:
    """Send frames in order, in one write when they are small."""
    parts: list[bytes] = []
    for kind, task_id, body in frames:
        parts.append(_HDR_OUT.pack(kind, task_id, len(body)))
        parts.append(body)
    if sum(map(len, parts)) <= _JOIN_LIMIT:
        sock.sendall(b"".join(parts))
    else:
        for part in parts:
            sock.sendall(part)


def _pack_exception(exc: BaseException) -> bytes:
    """Pickle an exception with its chain, link by link (pickle drops ``__cause__``)."""
    try:
        text = "".join(traceback.format_exception(exc))
    except BaseException:
        text = f"{type(exc).__name__} (the traceback could not be formatted)\n"
    links: list[tuple[bytes | None, str, str, str]] = []
    seen: set[int] = set()
    link: BaseException | None = exc
    via = ""
    while link is not None and id(link) not in seen and len(links) < 16:
        seen.add(id(link))
        data: bytes | None
        try:
            data = pickle.dumps(link, _PROTOCOL)
            # Many exception classes pickle but do not unpickle (a custom __init__): check here,
            # where the failure can still be described.
            pickle.loads(data)
        except BaseException:
            data = None
        try:
            message = str(link)
        except BaseException:
            message = "<message could not be formatted>"
        kind = type(link)
        links.append((data, f"{kind.__module__}.{kind.__qualname__}", message, via))
        if link.__cause__ is not None:
            link, via = link.__cause__, "cause"
        elif link.__context__ is not None and not link.__suppress_context__:
            link, via = link.__context__, "context"
        else:
            link = None
    return pickle.dumps((os.getpid(), text, links), _PROTOCOL)


def _unpack_exception(body: bytes | bytearray, task_id: int) -> BaseException:
    """Rebuild an exception packed by :func:`_pack_exception`, chain and traceback note."""
    pid, text, links = pickle.loads(body)
    rebuilt: list[tuple[BaseException, str]] = []
    for data, type_name, message, via in links:
        exc: BaseException | None = None
        if data is not None:
            try:
                exc = pickle.loads(data)
            except Exception:
                exc = None
        if exc is None:
            if rebuilt:
                break  # the traceback note still shows the rest of the chain
            exc = TaskFailedError(
                task_id,
                f"task {task_id} raised {type_name}: {message} (the exception itself could not "
                "be sent back from its worker process; see the worker's traceback below)",
            )
        rebuilt.append((exc, via))
    for (outer, _), (inner, via) in itertools.pairwise(rebuilt):
        if via == "cause":
            outer.__cause__ = inner
        else:
            outer.__context__ = inner
    top = rebuilt[0][0]
    top.add_note(f"[traceback in worker process {pid}]\n{text.rstrip()}")
    if not isinstance(top, Exception):
        # SystemExit or KeyboardInterrupt from a task must not unwind the caller's loop.
        wrapped = TaskFailedError(
            task_id, f"task {task_id} raised {type(top).__name__} in its worker process"
        )
        wrapped.__cause__ = top
        return wrapped
    return top
