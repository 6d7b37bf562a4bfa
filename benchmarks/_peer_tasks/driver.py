"""The producer side of benchmarks/durable_peers.py, run by the peers' virtualenv's python.

    driver.py PEER e2e N      wait until the workers answer, then 200 untimed warm-up tasks
                              with their results read back, then the timed run: submit N
                              ``noop(i)`` one after another, then read every result back
                              through the framework's own client and check it equals i
    driver.py PEER submit N   submit N, timed, with no workers running (nothing is read back)

Where the broker is comes from the environment (``PEER_REDIS_PORT``, ``PEER_REDIS_URL``,
``PEER_HUEY``, ``PEER_SQLITE_PATH``, ``PEER_ARQ_POLL_DELAY``), as for the workers. Prints one
JSON line: the phase's timings (``time.perf_counter`` seconds), the broker's settings as the
broker reports them, and the versions of the packages used.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

WARMUP = 200
READY_TIMEOUT_S = 60.0
RESULT_TIMEOUT_S = 120.0
# After the first result comes back, the other worker process may still be starting.
SETTLE_S = 2.0

perf = time.perf_counter


def _versions(*packages: str) -> dict[str, str]:
    return {p: importlib.metadata.version(p) for p in packages}


def _redis_config() -> dict[str, str]:
    import redis

    r = redis.Redis(host="127.0.0.1", port=int(os.environ["PEER_REDIS_PORT"]))
    config = {**r.config_get("save"), **r.config_get("appendonly")}
    if config.get("appendonly") == "yes":
        config.update(r.config_get("appendfsync"))
    info = r.info("server")
    r.close()
    return {"redis_version": str(info["redis_version"]), **{k: str(v) for k, v in config.items()}}


def _check(i: int, value: object) -> None:
    if value != i:
        raise SystemExit(f"task {i} returned {value!r}, not {i}")


def _run_sync(
    submit: Callable[[int], Any], get: Callable[[Any, float], Any], phase: str, n: int
) -> dict[str, float]:
    if phase == "submit":
        t0 = perf()
        for i in range(n):
            submit(i)
        return {"submit_s": perf() - t0}
    t0 = perf()
    _check(-1, get(submit(-1), READY_TIMEOUT_S))
    ready = perf() - t0
    time.sleep(SETTLE_S)
    handles = [submit(i) for i in range(WARMUP)]
    for i, h in enumerate(handles):
        _check(i, get(h, RESULT_TIMEOUT_S))
    t0 = perf()
    handles = [submit(i) for i in range(n)]
    submitted = perf()
    for i, h in enumerate(handles):
        _check(i, get(h, RESULT_TIMEOUT_S))
    done = perf()
    return {"ready_s": ready, "submit_s": submitted - t0, "e2e_s": done - t0}


async def _run_async(
    submit: Callable[[int], Awaitable[Any]],
    get: Callable[[Any, float], Awaitable[Any]],
    phase: str,
    n: int,
) -> dict[str, float]:
    if phase == "submit":
        t0 = perf()
        for i in range(n):
            await submit(i)
        return {"submit_s": perf() - t0}
    t0 = perf()
    _check(-1, await get(await submit(-1), READY_TIMEOUT_S))
    ready = perf() - t0
    await asyncio.sleep(SETTLE_S)
    handles = [await submit(i) for i in range(WARMUP)]
    for i, h in enumerate(handles):
        _check(i, await get(h, RESULT_TIMEOUT_S))
    t0 = perf()
    handles = [await submit(i) for i in range(n)]
    submitted = perf()
    for i, h in enumerate(handles):
        _check(i, await get(h, RESULT_TIMEOUT_S))
    done = perf()
    return {"ready_s": ready, "submit_s": submitted - t0, "e2e_s": done - t0}


def celery(phase: str, n: int) -> dict[str, Any]:
    from celery_app import noop

    timings = _run_sync(noop.delay, lambda r, t: r.get(timeout=t), phase, n)
    return {**timings, "versions": _versions("celery", "kombu", "redis")}


def dramatiq(phase: str, n: int) -> dict[str, Any]:
    from dramatiq_app import noop

    def get(message: Any, timeout: float) -> Any:
        return message.get_result(block=True, timeout=int(timeout * 1000))

    timings = _run_sync(noop.send, get, phase, n)
    return {**timings, "versions": _versions("dramatiq", "redis")}


def rq(phase: str, n: int) -> dict[str, Any]:
    from redis import Redis
    from rq import Queue
    from rq_tasks import noop

    queue = Queue(connection=Redis(host="127.0.0.1", port=int(os.environ["PEER_REDIS_PORT"])))

    def get(job: Any, timeout: float) -> Any:
        result = job.latest_result(timeout=int(timeout))
        if result is None or result.type != result.Type.SUCCESSFUL:
            raise SystemExit(f"job {job.id}: no successful result ({result!r})")
        return result.return_value

    timings = _run_sync(lambda i: queue.enqueue(noop, i), get, phase, n)
    return {**timings, "versions": _versions("rq", "redis")}


def arq(phase: str, n: int) -> dict[str, Any]:
    from arq import create_pool
    from arq.connections import RedisSettings

    # The client polls for a result as often as the worker polls for jobs: arq's default
    # (0.5 s) for both, or the tuned value for both.
    poll = float(os.environ.get("PEER_ARQ_POLL_DELAY", "0.5"))

    async def main() -> dict[str, float]:
        pool = await create_pool(RedisSettings(port=int(os.environ["PEER_REDIS_PORT"])))

        async def submit(i: int) -> Any:
            return await pool.enqueue_job("noop", i)

        async def get(job: Any, timeout: float) -> Any:
            return await job.result(timeout=timeout, poll_delay=poll)

        try:
            return await _run_async(submit, get, phase, n)
        finally:
            await pool.aclose()

    timings = asyncio.run(main())
    versions = _versions("arq", "redis", "hiredis")
    return {**timings, "client_poll_delay_s": poll, "versions": versions}


def huey(phase: str, n: int) -> dict[str, Any]:
    from huey_app import huey as app
    from huey_app import noop

    timings = _run_sync(noop, lambda r, t: r.get(blocking=True, timeout=t), phase, n)
    out: dict[str, Any] = {**timings, "versions": _versions("huey")}
    if os.environ["PEER_HUEY"] == "redis":
        out["versions"].update(_versions("redis"))
    else:
        conn = sqlite3.connect(os.environ["PEER_SQLITE_PATH"])
        journal = conn.execute("pragma journal_mode").fetchone()[0]
        conn.close()
        # huey sets synchronous only when given fsync=...; with its default it leaves SQLite's.
        sync = app.storage.conn.execute("pragma synchronous").fetchone()[0]
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        out["broker_config"] = {
            "sqlite_version": sqlite3.sqlite_version,
            "journal_mode": journal,
            "synchronous": names.get(sync, str(sync)),
        }
    return out


FRAMEWORKS = {"celery": celery, "dramatiq": dramatiq, "rq": rq, "arq": arq, "huey": huey}


def main() -> None:
    framework, phase, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if phase not in ("e2e", "submit"):
        raise SystemExit(f"unknown phase {phase!r}")
    out = FRAMEWORKS[framework](phase, n)
    if "PEER_REDIS_PORT" in os.environ and os.environ.get("PEER_HUEY") != "sqlite":
        out["broker_config"] = _redis_config()
    out["python"] = sys.version.split()[0]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
