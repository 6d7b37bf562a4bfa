"""The durable task queues users pick today, end to end on trivial tasks, each on its usual
broker started here on loopback: Celery, Dramatiq, RQ, arq and Huey on Redis (Debian's
``redis-server``), Huey on SQLite. The peers' side of issue #22's benchmark.

Usage::

    python benchmarks/durable_peers.py                       # 20,000 tasks a run, 3 runs each
    python benchmarks/durable_peers.py --quick               # 2,000, 1 run each, for CI
    python benchmarks/durable_peers.py --only celery-redis huey-sqlite --n 5000 --repeat 5
    python benchmarks/durable_peers.py --aof --output part.md --json runs.json

Method (the one in shared/peers.md), for each run of each peer:

- A fresh broker: ``redis-server`` in a new empty directory on a free loopback port, with no
  config file (so its RDB snapshot defaults; ``--aof`` adds ``--appendonly yes
  --appendfsync everysec``), its ``CONFIG GET save appendonly`` recorded; or, for Huey on
  SQLite, a new database file in a new empty directory, at Huey's defaults.
- The workers started with the framework's usual command, 2 worker processes, each command in
  its own session; the producer waits until a first task's result comes back, then 2 s more,
  then runs 200 untimed warm-up tasks and reads their results back.
- Timed: submit ``n`` tasks ``noop(i) -> i`` one after another, then read every result back
  through the framework's own client API and check it equals ``i``. e2e tasks/s = n / (last
  result read - first submit).
- Then the workers are stopped by their process groups, and on another fresh broker, with no
  workers running, ``n`` submits alone are timed: submit-only tasks/s.

The peers run in their own virtualenvs under .venv/ (created here when missing, reused while
their requirements are unchanged): arq 0.28 requires redis-py < 6 and Celery 5.7's kombu
requires redis-py >= 6.4, so arq has a virtualenv of its own. This process imports none of
them: a driver script (benchmarks/_peer_tasks/driver.py), run by the peers' python, submits and
reads back, and prints its timings as a JSON line. The workers import their task modules from
benchmarks/_peer_tasks/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TASKS = HERE / "_peer_tasks"
DRIVER = TASKS / "driver.py"
sys.path.insert(0, str(HERE))

from harness import loadavg, wait_for_quiet  # noqa: E402
from machine import _cpu_model, _git_revision, _ram_gib  # noqa: E402

# The peers' virtualenvs and what each installs (current releases that install on Python 3.11).
ENVS: dict[str, tuple[str, ...]] = {
    "bench-peers": (
        "celery[redis]>=5.7",
        "dramatiq[redis]>=2.2",
        "rq>=2.12",
        "huey>=3.5",
        "redis>=6.4",
    ),
    # arq 0.28 requires redis-py < 6; kombu 5.7 (Celery's) requires redis-py >= 6.4.
    "bench-peers-arq": ("arq>=0.28",),
}

WORKERS = 2
DEFAULT_N = 20_000
DEFAULT_REPEAT = 3
QUICK_N = 2_000


@dataclass(frozen=True)
class _Peer:
    framework: str  # the driver's name for it
    broker: str  # "redis" or "sqlite"
    env: str  # which of ENVS
    label: str  # for the table, defaults named
    commands: tuple[tuple[str, ...], ...]  # worker commands; "{url}" is the broker's URL
    environ: tuple[tuple[str, str], ...] = ()


PEERS: dict[str, _Peer] = {
    "celery-redis": _Peer(
        "celery",
        "redis",
        "bench-peers",
        "Celery on Redis (prefork; Redis result backend)",
        (("celery", "-A", "celery_app", "worker", "--concurrency", str(WORKERS)),),
    ),
    "dramatiq-redis": _Peer(
        "dramatiq",
        "redis",
        "bench-peers",
        "Dramatiq on Redis (Results middleware on Redis)",
        (("dramatiq", "dramatiq_app", "--processes", str(WORKERS), "--threads", "8"),),
    ),
    "rq-redis": _Peer(
        "rq",
        "redis",
        "bench-peers",
        "RQ on Redis (default `Worker`: forks per job)",
        (("rq", "worker", "--url", "{url}"),) * WORKERS,
    ),
    "rq-redis-simple": _Peer(
        "rq",
        "redis",
        "bench-peers",
        "RQ on Redis with `SimpleWorker` (no fork)",
        (("rq", "worker", "--url", "{url}", "-w", "rq.SimpleWorker"),) * WORKERS,
    ),
    "arq-redis": _Peer(
        "arq",
        "redis",
        "bench-peers-arq",
        "arq on Redis (defaults: worker `poll_delay=0.5`, client polls results every 0.5 s)",
        (("arq", "arq_app.WorkerSettings"),) * WORKERS,
    ),
    "arq-redis-fast": _Peer(
        "arq",
        "redis",
        "bench-peers-arq",
        "arq on Redis with `poll_delay=0.01` (worker and client)",
        (("arq", "arq_app.WorkerSettings"),) * WORKERS,
        (("PEER_ARQ_POLL_DELAY", "0.01"),),
    ),
    "huey-redis": _Peer(
        "huey",
        "redis",
        "bench-peers",
        "Huey on Redis",
        (
            (
                "huey_consumer",
                "huey_app.huey",
                "--workers",
                str(WORKERS),
                "--worker-type",
                "process",
            ),
        ),
        (("PEER_HUEY", "redis"),),
    ),
    "huey-sqlite": _Peer(
        "huey",
        "sqlite",
        "bench-peers",
        "Huey on SQLite (its defaults)",
        (
            (
                "huey_consumer",
                "huey_app.huey",
                "--workers",
                str(WORKERS),
                "--worker-type",
                "process",
            ),
        ),
        (("PEER_HUEY", "sqlite"),),
    ),
}


@dataclass
class PeerResult:
    """One run of one peer. ``skipped`` is empty for a run that ran, else why it did not."""

    name: str
    e2e_per_s: float
    submit_only_per_s: float
    n: int
    broker_config: str
    worker_command: str
    versions: dict[str, str] = field(default_factory=dict)
    skipped: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class PeerError(RuntimeError):
    """A peer's run failed (a worker or the driver died, a result was wrong or late)."""


# -- the peers' virtualenvs ---------------------------------------------------------------


def ensure_peer_env(env: str = "bench-peers") -> Path:
    """Create (or reuse) .venv/ENV with ENVS[env] installed; return its python.

    Reused while the requirement list and this Python are unchanged (a stamp file, as
    dev.py's ensure_env keeps)."""
    reqs = ENVS[env]
    env_dir = ROOT / ".venv" / env
    py = env_dir / "bin" / "python"
    stamp = env_dir / ".installed"
    want = hashlib.sha256(("\n".join(reqs) + "\n" + sys.version).encode()).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    print(f"[peers] setting up .venv/{env}: {' '.join(reqs)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    for args in (("--upgrade", "pip"), reqs):
        subprocess.run([str(py), "-m", "pip", "install", "-q", *args], check=True)
    stamp.write_text(want)
    took = time.perf_counter() - t0
    print(f"[peers] .venv/{env} set up in {took:.0f} s", file=sys.stderr, flush=True)
    return py


def peer_python(name: str) -> Path:
    """The python of the virtualenv that runs peer NAME (set up if missing)."""
    return ensure_peer_env(PEERS[name].env)


# -- redis-server -------------------------------------------------------------------------


@functools.cache
def find_redis_server() -> tuple[str | None, str]:
    """(path of redis-server, "") or (None, why not). Installs Debian's package when it is
    missing, apt-get is there and we are root."""
    exe = shutil.which("redis-server")
    if exe is None and shutil.which("apt-get") and os.geteuid() == 0:
        print("[peers] redis-server not found: apt-get install redis-server", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], env=env, check=False)
        exe = shutil.which("redis-server")
    if exe is None:
        return None, (
            "skipped: redis-server is not on PATH and could not be installed "
            "(install Debian's redis-server package)"
        )
    return exe, ""


def redis_server_version() -> str:
    exe, why = find_redis_server()
    if exe is None:
        return why
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else out.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# -- processes ----------------------------------------------------------------------------


def _start(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Stop PROC's process group: SIGTERM, then SIGKILL after GRACE seconds; then SIGKILL
    whatever of the group outlived its leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(path: Path, chars: int = 2_000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class _Broker:
    """A fresh broker in a new empty directory under WORKDIR: redis-server on a free loopback
    port, or the path of a new SQLite database."""

    def __init__(self, peer: _Peer, workdir: Path, aof: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{peer.broker}-", dir=workdir))
        self.proc: subprocess.Popen[bytes] | None = None
        self.environ: dict[str, str] = {}
        self.url = ""
        if peer.broker == "sqlite":
            self.environ["PEER_SQLITE_PATH"] = str(self.dir / "huey.db")
            return
        exe, why = find_redis_server()
        if exe is None:
            raise PeerError(why)
        for _ in range(3):  # the free port may be taken before redis-server binds it
            port = _free_port()
            argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
            if aof:
                argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
            self.proc = _start(argv, self.dir, dict(os.environ), self.dir / "redis.log")
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _ping(port):
                    self.url = f"redis://127.0.0.1:{port}/0"
                    self.environ = {"PEER_REDIS_PORT": str(port), "PEER_REDIS_URL": self.url}
                    return
                time.sleep(0.02)
            _stop(self.proc)
        raise PeerError(f"redis-server did not start: {_tail(self.dir / 'redis.log')}")

    def close(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def fs_type(path: Path) -> str:
    """The type of the filesystem PATH is on (fsync is nearly free on tmpfs): /proc/mounts."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, point, fs = line.split()[:3]
                inside = str(path.resolve()).startswith(point.rstrip("/") + "/")
                if (inside or str(path.resolve()) == point) and len(point) >= len(best):
                    best, kind = point, fs
    except OSError:
        pass
    return kind


def _worker_argvs(peer: _Peer, python: Path, url: str) -> list[list[str]]:
    bindir = python.parent
    return [
        [str(bindir / cmd[0]), *(a.replace("{url}", url) for a in cmd[1:])] for cmd in peer.commands
    ]


def worker_command(name: str) -> str:
    """The workers' command line(s) as the table shows them."""
    peer = PEERS[name]
    cmds = peer.commands
    one = shlex.join(
        [f"{k}={v}" for k, v in peer.environ]
        + [a.replace("{url}", "redis://127.0.0.1:PORT/0") for a in cmds[0]]
    )
    return f"{len(cmds)} x `{one}`" if len(cmds) > 1 else f"`{one}`"


def _driver(
    python: Path, peer: _Peer, phase: str, n: int, env: dict[str, str], timeout: float
) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [str(python), str(DRIVER), peer.framework, phase, str(n)],
            cwd=TASKS,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise PeerError(f"{phase} phase took over {timeout:.0f} s") from e
    if proc.returncode != 0:
        raise PeerError(f"{phase} phase failed ({proc.returncode}): {proc.stderr[-2_000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _broker_config(peer: _Peer, reported: dict[str, str], aof: bool) -> str:
    if peer.broker == "sqlite":
        return (
            f"SQLite {reported['sqlite_version']}, journal_mode={reported['journal_mode']}, "
            f"synchronous={reported['synchronous']}"
        )
    out = (
        f"redis-server {reported['redis_version']}, no config file"
        f"{' but --appendonly yes --appendfsync everysec' if aof else ''}: "
        f"save '{reported['save']}', appendonly {reported['appendonly']}"
    )
    if "appendfsync" in reported:
        out += f", appendfsync {reported['appendfsync']}"
    return out


def run_peer(
    name: str, n: int, workdir: Path, *, python: Path | None = None, aof: bool = False
) -> PeerResult:
    """One run of peer NAME with N timed tasks: the e2e phase, then the submit-only phase,
    each on a fresh broker under WORKDIR (an existing directory; left as it was found).

    PYTHON is the python of the virtualenv that has the peer's packages; None: its own
    (``peer_python(name)``, set up if missing). AOF: Redis with ``--appendonly yes
    --appendfsync everysec``. A Redis peer with no redis-server to be had returns a result
    whose ``skipped`` says so; a failed run raises PeerError."""
    peer = PEERS[name]
    command = worker_command(name)
    if peer.broker == "redis":
        exe, why = find_redis_server()
        if exe is None:
            print(f"[peers] {name}: {why}", file=sys.stderr, flush=True)
            return PeerResult(name, math.nan, math.nan, n, "", command, skipped=why)
    py = python if python is not None else peer_python(name)
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("PEER_", "PYTHON", "VIRTUAL_"))
    }
    base["PYTHONPATH"] = str(TASKS)
    base.update(peer.environ)
    timeout = 120.0 + n / 20.0
    details: dict[str, Any] = {"load_before": loadavg(), "workdir_fs": fs_type(workdir)}

    # e2e: workers running.
    details["quiet_wait_s"] = wait_for_quiet()
    broker = _Broker(peer, workdir, aof)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        env = {**base, **broker.environ}
        for k, argv in enumerate(_worker_argvs(peer, py, broker.url)):
            workers.append(_start(argv, TASKS, env, broker.dir / f"worker{k}.log"))
        try:
            e2e = _driver(py, peer, "e2e", n, env, timeout)
        except PeerError as e:
            logs = "".join(_tail(broker.dir / f"worker{k}.log") for k in range(len(workers)))
            raise PeerError(f"{name}: {e}\nworker log: {logs}") from e
        for k, w in enumerate(workers):
            if w.poll() is not None:
                raise PeerError(f"{name}: worker {k} exited ({w.returncode}) during the run")
    finally:
        for w in workers:
            _stop(w)
        broker.close()

    # submit-only: a fresh broker, no workers.
    details["quiet_wait_s"] += wait_for_quiet()
    broker = _Broker(peer, workdir, aof)
    try:
        sub = _driver(py, peer, "submit", n, {**base, **broker.environ}, timeout)
    except PeerError as e:
        raise PeerError(f"{name}: {e}") from e
    finally:
        broker.close()

    details.update(
        ready_s=e2e["ready_s"],
        submit_with_workers_per_s=n / e2e["submit_s"],
        load_after=loadavg(),
        python=e2e["python"],
    )
    if "client_poll_delay_s" in e2e:
        details["client_poll_delay_s"] = e2e["client_poll_delay_s"]
    return PeerResult(
        name=name,
        e2e_per_s=n / e2e["e2e_s"],
        submit_only_per_s=n / sub["submit_s"],
        n=n,
        broker_config=_broker_config(peer, e2e["broker_config"], aof),
        worker_command=command,
        versions=dict(e2e["versions"]),
        details=details,
    )


# -- the standalone command ---------------------------------------------------------------


def machine_line() -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    ram = _ram_gib()
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores ({usable} usable), "
        f"{f'{ram:.0f} GiB, ' if ram else ''}{platform.platform()}; "
        f"Python {sys.version.split()[0]} (this process; the peers' virtualenvs are made from "
        f"it), redis-server {redis_server_version()}, SQLite {sqlite3.sqlite_version} "
        f"(Python's sqlite3)"
    )


def _fmt(values: list[float]) -> str:
    ok = [v for v in values if not math.isnan(v)]
    if not ok:
        return "-"
    med = f"{statistics.median(ok):,.0f}"
    return med if len(ok) == 1 else f"{med} [{min(ok):,.0f}-{max(ok):,.0f}]"


def render(
    runs: dict[str, list[PeerResult]],
    failed: dict[str, str],
    command: str,
    aof: bool,
    *,
    date: str | None = None,
    revision: str | None = None,
    machine: str | None = None,
) -> str:
    """The Markdown report of RUNS; DATE, REVISION and MACHINE default to now and here."""
    n = next((r.n for rs in runs.values() for r in rs), 0)
    repeats = max((len(rs) for rs in runs.values()), default=0)
    lines = [
        "## Durable task queues, end to end (`benchmarks/durable_peers.py`)",
        "",
        f"Command: `{command}`, {date or datetime.date.today().isoformat()}, revision "
        f"{revision or _git_revision()}.",
        f"Machine: {machine or machine_line()}.",
        "",
        f"{n:,} `noop(i) -> i` a run, one producer, {WORKERS} worker processes; "
        f"{'median [min-max] of ' + str(repeats) + ' runs' if repeats > 1 else 'one run'}. "
        "e2e = n / (last result read back and checked - first submit); submit-only: n "
        "submits with no workers running, on a fresh broker. Each run starts its own "
        "broker in a new empty directory.",
        "",
        "| peer | framework, defaults named | workers | e2e tasks/s | submit-only/s |",
        "|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for name, rs in runs.items():
        peer = PEERS[name]
        label = peer.label + (", AOF everysec" if aof and peer.broker == "redis" else "")
        if rs and rs[0].skipped:
            lines.append(f"| {name} | {label} | {rs[0].worker_command} | {rs[0].skipped} | - |")
            continue
        if name in failed:
            lines.append(f"| {name} | {label} | {worker_command(name)} | failed (below) | - |")
            notes.append(f"- {name} failed: {failed[name].splitlines()[0]}")
            continue
        lines.append(
            f"| {name} | {label} | {rs[0].worker_command} | "
            f"{_fmt([r.e2e_per_s for r in rs])} | {_fmt([r.submit_only_per_s for r in rs])} |"
        )
    brokers = {r.broker_config for rs in runs.values() for r in rs if r.broker_config}
    fss = sorted({r.details["workdir_fs"] for rs in runs.values() for r in rs if r.details})
    loads = [r.details["load_before"] for rs in runs.values() for r in rs if r.details]
    versions: dict[str, dict[str, str]] = {}  # by virtualenv: arq's has an older redis-py
    for name, rs in runs.items():
        for r in rs:
            versions.setdefault(PEERS[name].env, {}).update(r.versions)
    lines += [
        "",
        (
            "Brokers: " + "; ".join(sorted(brokers)) + f"; their directories on {', '.join(fss)}."
            if brokers
            else "Brokers: none ran."
        ),
        "With no config file, redis-server snapshots (RDB) at most once a minute under "
        "load and never fsyncs a write: a result counted here survives a clean restart, "
        "not a crash or a power loss (`--aof` gives the AOF-everysec rows: at most about "
        "a second lost). In WAL mode SQLite fsyncs each commit at synchronous=FULL, not at NORMAL.",
        (
            f"1-minute load average before each run: {min(loads):.1f} to {max(loads):.1f} "
            f"(on {os.cpu_count()} cores; the machine is shared, and a run waits at most "
            "15 s for it to be quiet: a high one flags runs disturbed by other work)."
            if loads
            else ""
        ),
        "Versions: "
        + "; ".join(
            f".venv/{env}: " + ", ".join(f"{k} {v}" for k, v in sorted(vs.items()))
            for env, vs in sorted(versions.items())
            if vs
        )
        + ". The workers' commands run in benchmarks/_peer_tasks/ with those virtualenvs.",
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _jsonable(result: PeerResult) -> dict[str, Any]:
    """The run as a dict, a NaN figure (a skipped run's) as None."""
    out = dataclasses.asdict(result)
    for k, v in out.items():
        if isinstance(v, float) and math.isnan(v):
            out[k] = None
    return out


def render_json(doc: dict[str, Any]) -> str:
    """The report of a ``--json`` output, as it was rendered when it was measured."""
    runs: dict[str, list[PeerResult]] = {}
    for d in doc["runs"]:
        for k in ("e2e_per_s", "submit_only_per_s"):
            d[k] = math.nan if d[k] is None else d[k]
        runs.setdefault(d["name"], []).append(PeerResult(**d))
    for name in doc["failed"]:
        runs.setdefault(name, [])
    return render(
        runs,
        doc["failed"],
        doc["command"],
        doc.get("aof", False),
        date=doc.get("date", "unknown date"),
        revision=doc.get("revision", "unknown"),
        machine=doc["machine"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"n={QUICK_N:,}, 1 run (for CI)")
    parser.add_argument("--n", type=int, help=f"timed tasks a run ({DEFAULT_N:,})")
    parser.add_argument("--repeat", type=int, help=f"runs of each peer ({DEFAULT_REPEAT})")
    parser.add_argument(
        "--only", nargs="+", choices=list(PEERS), metavar="NAME", help="these peers only"
    )
    parser.add_argument("--aof", action="store_true", help="Redis with AOF, fsync everysec")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    parser.add_argument(
        "--json", action="store_true", help="print every run as JSON instead of the table"
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="no runs: the table of a --json output"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        text = render_json(json.loads(args.render.read_text()))
        print(text)
        if args.output is not None:
            args.output.write_text(text)
        return 0
    n = args.n if args.n is not None else QUICK_N if args.quick else DEFAULT_N
    repeat = args.repeat if args.repeat is not None else 1 if args.quick else DEFAULT_REPEAT
    if n < 1 or repeat < 1:
        parser.error("--n and --repeat must be at least 1")
    names = args.only or list(PEERS)
    # The command as the report shows it: less the options that change no figure.
    shown = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--json"]
    if args.output is not None:
        k = shown.index("--output") if "--output" in shown else -1
        shown = shown[:k] + shown[k + 2 :] if k >= 0 else [a for a in shown if "--output=" not in a]
    command = shlex.join(["python", "benchmarks/durable_peers.py", *shown])

    started = time.perf_counter()
    for env in sorted({PEERS[name].env for name in names}):
        ensure_peer_env(env)
    runs: dict[str, list[PeerResult]] = {name: [] for name in names}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="logosq-peers-") as tmp:
        for r in range(repeat):
            for name in names:
                if name in failed or (runs[name] and runs[name][0].skipped):
                    continue
                try:
                    res = run_peer(name, n, Path(tmp), aof=args.aof)
                except PeerError as e:
                    failed[name] = str(e)
                    print(f"[peers] {name} failed: {e}", file=sys.stderr, flush=True)
                    continue
                runs[name].append(res)
                if not res.skipped:
                    print(
                        f"[peers] {name} run {r + 1}/{repeat}: e2e {res.e2e_per_s:,.0f}/s, "
                        f"submit-only {res.submit_only_per_s:,.0f}/s",
                        file=sys.stderr,
                        flush=True,
                    )
    took = time.perf_counter() - started
    print(f"[peers] all runs took {took:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        print(
            json.dumps(
                {
                    "command": command,
                    "date": datetime.date.today().isoformat(),
                    "revision": _git_revision(),
                    "aof": args.aof,
                    "machine": machine_line(),
                    "runs": [_jsonable(r) for rs in runs.values() for r in rs],
                    "failed": failed,
                },
                indent=1,
            )
        )
    text = render(runs, failed, command, args.aof)
    if not args.json:
        print(text)
    if args.output is not None:
        args.output.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
