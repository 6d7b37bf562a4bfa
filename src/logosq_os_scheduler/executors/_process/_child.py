"""The worker process's side of a :class:`ProcessExecutor`: what runs inside a worker.

:func:`_worker_main` is the target the parent starts each worker with; it reads frames from
its socket (:class:`_Inbox`), runs each task under its limits (:func:`_run_task`) and writes
the replies. Imports :mod:`._wire` only, never the parent side (:mod:`._executor`).
"""

from __future__ import annotations

import faulthandler
import math
import os
import pickle
import select
import signal
import socket
import sys
import threading
from collections import deque

from ._wire import (
    _BAD_INPUT,
    _BAD_RESULT,
    _CANCEL,
    _HDR_IN,
    _OK,
    _OVER_LIMIT,
    _PROTOCOL,
    _RAISED,
    _READY,
    _RECV_MAX,
    _RECV_SIZE,
    _RUN,
    _SKIPPED,
    _pack_exception,
    _send_frames,
)

if sys.platform != "win32":
    import resource


# -- the worker process ----------------------------------------------------------------------


class _CpuTimeExceededError(BaseException):
    """Raised inside a worker by SIGXCPU. A BaseException, so ``except Exception`` in the
    task's own code does not swallow it."""


def _on_sigxcpu(signum: int, frame: object) -> None:
    raise _CpuTimeExceededError


# A task as the worker holds it: id, pickled call, memory limit, CPU limit.
_Run = tuple[int, bytearray, int, float]


class _Inbox:
    """The worker's end of its socket: frames from the parent, parsed into runs and cancels."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self.runs: deque[_Run] = deque()
        self.cancelled: set[int] = set()
        self.exit = False

    def _parse(self) -> None:
        buf = self._buf
        size = _HDR_IN.size
        pos = 0
        while len(buf) - pos >= size:
            kind, task_id, length, memory, cpu = _HDR_IN.unpack_from(buf, pos)
            end = pos + size + length
            if end > len(buf):
                break
            if kind == _RUN:
                self.runs.append((task_id, buf[pos + size : end], memory, cpu))
            elif kind == _CANCEL:
                self.cancelled.add(task_id)
            else:
                self.exit = True
            pos = end
        if pos:
            del buf[:pos]

    def wait(self) -> bool:
        """Block until a task or EXIT arrives; False at EXIT or end-of-file."""
        while not self.runs and not self.exit:
            chunk = self._sock.recv(_RECV_SIZE)
            if not chunk:
                return False
            self._buf += chunk
            self._parse()
        return not self.exit or bool(self.runs)

    def poll(self) -> None:
        """Take in whatever has arrived, without blocking."""
        while True:
            try:
                chunk = self._sock.recv(_RECV_MAX, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break  # end-of-file: wait() reports it once the queued tasks are done
            self._buf += chunk
        self._parse()

    def skip_cancelled(self) -> list[int]:
        """Drop queued tasks the parent cancelled; returns their ids."""
        cancelled = self.cancelled
        if not cancelled:
            return []
        skipped = [run[0] for run in self.runs if run[0] in cancelled]
        if skipped:
            self.runs = deque(run for run in self.runs if run[0] not in cancelled)
        # A cancel for a task not queued here refers to one already committed: the parent
        # kills this worker for that one, so it can be forgotten.
        cancelled.clear()
        return skipped


def _apply_limits(memory: int, cpu: float) -> tuple[int, int] | None:
    """Set the task's limits on this worker; returns the address-space limit to restore."""
    saved_as: tuple[int, int] | None = None
    if memory:
        saved_as = resource.getrlimit(resource.RLIMIT_AS)
        hard = saved_as[1]
        soft = memory if hard == resource.RLIM_INFINITY else min(memory, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    if cpu:
        signal.signal(signal.SIGXCPU, _on_sigxcpu)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        # RLIMIT_CPU counts the whole process's CPU time in whole seconds: allow this task
        # ``cpu`` more seconds than used so far, rounded up.
        soft = math.ceil(usage.ru_utime + usage.ru_stime + cpu)
        old_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        # One second past the soft limit the kernel kills the worker: a backstop for code
        # stuck in C that never lets the SIGXCPU handler run. The parent retires the worker
        # after this task, since an unprivileged process cannot raise a hard limit again.
        hard = soft + 1 if old_hard == resource.RLIM_INFINITY else min(soft + 1, old_hard)
        resource.setrlimit(resource.RLIMIT_CPU, (min(soft, hard), hard))
    return saved_as


def _lift_limits(cpu: float, saved_as: tuple[int, int] | None) -> None:
    if cpu:
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    if saved_as is not None:
        resource.setrlimit(resource.RLIMIT_AS, saved_as)


def _run_task(payload: bytearray, memory: int, cpu: float) -> tuple[int, bytes]:
    """Run one task in the worker; returns the reply's kind and body."""
    try:
        fn, args, kwargs = pickle.loads(payload)
    except BaseException as exc:
        return _BAD_INPUT, _pack_exception(exc)
    try:
        saved_as = _apply_limits(memory, cpu)
        try:
            value = fn(*args, **kwargs)
        finally:
            _lift_limits(cpu, saved_as)
    except _CpuTimeExceededError:
        return _OVER_LIMIT, pickle.dumps(("cpu_seconds", None), _PROTOCOL)
    except MemoryError as exc:
        if memory:
            return _OVER_LIMIT, pickle.dumps(("memory_bytes", _pack_exception(exc)), _PROTOCOL)
        return _RAISED, _pack_exception(exc)
    except BaseException as exc:  # a task's failure is reported, never kills the worker
        return _RAISED, _pack_exception(exc)
    del fn, args, kwargs
    try:
        return _OK, pickle.dumps(value, _PROTOCOL)
    except BaseException as exc:
        exc.add_note(f"(the task returned a value of type {type(value).__qualname__})")
        return _BAD_RESULT, _pack_exception(exc)


def _die_with(scheduler: int) -> None:
    """Kill this worker as soon as the scheduler's process (pid ``scheduler``) exits.

    A task must not run on after its scheduler was killed (SIGKILL, the OOM killer): a
    restarted scheduler may run it again from its journal. Between tasks the worker reads
    end-of-file from its socket and stops; during a task only this watch sees it: a thread
    that waits on a pidfd of the scheduler (Linux 5.3 and later), which becomes readable when
    it exits. Where there is none, the worker notices after the task it runs. A worker paused
    with SIGSTOP (preempted) runs nothing, and stays paused.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return
    try:
        fd = pidfd_open(scheduler)
    except OSError:
        return  # gone already (the socket's end-of-file stops us), or no pidfd here

    def watch() -> None:
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    # A small stack: the thread only waits, and a memory limit counts its stack too.
    size = threading.stack_size(256 * 1024)
    try:
        threading.Thread(target=watch, name="logosq-scheduler-watch", daemon=True).start()
    finally:
        threading.stack_size(size)


def _worker_main(sock: socket.socket, scheduler: int) -> None:
    """The worker process: run tasks in the order they arrive, until EXIT or end-of-file (or
    the end of the scheduler's process ``scheduler``)."""
    _die_with(scheduler)
    # Ctrl-C goes to the whole process group: let the parent decide, and stop us cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A segfault prints the Python stack of the task to stderr before the worker dies.
    faulthandler.enable()
    sock.setblocking(True)
    inbox = _Inbox(sock)
    try:
        _send_frames(sock, [(_READY, 0, b"")])
        while inbox.wait():
            task_id, payload, memory, cpu = inbox.runs.popleft()
            reply, body = _run_task(payload, memory, cpu)
            del payload
            # The commit point: the parent learns which queued tasks were skipped before it
            # reads this result, so it knows which task runs next.
            inbox.poll()
            frames = [(_SKIPPED, skipped, b"") for skipped in inbox.skip_cancelled()]
            frames.append((reply, task_id, body))
            _send_frames(sock, frames)
            del body, frames
    except OSError:
        return  # the parent is gone
    finally:
        sock.close()
