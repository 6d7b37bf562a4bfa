"""Dramatiq's side of benchmarks/durable_peers.py: a Redis broker with the Results middleware
on a Redis backend, and its one actor.

Run by the peers' virtualenv only, as ``dramatiq dramatiq_app --processes 2 --threads 8``.
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

broker = RedisBroker(url=os.environ["PEER_REDIS_URL"])
broker.add_middleware(Results(backend=RedisBackend(url=os.environ["PEER_REDIS_URL"])))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def noop(i: int) -> int:
    return i
