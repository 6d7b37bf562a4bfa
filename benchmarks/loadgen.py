"""A small HTTP/1.1 load generator on raw asyncio streams (uvloop when installed), for
`bench_service.py`: keep-alive connections sending one prepared request each, either as fast
as the server answers (closed loop, wrk's way) or at a fixed rate (wrk2's way: each request has
an intended send time, and its latency counts from that time, so a server that stalls is
charged for the requests that waited behind the stall).

It parses only what uvicorn sends back: a status line, headers and a ``content-length`` body.
It is cheap enough not to be the bottleneck at the rates it is used at (the benchmark reports
its CPU share and checks the rate it achieved against the rate asked for).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadResult", "build_request", "closed_loop", "fixed_rate", "percentile", "run"]


def build_request(
    method: str, path: str, host: str, port: int, body: bytes = b"", token: str | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds
    wall: float = 0.0
    cpu: float = 0.0  # this process's CPU seconds over the run

    @property
    def rate(self) -> float:
        return self.requests / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second (1.0 = one core busy all the time)."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i < 0:
            raise ConnectionError("a response without content-length")
        j = lower.index(b"\r\n", i + 2)
        n = int(lower[i + 17 : j])
        if n:
            await self.reader.readexactly(n)
        return status


async def _open(host: str, port: int) -> _Conn:
    reader, writer = await asyncio.open_connection(host, port)
    return _Conn(reader, writer)


async def closed_loop(
    host: str, port: int, request: bytes, connections: int, duration: float
) -> LoadResult:
    """Each connection sends its next request as soon as its last one is answered."""
    conns = [await _open(host, port) for _ in range(connections)]
    out = LoadResult()
    stop = 0.0

    async def one(c: _Conn) -> None:
        clock = time.perf_counter
        while True:
            t = clock()
            if t >= stop:
                return
            try:
                status = await c.send(request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                out.errors += 1
                return
            out.latencies.append(clock() - t)
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.requests += 1

    t0, c0 = time.perf_counter(), time.process_time()
    stop = t0 + duration
    await asyncio.gather(*(one(c) for c in conns))
    out.wall, out.cpu = time.perf_counter() - t0, time.process_time() - c0
    for c in conns:
        c.writer.close()
    return out


async def fixed_rate(
    host: str,
    port: int,
    request: bytes,
    connections: int,
    rate: float,
    duration: float,
    min_requests: int = 0,
    max_seconds: float = math.inf,
) -> LoadResult:
    """``rate`` requests a second in all, spread over ``connections``: request ``j`` of
    connection ``k`` is due at ``t0 + (k + j * connections) / rate``; its latency runs from
    that time to the end of its response (so time spent waiting behind a slow answer on the
    same connection counts). At least ``min_requests`` are sent (a low rate runs longer than
    ``duration``), unless that would take more than ``max_seconds``."""
    conns = [await _open(host, port) for _ in range(connections)]
    out = LoadResult()
    n = max(rate * duration, min(min_requests, rate * max_seconds))
    per_conn = max(1, round(n / connections))
    t0 = 0.0

    async def one(k: int, c: _Conn) -> None:
        clock = time.perf_counter
        for j in range(per_conn):
            due = t0 + (k + j * connections) / rate
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                status = await c.send(request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                out.errors += 1
                return
            out.latencies.append(clock() - due)
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.requests += 1

    t0, c0 = time.perf_counter() + 0.05, time.process_time()
    await asyncio.gather(*(one(k, c) for k, c in enumerate(conns)))
    out.wall, out.cpu = time.perf_counter() - t0, time.process_time() - c0
    for c in conns:
        c.writer.close()
    return out


def run(make: Callable[[], Coroutine[Any, Any, LoadResult]]) -> LoadResult:
    """Run one load on a fresh event loop, uvloop's when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(make())
    return uvloop.run(make())  # type: ignore[no-any-return]
