"""The worker processes that run local simulations in process isolation.

Holds :class:`_WorkerPool` (a backend's worker processes, one exchange at a time each),
:class:`_Worker` (one ``python _aer_worker.py`` process), :class:`_Replies` (reading a
worker's framed replies from its stdout) and the sizes that govern reading them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pickle
import subprocess
import sys
import weakref
from collections.abc import Callable
from typing import Any

from ..._errors import TransientBackendError
from .. import _aer_worker

# A worker's reply up to this size is unpickled on the event loop (a small one is quick to
# read); a larger one in a thread, where the loop keeps turning while it is read.
_INLINE_REPLY_BYTES = 256 * 1024
# Bytes asked of a worker's pipe per read. os.read allocates what it is asked for: 1 MiB
# comes from mmap, which is slow to do for every reply; 64 KiB comes from the heap, cheaply.
# A longer reply takes several reads (the loop calls the reader while the pipe has data).
_READ_SIZE = 64 * 1024


class _Worker:
    """One worker process (``python _aer_worker.py``) and the sources it already holds.

    Requests are written by a helper thread (which prepares them first: transpiling, QPY),
    replies read by the event loop, which watches the process's stdout: a job costs the loop
    one thread hand-off and one wake-up when the reply lands, as a job in a worker thread
    does. The stdout pipe is only ever read with ``os.read`` on its descriptor.

    Invariant: ``known`` lists the sources this process has been sent; a new process
    starts with none.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, _aer_worker.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.replies = self.process.stdout.fileno()
        self.known: set[str] = set()

    def send(self, request: bytes) -> bool:
        """Write a framed request; False if the process is gone."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(request)
            stdin.flush()
        except (OSError, ValueError):  # a broken pipe, or pipes closed under us by kill()
            return False
        return True

    def kill(self) -> None:
        """Stop the process now and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.process.wait()
        self._close_pipes()

    def close(self, timeout: float) -> None:
        """Let the process finish its request and exit (end of input), else kill it."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class _Replies:
    """The framed replies of one exchange with a worker, as they arrive on its stdout.

    Read by the event loop (``add_reader``), or, where the loop cannot watch a pipe (the
    Windows proactor loop), by the helper thread after it sent the requests
    (:meth:`read_blocking`). ``frames`` holds the bodies of the replies complete so far.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._buffer = bytearray()
        self.frames: list[bytes] = []
        self._ended = False
        self._watching = False
        self._waiter: asyncio.Future[None] | None = None

    def watch(self) -> bool:
        """Have the loop read the replies; False if it cannot watch a pipe."""
        try:
            self._loop.add_reader(self._fd, self._readable)
        except NotImplementedError:
            return False
        self._watching = True
        return True

    def stop(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._fd)

    def _readable(self) -> None:
        self._take()
        if self._ended:
            self.stop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self) -> None:
        """Read what is there (the descriptor is readable, or this is the helper thread)
        and split off complete frames."""
        try:
            data = os.read(self._fd, _READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self._ended = True
            return
        self._buffer += data
        self.frames += _aer_worker.split_frames(self._buffer)

    def read_blocking(self, count: int) -> None:
        """In the helper thread: read until ``count`` replies are complete or the pipe ends."""
        while len(self.frames) < count and not self._ended:
            self._take()

    async def wait(self, count: int) -> list[bytes]:
        """The first ``count`` replies, once they are complete.

        Raises:
            _WorkerDied: The pipe ended first.
        """
        while len(self.frames) < count:
            if self._ended:
                raise _WorkerDied()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.frames[:count]


class _WorkerPool:
    """``size`` worker processes, each serving one exchange at a time.

    Invariant: a worker is in ``_idle`` iff no exchange is using it; a worker whose exchange
    was interrupted (cancelled, or its process died) is killed and replaced by a fresh
    process on next use, so a half-read reply can never be taken for the next one's.
    ``_idle`` is an asyncio queue, bound to the loop the pool was made on (``loop``).
    """

    def __init__(self, backend: str, size: int) -> None:
        self._backend = backend
        self.loop = asyncio.get_running_loop()
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # None: a slot whose process is not started yet
        self._all: set[_Worker] = set()
        self._closed = False
        # Workers of a pool dropped without aclose() (its backend garbage-collected) are
        # still stopped: their end of input makes them exit.
        self._finalizer = weakref.finalize(self, _stop_all, self._all)

    async def start(self) -> None:
        slots = [self._idle.get_nowait() for _ in range(self._idle.qsize())]
        try:
            for i, worker in enumerate(slots):
                if worker is None:
                    slots[i] = self._spawn()
        finally:
            for worker in slots:
                self._idle.put_nowait(worker)

    def _spawn(self) -> _Worker:
        # Popen returns once the child exists; the worker imports Aer on its own time.
        worker = _Worker()
        self._all.add(worker)
        return worker

    async def exchange(
        self,
        requests: Callable[[], list[_aer_worker.Request]],
        source_payload: Callable[[], bytes],
        *,
        inline_for: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Make ``requests()`` in a helper thread and send them to one worker process, which
        is this exchange's alone; return its replies, one per request, in order.

        The event loop reads the replies itself, watching the worker's stdout from before
        the helper thread starts: the thread's own return is not waited for on the way
        (it lands while the worker simulates), so a job costs the loop one thread hand-off
        and one wake-up by the reply. With ``inline_for``, a source the worker holds
        already, ``requests()`` is made and sent on the loop instead (no hand-off), where
        the loop reads the replies and the worker has that source.

        Raises:
            TransientBackendError: The worker process died (it is replaced on next use), or
                the pool is closed.
            What ``requests`` raises.
        """
        if self._closed:
            raise TransientBackendError(self._backend, "the backend was closed")
        worker = await self._idle.get()
        healthy = False
        replies: _Replies | None = None
        try:
            if worker is None:
                worker = self._spawn()
            leased = worker
            replies = _Replies(leased.replies, self.loop)
            watched = replies.watch()
            sent = 0

            def send() -> int:
                nonlocal sent
                made = requests()
                for request in made:
                    if request.source not in leased.known:
                        # The first request to this process carries the simulation source
                        # (pickling a device Target is slow: here, off the loop).
                        request = dataclasses.replace(
                            request, sources={request.source: source_payload()}
                        )
                    sent += 1
                    if not leased.send(_aer_worker.frame(request)):
                        raise _WorkerDied()
                    leased.known.add(request.source)
                if not watched:
                    replies.read_blocking(len(made))
                return len(made)

            try:
                if watched and inline_for is not None and inline_for in leased.known:
                    count = send()
                else:
                    count = await asyncio.to_thread(send)
                bodies = await replies.wait(count)
            except _WorkerDied:
                code = leased.process.poll()
                raise TransientBackendError(
                    self._backend,
                    "the simulator worker process died"
                    + (f" (exit code {code})" if code is not None else "")
                    + "; the job can be retried",
                ) from None
            except Exception:
                healthy = sent == 0  # the process was never asked
                raise
            healthy = True  # every reply is in: nothing is left half-read in the pipe
            return [
                # A large reply (thousands of counts) is unpickled off the loop.
                pickle.loads(body)
                if len(body) < _INLINE_REPLY_BYTES
                else await asyncio.to_thread(pickle.loads, body)
                for body in bodies
            ]
        finally:
            if replies is not None:
                replies.stop()
            if not healthy and worker is not None:
                # Cancelled or broken mid-exchange: its pipe may hold half a reply. Killing
                # and reaping a process is quick: done here, not awaited,
                # so that a second cancellation cannot lose the slot.
                self._all.discard(worker)
                worker.kill()
                worker = None
            self._idle.put_nowait(worker)

    def abandon(self) -> None:
        """Stop every worker now (the pool's event loop is gone)."""
        self._closed = True
        for worker in list(self._all):
            worker.kill()
        self._all.clear()

    async def aclose(self) -> None:
        self._closed = True
        workers = list(self._all)
        self._all.clear()
        for worker in workers:
            await asyncio.to_thread(worker.close, 5.0)


def _stop_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.close(timeout=1.0)
    workers.clear()


class _WorkerDied(Exception):
    """A worker process died mid-exchange (its pipe broke or ended)."""
