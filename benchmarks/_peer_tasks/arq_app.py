"""arq's side of benchmarks/durable_peers.py: the one coroutine and the worker settings.

``PEER_ARQ_POLL_DELAY`` sets the worker's ``poll_delay`` when given (arq's default is 0.5 s).
Run by the peers' virtualenv only, as ``arq arq_app.WorkerSettings``.
"""

import os
from typing import Any

from arq.connections import RedisSettings


async def noop(ctx: dict[str, Any], i: int) -> int:
    return i


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 (arq reads plain class attributes)
    redis_settings = RedisSettings(port=int(os.environ["PEER_REDIS_PORT"]))
    if "PEER_ARQ_POLL_DELAY" in os.environ:
        poll_delay = float(os.environ["PEER_ARQ_POLL_DELAY"])
