"""The service benchmark (issue #23): the HTTP ceiling of this machine for the ASGI frameworks
we could build ``logosq serve`` on, and ``logosq serve`` itself under load beside that ceiling.

Usage::

    python benchmarks/bench_service.py                      # both parts, 3 runs of 5 s each
    python benchmarks/bench_service.py --quick              # a few seconds a part, for CI
    python benchmarks/bench_service.py --part frameworks --output part1.md
    python benchmarks/bench_service.py --part serve --profile --wait-quiet 600

Part one, the framework choice: the bare hello-world endpoint (``GET /hello``) and a small-JSON
POST endpoint (``POST /echo``, a 66-byte body decoded into a typed object and answered with a
small JSON object) in Starlette (msgspec), FastAPI (pydantic model body) and Litestar (msgspec
Struct body), benchmarks/service_apps.py. Each under uvicorn with uvloop and httptools, 1
worker, access log off; loaded by Debian's ``wrk -t2 -c100 --latency`` (a Lua script for the
POST body): requests/s and p50/p99 latency, median of 3 runs after a 1 s warm-up, the
frameworks' runs interleaved.

Part two: ``logosq serve`` as a real process (one user token, a mock backend whose jobs take
no time, its journal in a temporary directory at the default durability), 100 connections
submitting a QASM 2 Bell circuit at 1 shot, one task a request and 100 a request; beside it,
in the same run, the bare Starlette endpoints under the same uvicorn settings and load
generator. Then each at half its maximum rate from benchmarks/loadgen.py's fixed-rate
generator (wrk2's method: latency counted from each request's due time), for p99. The issue's
targets are checked; ``--profile`` samples the server with py-spy at its maximum and says
where the time goes.

Without wrk the Python generator also does the closed-loop runs. ``--quick`` makes every run
1 s, one each, 10 connections (so a batch of 100 is answered within a run), and skips peers
that are not installed. Every process started here (servers, wrk, py-spy) runs in its own
session and is stopped by its process group. The machine's 2 cores are shared by the server
and the load generator: the CPU each used is measured (/proc for the server, getrusage for
wrk) and printed beside the figures, with what the rest of the machine used meanwhile (other
work disturbs the figures; requests per server CPU-second is the figure it disturbs least).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
from machine import machine_info  # noqa: E402
from service_apps import ECHO_BODY, FACTORIES  # noqa: E402

CONNECTIONS = 100
# --quick lowers these: requests at least in a fixed-rate run (for its p99), and the longest
# wait for a server to run what it accepted before the next run
LIMITS = {"min_paced": 200, "paced_max_s": 30.0, "drain_s": 120.0, "paced_warmup_s": 3.0}
WRK_THREADS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(
    argv_for: Callable[[int], list[str]],
    log: Path,
    health: str,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server on a free port and wait until HEALTH answers 200. Another process on
    this shared machine may take the port between our pick and the server's bind: then again
    on another port."""
    for attempt in range(5):
        port = _free_port()
        start = log.stat().st_size if log.exists() else 0
        proc = _start(argv_for(port), log, env)
        try:
            _wait_http(port, health, proc, log)
            return proc, port
        except RuntimeError:
            _stop(proc)
            with log.open("rb") as f:
                f.seek(start)
                lost = b"address already in use" in f.read()
            if not lost or attempt == 4:
                raise
    raise AssertionError("unreachable")


def _start(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            argv,
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop PROC's process group: SIGTERM, SIGKILL after GRACE seconds, then SIGKILL whatever
    of the group outlived its leader."""
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


def _wait_http(
    port: int, path: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(request)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {path} in {timeout:g} s: {_tail(log)}")


def _tail(path: Path, chars: int = 2_000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process PID so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK  # user nice system irq softirq steal


QUIET = {"limit": 0.0, "waited": 0.0}  # --wait-quiet: seconds to wait at most, and waited


def wait_quiet(threshold: float = 0.25) -> None:
    """Before a block of runs: wait (up to --wait-quiet seconds in all) until the machine
    used less than THRESHOLD of a core over a second (other work on this shared machine)."""
    while QUIET["waited"] < QUIET["limit"]:
        b0, t0 = _busy_seconds(), time.perf_counter()
        time.sleep(1.0)
        took = time.perf_counter() - t0
        if (_busy_seconds() - b0) / took < threshold:
            return
        QUIET["waited"] += took


def _uvicorn_argv(app: str, port: int, factory: bool = True) -> list[str]:
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--loop", "uvloop", "--http", "httptools", "--workers", "1"]
    argv += ["--no-access-log", "--log-level", "warning"]
    return [*argv, "--factory"] if factory else argv


# ---------------------------------------------------------------------------------------------
# wrk


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # CPU seconds per wall second
    wrk_cpu: float
    other_cpu: float  # what the rest of the machine used over the run (this script included)
    load: float  # 1-minute load average before the run (ours of a previous run included)
    non2xx: int = 0
    errors: int = 0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _lua(tmp: Path, method: str, body: bytes, token: str | None) -> Path:
    script = tmp / f"wrk-{method.lower()}-{len(body)}-{time.monotonic_ns()}.lua"
    lines = [f'wrk.method = "{method}"']
    if body:
        lines.append("wrk.body = [==[" + body.decode() + "]==]")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    if token is not None:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    script.write_text("\n".join(lines) + "\n")
    return script


def wrk(
    url: str,
    duration: float,
    server_pid: int,
    tmp: Path,
    method: str = "GET",
    body: bytes = b"",
    token: str | None = None,
) -> Run:
    """One wrk run against URL, with the CPU the server and wrk used over it."""
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s"]
    # --timeout: a slow answer (a batch queued behind 99 others) is measured, not dropped
    argv += ["--timeout", "30s", "--latency", "-s", str(_lua(tmp, method, body, token)), url]
    load = os.getloadavg()[0]
    before = os.times()
    b0, s0, t0 = _busy_seconds(), _cpu_seconds(server_pid), time.perf_counter()
    proc = subprocess.run(
        argv, capture_output=True, text=True, start_new_session=True, timeout=duration + 60
    )
    wall = time.perf_counter() - t0
    s1, b1 = _cpu_seconds(server_pid), _busy_seconds()
    after = os.times()
    wrk_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out}{proc.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Run(
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        server_cpu=(s1 - s0) / wall,
        wrk_cpu=wrk_cpu / wall,
        other_cpu=max(0.0, (b1 - b0) - (s1 - s0) - wrk_cpu) / wall,
        load=load,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        errors=sum(int(g) for g in errs.groups()) if errs else 0,
    )


def median_run(runs: list[Run]) -> Run:
    """The run with the median requests/s (its latencies with it), so a row's figures come
    from one run; the load is the highest seen before any of them."""
    ordered = sorted(runs, key=lambda r: r.rps)
    mid = ordered[(len(ordered) - 1) // 2]
    return Run(
        rps=mid.rps,
        p50_ms=mid.p50_ms,
        p99_ms=mid.p99_ms,
        server_cpu=mid.server_cpu,
        wrk_cpu=mid.wrk_cpu,
        other_cpu=mid.other_cpu,
        load=max(r.load for r in runs),
        non2xx=sum(r.non2xx for r in runs),
        errors=sum(r.errors for r in runs),
    )


def _range(runs: list[Run]) -> str:
    lo, hi = min(r.rps for r in runs), max(r.rps for r in runs)
    return f"{statistics.median(r.rps for r in runs):,.0f} [{lo:,.0f}-{hi:,.0f}]"


# ---------------------------------------------------------------------------------------------
# part one: the frameworks


@dataclass
class FrameworkResult:
    label: str
    version: str
    hello: list[Run]
    echo: list[Run]


def frameworks(
    duration: float, repeat: int, tmp: Path, warm: bool = True
) -> tuple[list[FrameworkResult], list[str]]:
    """Every installed framework's server started at once (idle ones cost nothing), then the
    runs interleaved, one of each framework in turn, so that other work on the machine
    disturbs them alike."""
    skipped: list[str] = []
    servers: list[tuple[str, str, subprocess.Popen[bytes], str, Path]] = []
    try:
        for label, (factory, dist) in FACTORIES.items():
            if importlib.util.find_spec(dist) is None:
                skipped.append(f"{label}: {dist} is not installed")
                continue
            log = tmp / f"{factory}.log"
            app = f"service_apps:{factory}"
            proc, port = _launch(lambda p, app=app: _uvicorn_argv(app, p), log, "/hello")
            servers.append((label, dist, proc, f"http://127.0.0.1:{port}", log))
        runs: dict[str, tuple[list[Run], list[Run]]] = {s[0]: ([], []) for s in servers}
        if warm:
            for _, _, proc, base, _ in servers:
                wrk(base + "/hello", 1, proc.pid, tmp)
                wrk(base + "/echo", 1, proc.pid, tmp, "POST", ECHO_BODY)
        for _ in range(repeat):
            wait_quiet()
            for label, _, proc, base, _ in servers:
                runs[label][0].append(wrk(base + "/hello", duration, proc.pid, tmp))
                runs[label][1].append(
                    wrk(base + "/echo", duration, proc.pid, tmp, "POST", ECHO_BODY)
                )
    finally:
        for s in servers:
            _stop(s[2])
    results: list[FrameworkResult] = []
    for label, dist, _, _, log in servers:
        hello, echo = runs[label]
        bad = sum(r.non2xx + r.errors for r in hello + echo)
        if bad:
            raise RuntimeError(f"{label}: {bad} failed requests: {_tail(log)}")
        results.append(FrameworkResult(label, importlib.metadata.version(dist), hello, echo))
        h, e = median_run(hello), median_run(echo)
        print(
            f"{label}: GET {h.rps:,.0f}/s p99 {h.p99_ms:.1f} ms; "
            f"POST {e.rps:,.0f}/s p99 {e.p99_ms:.1f} ms",
            flush=True,
        )
    return results, skipped


def frameworks_report(
    results: list[FrameworkResult], skipped: list[str], duration: float, repeat: int
) -> list[str]:
    out = [
        "### Part one: the framework, chosen by measurement",
        "",
        f"`wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{max(1, round(duration))}s --latency` against "
        "uvicorn (uvloop, httptools, 1 worker, access log off) on loopback; median [min-max] "
        f"of {repeat} run(s) after a 1 s warm-up (none with --quick); p50 and p99 from the "
        "median run; the frameworks' runs interleaved (one of each in turn). **wrk and the "
        "server share the machine's 2 cores**: the CPU columns say how much of a core each "
        "used (the server is one Python process, so 1.00 is all it can use), and what the rest "
        "of the machine used meanwhile (other work on this shared machine, and this script). "
        "Requests per server CPU-second (the median run's requests/s over its server CPU) is "
        "what a request costs the server, and varies less than requests/s when other work "
        "takes CPU from the server.",
        "",
        "| framework | GET /hello req/s | p50 / p99 ms | POST /echo req/s | p50 / p99 ms "
        "| req per server CPU-s (GET / POST) | server CPU (GET / POST) | wrk CPU (GET / POST) "
        "| rest of the machine | load before |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        h, e = median_run(r.hello), median_run(r.echo)
        out.append(
            f"| {r.label} {r.version} | {_range(r.hello)} | {h.p50_ms:.1f} / {h.p99_ms:.1f} "
            f"| {_range(r.echo)} | {e.p50_ms:.1f} / {e.p99_ms:.1f} "
            f"| {_per_cpu(h):,.0f} / {_per_cpu(e):,.0f} "
            f"| {h.server_cpu:.2f} / {e.server_cpu:.2f} | {h.wrk_cpu:.2f} / {e.wrk_cpu:.2f} "
            f"| {h.other_cpu:.2f} / {e.other_cpu:.2f} | {max(h.load, e.load):.2f} |"
        )
    if skipped:
        out += ["", "Not run: " + "; ".join(skipped) + "."]
    out += ["", _why(results)]
    return out


def _per_cpu(r: Run) -> float:
    return r.rps / r.server_cpu if r.server_cpu > 0 else math.nan


def _why(results: list[FrameworkResult]) -> str:
    """The choice, derived from the figures of this run."""
    by = {r.label.split()[0]: r for r in results}
    if "Starlette" not in by or len(by) < 2:
        return "Too few frameworks ran here to compare them."
    med = {k: (median_run(r.hello), median_run(r.echo)) for k, r in by.items()}
    s_get, s_post = med["Starlette"]
    parts: list[str] = []
    for k in ("FastAPI", "Litestar"):
        if k not in med:
            continue
        g, p = med[k]
        parts.append(
            f"{k} serves {g.rps / s_get.rps:.2f}x Starlette's GET rate and "
            f"{p.rps / s_post.rps:.2f}x its POST rate ({_per_cpu(p) / _per_cpu(s_post):.2f}x "
            f"its POSTs per server CPU-second; POST p99 {p.p99_ms:.1f} ms against "
            f"{s_post.p99_ms:.1f} ms)"
        )
    best = max(med, key=lambda k: _per_cpu(med[k][1]))
    if best != "Starlette":
        return (
            f"**The figures favour {best}** in this run (the most POSTs per server "
            f"CPU-second): " + "; ".join(parts) + ". Rerun on a quiet machine before choosing."
        )
    return (
        "**Why Starlette.** It serves the most small-JSON POSTs per server CPU-second in this "
        "run; " + "; ".join(parts) + ". What a request costs the service is its own work "
        "(decode, validate, journal, schedule) plus what the framework adds: Starlette adds "
        "the least that still gives routing, requests and responses, and msgspec for the "
        "bodies gives what the others' layers would add (typed decode, unknown fields refused, "
        "OpenAPI schemas from the same Structs) at Starlette's rate. A framework within ~10% "
        "of Starlette would be a matter of taste; one at half its POST rate would set the "
        "service's ceiling at half."
    )


# ---------------------------------------------------------------------------------------------
# part two: logosq serve under load, beside the bare endpoint


BELL_QASM2 = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
    "h q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"
)
BATCH = 100
TARGET_SINGLE_RATIO = 0.5
TARGET_BATCH_RATE = 20_000
TARGET_P99_MS = 50.0


def _task_body(shots: int = 1) -> dict[str, object]:
    return {"kind": "circuit", "circuit": {"format": "qasm2", "source": BELL_QASM2}, "shots": shots}


def single_body() -> bytes:
    return json.dumps(_task_body(), separators=(",", ":")).encode()


def batch_body(n: int = BATCH) -> bytes:
    return json.dumps({"tasks": [_task_body()] * n}, separators=(",", ":")).encode()


def _write_config(tmp: Path, port: int, token: str) -> Path:
    """A config with one user (TOKEN, no quotas) and a mock backend whose jobs take no time;
    the journal in TMP, durability at the scheduler's default."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    path = tmp / "server.toml"
    path.write_text(
        "[server]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'journal = "{tmp / "journal.db"}"\n'
        "max_batch = 1000\n"
        "\n[[backends]]\n"
        'kind = "mock"\n'
        'name = "sim"\n'
        "latency = 0.0\n"
        "max_concurrent_jobs = 4\n"
        "max_circuits_per_job = 100\n"
        "\n[users.bench]\n"
        f'token_sha256 = "{digest}"\n'
        'priority_ceiling = "high"\n'
    )
    return path


def _serve_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "logosq_os_scheduler", "serve", "--config", str(config)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def _get_json(port: int, path: str, token: str) -> object:
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _post_once(port: int, path: str, body: bytes, token: str) -> None:
    """One request before any load: the first circuit imports Qiskit's QASM parser, which
    takes about a second, and would otherwise stall a short run."""
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        if r.status != 201:
            raise RuntimeError(f"POST {path} gave {r.status}")


def _backlog(port: int, token: str) -> int:
    stats = _get_json(port, "/v1/stats", token)
    assert isinstance(stats, dict)
    return int(sum(stats["queued_by_priority"].values()) + stats["running"])


def _drain(port: int, token: str, timeout: float) -> tuple[int, float]:
    """Wait until the server has no task queued or running: (backlog at the start, seconds)."""
    t0 = time.perf_counter()
    first = left = _backlog(port, token)
    while left and time.perf_counter() - t0 < timeout:
        time.sleep(0.05)
        left = _backlog(port, token)
    return first, time.perf_counter() - t0


def closed(
    url: str,
    duration: float,
    server_pid: int,
    tmp: Path,
    method: str = "GET",
    body: bytes = b"",
    token: str | None = None,
) -> Run:
    """As fast as the server answers: wrk when installed, else the Python generator."""
    if shutil.which("wrk") is not None:
        return wrk(url, duration, server_pid, tmp, method, body, token)
    host, port, path = _split(url)
    request = loadgen.build_request(method, path, host, port, body, token)
    load = os.getloadavg()[0]
    b0, s0 = _busy_seconds(), _cpu_seconds(server_pid)
    r = loadgen.run(lambda: loadgen.closed_loop(host, port, request, CONNECTIONS, duration))
    s1, b1 = _cpu_seconds(server_pid), _busy_seconds()
    return Run(
        rps=r.rate,
        p50_ms=loadgen.percentile(r.latencies, 50) * 1e3,
        p99_ms=loadgen.percentile(r.latencies, 99) * 1e3,
        server_cpu=(s1 - s0) / r.wall,
        wrk_cpu=r.cpu_share,
        other_cpu=max(0.0, (b1 - b0) - (s1 - s0) - r.cpu) / r.wall,
        load=load,
        non2xx=sum(n for st, n in r.statuses.items() if not 200 <= st < 400),
        errors=r.errors,
    )


def _split(url: str) -> tuple[str, int, str]:
    m = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url)
    if m is None:
        raise ValueError(url)
    return m.group(1), int(m.group(2)), m.group(3)


@dataclass
class Paced:
    rate: float  # asked for, requests/s
    achieved: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    gen_cpu: float
    server_cpu: float
    other_cpu: float
    bad: int


def paced(
    url: str,
    rate: float,
    duration: float,
    server_pid: int,
    method: str = "GET",
    body: bytes = b"",
    token: str | None = None,
) -> Paced:
    """RATE requests/s over CONNECTIONS connections (benchmarks/loadgen.py's fixed rate)."""
    host, port, path = _split(url)
    request = loadgen.build_request(method, path, host, port, body, token)
    b0, s0 = _busy_seconds(), _cpu_seconds(server_pid)
    r = loadgen.run(lambda: loadgen.fixed_rate(host, port, request, CONNECTIONS, rate, duration))
    s1, b1 = _cpu_seconds(server_pid), _busy_seconds()
    lat = r.latencies
    return Paced(
        rate=rate,
        achieved=r.rate,
        p50_ms=loadgen.percentile(lat, 50) * 1e3,
        p99_ms=loadgen.percentile(lat, 99) * 1e3,
        p999_ms=loadgen.percentile(lat, 99.9) * 1e3,
        gen_cpu=r.cpu_share,
        server_cpu=(s1 - s0) / r.wall,
        other_cpu=max(0.0, (b1 - b0) - (s1 - s0) - r.cpu) / r.wall,
        bad=r.errors + sum(n for st, n in r.statuses.items() if not 200 <= st < 400),
    )


@dataclass
class ServeResult:
    hello: list[Run]
    echo: list[Run]
    single: list[Run]
    batch: list[Run]
    backlog: dict[str, list[tuple[int, float]]]  # after each run: (tasks left, drain seconds)
    paced: dict[str, Paced]
    profile: dict[str, str]


def serve(duration: float, repeat: int, tmp: Path, warm: bool, profile: bool) -> ServeResult:
    # The ceiling: the chosen framework's bare endpoints under the same uvicorn settings.
    wait_quiet()
    log = tmp / "bare.log"
    proc, port = _launch(lambda p: _uvicorn_argv("service_apps:starlette_app", p), log, "/hello")
    try:
        base = f"http://127.0.0.1:{port}"
        if warm:
            closed(base + "/hello", 1, proc.pid, tmp)
        hello = [closed(base + "/hello", duration, proc.pid, tmp) for _ in range(repeat)]
        echo = [
            closed(base + "/echo", duration, proc.pid, tmp, "POST", ECHO_BODY)
            for _ in range(repeat)
        ]
        bare_pid, bare_base = proc.pid, base
        half_single: float | None = None
        result = ServeResult(hello, echo, [], [], {"single": [], "batch": []}, {}, {})
        # Ours, a fresh server (and journal) for each kind of request.
        for kind, path, body in (
            ("single", "/v1/tasks", single_body()),
            ("batch", "/v1/tasks/batch", batch_body()),
        ):
            wait_quiet()
            sdir = tmp / kind
            sdir.mkdir()
            token = "lq_" + secrets.token_urlsafe(32)
            slog = sdir / "serve.log"
            server, sport = _launch(
                lambda p, d=sdir, t=token: _serve_argv(_write_config(d, p, t)),
                slog,
                "/healthz",
                _env(),
            )
            try:
                _post_once(sport, path, body, token)
                url = f"http://127.0.0.1:{sport}{path}"
                if warm:
                    closed(url, 1, server.pid, tmp, "POST", body, token)
                    _drain(sport, token, LIMITS["drain_s"])
                runs: list[Run] = []
                for _ in range(repeat):
                    runs.append(closed(url, duration, server.pid, tmp, "POST", body, token))
                    result.backlog[kind].append(_drain(sport, token, LIMITS["drain_s"]))
                bad = sum(r.non2xx + r.errors for r in runs)
                if bad:
                    raise RuntimeError(f"{kind}: {bad} failed requests: {_tail(slog)}")
                getattr(result, kind).extend(runs)
                rate = max(1.0, median_run(runs).rps / 2)
                # Steady state at that rate: the first seconds after a run at the maximum
                # carry its aftermath (benchmarks/analysis.md), so they are run, not counted.
                paced(url, rate, LIMITS["paced_warmup_s"], server.pid, "POST", body, token)
                result.paced[kind] = paced(url, rate, duration, server.pid, "POST", body, token)
                _drain(sport, token, LIMITS["drain_s"])
                if kind == "single":
                    half_single = rate
                if profile:
                    result.profile[kind] = _profile(url, duration, server.pid, tmp, body, token)
                    _drain(sport, token, LIMITS["drain_s"])
            finally:
                _stop(server)
        if half_single is not None:  # the generator's own floor at the single-submit rate
            hello_url = bare_base + "/hello"
            paced(hello_url, half_single, LIMITS["paced_warmup_s"], bare_pid)
            result.paced["hello"] = paced(hello_url, half_single, duration, bare_pid)
    finally:
        _stop(proc)
    return result


# Where a server's time goes: py-spy samples (native frames included) during a closed-loop
# run. Each busy sample of the event loop's thread is put in one category: walking its stack
# from the leaf up, the first frame that matches a pattern decides (so the shares add up to
# 100%, and a malloc inside Qiskit counts for Qiskit). Frames read "function (file)".
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("garbage collector", r"^gc_collect"),
    (
        "socket system calls (read, write, epoll)",
        r"^(write|writev|read|recv\w*|send\w*|epoll\w*) \(",
    ),
    ("QASM parse (qiskit.qasm2/3)", r"qiskit/qasm|qasm2|qasm3"),
    ("QPY (circuits encoded for the journal)", r"qpy"),
    ("other Qiskit (circuit objects)", r"qiskit"),
    ("journal (rows encoded, queued for the writer)", r"logosq_os_scheduler/journal/"),
    ("mock backend (runs the circuits)", r"logosq_os_scheduler/backends/"),
    ("auth (token hash, accounts, quotas)", r"logosq_os_scheduler/service/_accounts\.py|hashlib"),
    ("request decode and checks (_wire)", r"logosq_os_scheduler/service/_wire\.py"),
    ("response and JSON encode", r"encode|dumps"),
    ("JSON decode", r"decode|loads"),
    ("service (endpoints, views, events)", r"logosq_os_scheduler/service/"),
    ("scheduler (submit, queues, dispatch, handles)", r"logosq_os_scheduler/"),
    ("Starlette (routing, request, response)", r"starlette/"),
    ("uvicorn and httptools (HTTP parsing, transport)", r"uvicorn/|httptools"),
    ("asyncio and uvloop (tasks, callbacks)", r"uvloop|asyncio|task_step|Handle__run"),
)


def _profile(url: str, duration: float, server_pid: int, tmp: Path, body: bytes, token: str) -> str:
    """Sample the server with py-spy while wrk loads it; a Markdown table of where its time
    went (share of the samples in which the server was busy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return "py-spy is not installed: no profile."
    raw = tmp / f"profile-{server_pid}-{time.monotonic_ns()}.txt"
    argv = [spy, "record", "--pid", str(server_pid), "--duration", str(max(1, round(duration)))]
    argv += ["--rate", "250", "--format", "raw", "--output", str(raw), "--native"]
    sampler = _start(argv, tmp / "py-spy.log")
    time.sleep(0.5)
    try:
        closed(url, duration, server_pid, tmp, "POST", body, token)
    finally:
        try:
            sampler.wait(duration + 30)
        except subprocess.TimeoutExpired:
            _stop(sampler)
    if not raw.exists():
        return f"py-spy gave no profile: {_tail(tmp / 'py-spy.log', 500)}"
    return summarize_profile(raw.read_text())


_WAITING = re.compile(
    r"^(pthread_cond_(timed)?wait|PyThread_acquire_lock_timed|sem_(timed|clock)?wait|"
    r"epoll_wait|futex\w*|poll|select|nanosleep|clock_nanosleep) \("
)


def summarize_profile(text: str, top: int = 12) -> str:
    """Where the event loop's thread spent its busy samples (the server's bottleneck: one
    thread serves HTTP, runs the scheduler and encodes the journal's rows), and how busy the
    journal's writer thread was beside it."""
    loop_total = writer_busy = writer_total = waits = 0
    per_cat: dict[str, int] = {}
    ours: dict[str, int] = {}  # our functions, inclusive
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        # one frame per function: "name (file:line)" -> "name (file)"
        frames = [
            re.sub(r":\d+\)$", ")", f.strip())
            for f in stack.split(";")
            if f.strip() and not f.startswith("process ")
        ]
        # A thread blocked in a lock, a condition (the GIL included) or a poll is not busy;
        # with native frames py-spy samples some of those as active.
        waiting = any(_WAITING.match(f) for f in frames[-3:])
        if any(f.startswith("Journal._writer ") for f in frames):
            writer_total += n
            writer_busy += 0 if waiting else n
            continue
        if waiting:
            waits += n
            continue
        loop_total += n
        label = "other (interpreter, libc)"
        for f in reversed(frames):
            hit = next((lb for lb, pattern in CATEGORIES if re.search(pattern, f)), None)
            if hit is not None:
                label = hit
                break
        per_cat[label] = per_cat.get(label, 0) + n
        for f in {f for f in frames if "logosq_os_scheduler/" in f}:
            ours[f] = ours.get(f, 0) + n
    if not loop_total:
        return "py-spy recorded no busy samples of the event loop's thread."

    def short(frame: str) -> str:
        return re.sub(r"\(/[^ ]*?(site-packages|src)/", "(", frame)

    lines = [
        f"py-spy, 250 samples a second with native frames: {loop_total:,} busy samples of the "
        f"event loop's thread (which serves HTTP, runs the scheduler and encodes the journal's "
        f"rows), {waits:,} more of it waiting (the GIL, a lock); the journal's writer thread "
        f"was busy in {writer_busy:,} samples of its {writer_total:,}. Each busy sample is put "
        "in the category of the deepest frame that has one.",
        "",
        "| where the event loop's thread was busy | share of its busy samples |",
        "|---|---|",
    ]
    lines += [
        f"| {label} | {n / loop_total:.1%} |"
        for label, n in sorted(per_cat.items(), key=lambda kv: -kv[1])
    ]
    lines += ["", "| our functions, with their callees | share |", "|---|---|"]
    # (the frames every sample has, from `logosq serve` down to uvicorn's loop, say nothing)
    shown = [(f, n) for f, n in ours.items() if n < 0.95 * loop_total]
    for f, n in sorted(shown, key=lambda kv: -kv[1])[:top]:
        lines.append(f"| `{short(f)}` | {n / loop_total:.1%} |")
    return "\n".join(lines)


def serve_report(r: ServeResult, duration: float, repeat: int) -> list[str]:
    gen = (
        f"wrk -t{WRK_THREADS} -c{CONNECTIONS} --timeout 30s"
        if shutil.which("wrk")
        else "the Python generator (wrk not installed)"
    )
    out = [
        "### Part two: `logosq serve` under load, beside the bare endpoint",
        "",
        f"`logosq serve` as a real process on loopback: one user token, a mock backend whose "
        "jobs take no time (`latency = 0`, 4 jobs at once, 100 circuits a job), its journal in "
        "a new temporary directory at the default durability, a fresh server for each kind of "
        f"request. {CONNECTIONS} connections submitting a QASM 2 Bell circuit at 1 shot, one "
        f"task a request (`POST /v1/tasks`) or {BATCH} a request (`POST /v1/tasks/batch`); in "
        "the same run, the bare Starlette endpoints of part one under the same uvicorn "
        "settings (uvloop, httptools, 1 worker) and the same load generator "
        f"({gen}): the HTTP ceiling. "
        f"Median [min-max] of {repeat} run(s) of {max(1, round(duration))} s; p50/p99 from the "
        "median run. After each run of ours the benchmark waits until the server has no task "
        "queued or running (the last column: what was left, and how long it took to run), so "
        "each run starts on an empty queue. **The server and the load generator share the "
        "2 cores.**",
        "",
        "| endpoint | requests/s | tasks/s | p50 / p99 ms | requests (tasks) per server CPU-s "
        "| server CPU | load generator CPU | rest of the machine "
        "| left after the run, drained in |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = (
        ("bare Starlette `GET /hello` (the ceiling)", r.hello, 0, None),
        ("bare Starlette `POST /echo` (small JSON)", r.echo, 0, None),
        ("logosq serve `POST /v1/tasks` (1 task)", r.single, 1, "single"),
        (f"logosq serve `POST /v1/tasks/batch` ({BATCH} tasks)", r.batch, BATCH, "batch"),
    )
    for label, runs, per, key in rows:
        if not runs:
            continue
        m = median_run(runs)
        tasks = "-" if not per else _fmt_rate([x.rps * per for x in runs])
        left = "-"
        if key is not None and r.backlog.get(key):
            n, took = max(r.backlog[key], key=lambda b: b[0])
            left = f"up to {n:,} tasks, {took:.1f} s"
        cpu = f"{_per_cpu(m):,.0f}" + (f" ({_per_cpu(m) * per:,.0f})" if per > 1 else "")
        out.append(
            f"| {label} | {_range(runs)} | {tasks} | {m.p50_ms:.1f} / {m.p99_ms:.1f} | {cpu} "
            f"| {m.server_cpu:.2f} | {m.wrk_cpu:.2f} | {m.other_cpu:.2f} | {left} |"
        )
    out += [
        "",
        "At a fixed rate, half the maximum each measured above: benchmarks/loadgen.py, "
        f"{CONNECTIONS} connections, each request due at its own time and its latency counted "
        "from that time (wrk2's way, so a stall is charged to every request that waited "
        f"behind it), after {LIMITS['paced_warmup_s']:g} s at the same rate that are not "
        "counted (the steady state: the first seconds after a run at the maximum carry its "
        "aftermath). The bare endpoint at the single-submit rate is this generator's own floor.",
        "",
        "| endpoint | rate asked /s | achieved /s | p50 / p99 / p99.9 ms | server CPU "
        "| generator CPU | rest of the machine | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "single": "logosq serve `POST /v1/tasks`, half its max",
        "batch": f"logosq serve `POST /v1/tasks/batch` ({BATCH} tasks), half its max",
        "hello": "bare Starlette `GET /hello`, at the rate of the single-task row",
    }
    for key, label in labels.items():
        p = r.paced.get(key)
        if p is None:
            continue
        out.append(
            f"| {label} | {p.rate:,.0f} | {p.achieved:,.0f} | {p.p50_ms:.1f} / {p.p99_ms:.1f} / "
            f"{p.p999_ms:.1f} | {p.server_cpu:.2f} | {p.gen_cpu:.2f} | {p.other_cpu:.2f} "
            f"| {p.bad} |"
        )
    out += ["", "Targets (issue #23):", "", "| target | verdict | figures |", "|---|---|---|"]
    if CONNECTIONS != 100:
        out[-3] = f"Targets (issue #23; not judged by a --quick run at {CONNECTIONS} connections):"
    hello = statistics.median(x.rps for x in r.hello)
    echo = statistics.median(x.rps for x in r.echo)
    if r.single:
        single = statistics.median(x.rps for x in r.single)
        ratio = single / hello
        out.append(
            f"| single-task submits >= {TARGET_SINGLE_RATIO:g}x the bare endpoint's requests/s "
            f"| {_verdict(ratio >= TARGET_SINGLE_RATIO)} | {single:,.0f} / {hello:,.0f} = "
            f"**{ratio:.2f}x** (against the bare small-JSON POST: {single / echo:.2f}x) |"
        )
    if r.batch:
        batch = statistics.median(x.rps * BATCH for x in r.batch)
        out.append(
            f"| batched >= {TARGET_BATCH_RATE:,} tasks/s | {_verdict(batch >= TARGET_BATCH_RATE)} "
            f"| **{batch:,.0f} tasks/s** = {batch / TARGET_BATCH_RATE:.2f}x the target |"
        )
    for key, what in (("single", "single-task"), ("batch", "batched")):
        p = r.paced.get(key)
        if p is None:
            continue
        ok = p.p99_ms <= TARGET_P99_MS and p.bad == 0 and p.achieved >= 0.95 * p.rate
        out.append(
            f"| p99 <= {TARGET_P99_MS:g} ms at half the maximum rate ({what}) | {_verdict(ok)} "
            f"| **p99 {p.p99_ms:.1f} ms** at {p.achieved:,.0f} requests/s "
            f"({p.achieved * (BATCH if key == 'batch' else 1):,.0f} tasks/s) |"
        )
    for key, text in r.profile.items():
        out += [
            "",
            f"Where the server's time goes, {labels[key].split(',')[0]} at its max (py-spy):",
            "",
            text,
        ]
    return out


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _fmt_rate(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds in all, for CI")
    parser.add_argument("--part", choices=["frameworks", "serve", "all"], default="all")
    parser.add_argument("--duration", type=float, default=None, help="seconds a run (5; quick 1)")
    parser.add_argument("--repeat", type=int, default=None, help="runs each (3; quick 1)")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each block of runs, wait until the machine is idle (up to S s in all)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also sample logosq serve with py-spy at its max"
    )
    args = parser.parse_args()
    duration = args.duration or (1.0 if args.quick else 5.0)
    QUIET["limit"] = args.wait_quiet
    if args.quick:
        LIMITS.update(min_paced=100, paced_max_s=3.0, drain_s=15.0, paced_warmup_s=0.5)
        global CONNECTIONS
        CONNECTIONS = 10  # so that a batch of 100 is answered within a 1 s run
    repeat = args.repeat or (1 if args.quick else 3)
    info = machine_info(False, [])
    shown = [a for a in sys.argv[1:] if a != "--output" and a != str(args.output)]
    command = " ".join(["python benchmarks/bench_service.py", *shown])
    versions = ", ".join(
        f"{d} {importlib.metadata.version(d)}"
        for d in ("uvicorn", "uvloop", "httptools", "msgspec")
        if importlib.util.find_spec(d) is not None
    )
    out = [
        "## The service (`benchmarks/bench_service.py`)",
        "",
        f"Command: `{command}`. Machine: {info['cpu']}, {info['usable_cores']} usable cores "
        f"(shared by the servers and the load generator), {info['ram_gib']:.0f} GiB, "
        f"{info['python']}, revision {info['revision']}; {versions}; load generator "
        f"{_wrk_version()}. Load average (1 min) at the start: {info['load_start']:.2f}.",
        "",
    ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.part in ("frameworks", "all"):
            if shutil.which("wrk") is None:
                out += ["wrk is not installed (Debian: `apt-get install wrk`): part one not run."]
            else:
                results, skipped = frameworks(duration, repeat, tmp, warm=not args.quick)
                out += frameworks_report(results, skipped, duration, repeat)
            out.append("")
        if args.part in ("serve", "all"):
            missing = [m for m in ("starlette", "uvicorn", "msgspec") if not _installed(m)]
            if missing:
                out.append(f"Part two not run: {', '.join(missing)} not installed.")
            else:
                got = serve(duration, repeat, tmp, warm=not args.quick, profile=args.profile)
                out += serve_report(got, duration, repeat)
    out += ["", f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f}."]
    if args.wait_quiet:
        out[-1] += (
            f" Waited {QUIET['waited']:.0f} s in all (of {args.wait_quiet:g} allowed) for the "
            "machine to go idle before blocks of runs."
        )
    text = "\n".join(out) + "\n"
    print(text)
    if args.output is not None:
        args.output.write_text(text)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "wrk (not installed)"
    proc = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    m = re.search(r"wrk (\S+)", proc.stdout + proc.stderr)
    return f"wrk {m.group(1)}" if m else "wrk"


if __name__ == "__main__":
    main()
