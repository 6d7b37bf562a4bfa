"""RQ's side of benchmarks/durable_peers.py: the one job function, imported by its module
path by ``rq worker`` (default Worker, or ``-w rq.SimpleWorker``). The peers' virtualenv only.
"""


def noop(i: int) -> int:
    return i
