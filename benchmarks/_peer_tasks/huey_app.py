"""Huey's side of benchmarks/durable_peers.py: one Huey instance, on Redis
(``PEER_HUEY=redis``, ``PEER_REDIS_PORT``) or on SQLite (``PEER_HUEY=sqlite``, the database
file ``PEER_SQLITE_PATH``), each at its defaults, and its one task.

Run by the peers' virtualenv only, as
``huey_consumer huey_app.huey --workers 2 --worker-type process``.
"""

import os

from huey import RedisHuey, SqliteHuey

if os.environ["PEER_HUEY"] == "redis":
    huey = RedisHuey("bench", host="127.0.0.1", port=int(os.environ["PEER_REDIS_PORT"]))
else:
    huey = SqliteHuey("bench", filename=os.environ["PEER_SQLITE_PATH"])


@huey.task()
def noop(i: int) -> int:
    return i
