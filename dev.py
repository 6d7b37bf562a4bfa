#!/usr/bin/env python3
"""One entry point that sets itself up: `python3 dev.py demo` and `python3 dev.py test`.

Needs only python3 (3.11+) and pip. Each command creates the virtual environment it needs
under .venv/ (reused while pyproject.toml is unchanged), installs the package with its extras,
and runs.

    python3 dev.py demo [ARGS...]   the demo workload (logosq demo ARGS)
    python3 dev.py test [PYTEST ARGS...]
                                    ruff, mypy, the full test suite with every extra, then the
                                    core suite again with no extras (the embedded profile)
    python3 dev.py bench [ARGS...]  the benchmark suite: benchmarks/run.py ARGS, which rewrites
                                    BENCHMARKS.md, then bench_quantum.py, bench_vqe.py,
                                    bench_scaling.py, bench_simulate.py, bench_durable.py,
                                    bench_service.py and bench_fidelity.py, each appended
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENVS = ROOT / ".venv"

# pytest's exit code 5 means "no tests ran": that is a failure here, never a pass.
NO_TESTS = 5

CORE_MARKERS = (
    "not qiskit and not braket and not ray and not observability and not security "
    "and not service and not browser"
)


def _python(env_dir: Path) -> Path:
    return env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"


def ensure_env(name: str, extras: str) -> Path:
    """Create (or reuse) .venv/NAME with the package installed with EXTRAS; return its python."""
    if sys.version_info < (3, 11):
        sys.exit(f"python 3.11 or newer is required, this is {sys.version.split()[0]}")
    env_dir = VENVS / name
    py = _python(env_dir)
    stamp = env_dir / ".installed"
    want = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + extras.encode() + sys.version.encode()
    ).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    print(f"[dev] setting up {env_dir.relative_to(ROOT)} (extras: {extras or 'none'})", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    spec = f"{ROOT}[{extras}]" if extras else str(ROOT)
    run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    run([py, "-m", "pip", "install", "-q", "-e", spec])
    stamp.write_text(want)
    return py


def run(cmd: list[object], *, ok: tuple[int, ...] = (0,)) -> int:
    print("[dev] $", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if code not in ok:
        if code == NO_TESTS:
            print("[dev] pytest collected no tests: failing", flush=True)
        sys.exit(code or 1)
    return code


def cmd_demo(args: list[str]) -> None:
    py = ensure_env("all", "all")
    run([py, "-m", "logosq_os_scheduler.cli", "demo", *args])


def cmd_test(args: list[str]) -> None:
    py = ensure_env("dev-all", "all,dev,algorithms,browser")
    run([py, "-m", "ruff", "check", "src", "tests", "benchmarks"])
    run([py, "-m", "ruff", "format", "--check", "src", "tests", "benchmarks"])
    run([py, "-m", "mypy"])
    run([py, "-m", "pytest", *args])
    core = ensure_env("dev-core", "dev")
    run([core, "-m", "pytest", "-m", CORE_MARKERS, *args])
    print("[dev] all checks passed", flush=True)


def cmd_bench(args: list[str]) -> None:
    """The classical suite against its peers (rewrites BENCHMARKS.md), then the quantum,
    batching and preemption figures, the VQE iteration overhead, the multi-core scaling
    table, the simulator, the durable (journal) throughput beside the durable queues, the
    service (`logosq serve`) beside the HTTP ceiling, and routing on expected fidelity, each
    appended to it."""
    py = ensure_env("bench", "all,bench")
    run([py, "benchmarks/run.py", *args])
    quick = ["--quick"] if "--quick" in args else []
    for script, part in (
        ("bench_quantum.py", ".quantum.md"),
        ("bench_vqe.py", ".vqe.md"),
        ("bench_scaling.py", ".scaling.md"),
        ("bench_simulate.py", ".simulate.md"),
        ("bench_durable.py", ".durable.md"),
        ("bench_service.py", ".service.md"),
        ("bench_fidelity.py", ".fidelity.md"),
    ):
        section = ROOT / "benchmarks" / part
        run([py, f"benchmarks/{script}", *quick, "--output", f"benchmarks/{part}"])
        if "--output" not in args:
            report = ROOT / "BENCHMARKS.md"
            report.write_text(report.read_text() + "\n" + section.read_text())
        section.unlink()


def main() -> None:
    commands = {"demo": cmd_demo, "test": cmd_test, "bench": cmd_bench}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        sys.exit(2)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
