"""The service benchmark (issue #23): the HTTP ceiling of this machine for the ASGI frameworks
we could build ``logosq serve`` on, and ``logosq serve`` itself under load beside that ceiling.

Usage::

    python benchmarks/bench_service.py                      # both parts, 3 runs of 5 s each
    python benchmarks/bench_service.py --quick              # a few seconds, for CI
    python benchmarks/bench_service.py --part frameworks --output part1.md

Part one, the framework choice: the bare hello-world endpoint (``GET /hello``) and a small-JSON
POST endpoint (``POST /echo``, a 66-byte body decoded into a typed object and answered with a
small JSON object) in Starlette (msgspec), FastAPI (pydantic model body) and Litestar (msgspec
Struct body), benchmarks/service_apps.py. Each under uvicorn with uvloop and httptools, 1
worker, access log off; loaded by ``wrk -t2 -c100 --latency`` (Debian's wrk 4.1, a Lua script
for the POST body): requests/s and p50/p99 latency, median of 3 runs after a 1 s warm-up.

Every process started here (servers, wrk) runs in its own session and is stopped by its
process group. The machine has 2 cores that the server and the load generator share: the CPU
each used is measured (/proc for the server, getrusage for wrk) and printed beside the figures,
as is the load average before each row (other work on the machine disturbs the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from machine import machine_info  # noqa: E402
from service_apps import ECHO_BODY, FACTORIES  # noqa: E402

CONNECTIONS = 100
WRK_THREADS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    argv += ["--latency", "-s", str(_lua(tmp, method, body, token)), url]
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
    results: list[FrameworkResult] = []
    skipped: list[str] = []
    for label, (factory, dist) in FACTORIES.items():
        if importlib.util.find_spec(dist) is None:
            skipped.append(f"{label}: {dist} is not installed")
            continue
        port = _free_port()
        log = tmp / f"{factory}.log"
        proc = _start(_uvicorn_argv(f"service_apps:{factory}", port), log)
        try:
            _wait_http(port, "/hello", proc, log)
            base = f"http://127.0.0.1:{port}"
            if warm:
                wrk(base + "/hello", 1, proc.pid, tmp)
                wrk(base + "/echo", 1, proc.pid, tmp, "POST", ECHO_BODY)
            hello = [wrk(base + "/hello", duration, proc.pid, tmp) for _ in range(repeat)]
            echo = [
                wrk(base + "/echo", duration, proc.pid, tmp, "POST", ECHO_BODY)
                for _ in range(repeat)
            ]
        finally:
            _stop(proc)
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
        "median run. **wrk and the server share the machine's 2 cores**: the CPU columns say "
        "how much of a core each used (the server is one Python process, so 1.00 is all it "
        "can use), and what the rest of the machine used meanwhile (other work on this shared "
        "machine, and this script).",
        "",
        "| framework | GET /hello req/s | p50 / p99 ms | POST /echo req/s | p50 / p99 ms "
        "| server CPU (GET / POST) | wrk CPU (GET / POST) | rest of the machine | load before |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        h, e = median_run(r.hello), median_run(r.echo)
        out.append(
            f"| {r.label} {r.version} | {_range(r.hello)} | {h.p50_ms:.1f} / {h.p99_ms:.1f} "
            f"| {_range(r.echo)} | {e.p50_ms:.1f} / {e.p99_ms:.1f} "
            f"| {h.server_cpu:.2f} / {e.server_cpu:.2f} | {h.wrk_cpu:.2f} / {e.wrk_cpu:.2f} "
            f"| {h.other_cpu:.2f} / {e.other_cpu:.2f} | {max(h.load, e.load):.2f} |"
        )
    if skipped:
        out += ["", "Not run: " + "; ".join(skipped) + "."]
    out += ["", _why(results)]
    return out


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
            f"{k} serves {g.rps / s_get.rps:.2f}x Starlette's GET and {p.rps / s_post.rps:.2f}x "
            f"its POST rate (POST p99 {p.p99_ms:.1f} ms against {s_post.p99_ms:.1f} ms)"
        )
    best_post = max(med, key=lambda k: med[k][1].rps)
    lead = (
        "Starlette has the highest POST rate"
        if best_post == "Starlette"
        else f"{best_post} has the highest POST rate, "
        f"{med[best_post][1].rps / s_post.rps:.2f}x Starlette's"
    )
    return (
        f"**Why Starlette.** In this run {lead}; " + "; ".join(parts) + ". What a request "
        "costs the service is its own work (decode, validate, journal, schedule) plus what the "
        "framework adds: Starlette adds the least that still gives routing, requests and "
        "responses, and with msgspec for the bodies (typed decode, unknown fields refused, OpenAPI "
        "schemas from the same Structs) it has what FastAPI's pydantic layer and Litestar's "
        "own layer would add, at Starlette's rate. A framework within ~10% of Starlette here "
        "would be a matter of taste; one that halves the POST rate sets the service's "
        "ceiling at that half."
    )


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds in all, for CI")
    parser.add_argument("--part", choices=["frameworks", "serve", "all"], default="all")
    parser.add_argument("--duration", type=float, default=None, help="seconds a run (5; quick 1)")
    parser.add_argument("--repeat", type=int, default=None, help="runs each (3; quick 1)")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    duration = args.duration or (1.0 if args.quick else 5.0)
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
    if shutil.which("wrk") is None:
        out += ["wrk is not installed (Debian: `apt-get install wrk`): part one not run.", ""]
    else:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            if args.part in ("frameworks", "all"):
                results, skipped = frameworks(duration, repeat, tmp, warm=not args.quick)
                out += frameworks_report(results, skipped, duration, repeat)
    out += ["", f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f}."]
    text = "\n".join(out) + "\n"
    print(text)
    if args.output is not None:
        args.output.write_text(text)


def _wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "wrk (not installed)"
    proc = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    m = re.search(r"wrk (\S+)", proc.stdout + proc.stderr)
    return f"wrk {m.group(1)}" if m else "wrk"


if __name__ == "__main__":
    main()
