"""Celery's side of benchmarks/durable_peers.py: the app and its one task, on Redis.

Broker and result backend are the same fresh redis-server (``PEER_REDIS_URL``). Run by the
peers' virtualenv only, as ``celery -A celery_app worker --concurrency 2``.
"""

import os

from celery import Celery

app = Celery(
    "celery_app", broker=os.environ["PEER_REDIS_URL"], backend=os.environ["PEER_REDIS_URL"]
)


@app.task
def noop(i: int) -> int:
    return i
