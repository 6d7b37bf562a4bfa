"""The ``logosq`` command: the demo runs to completion and writes its files, the timeline
subcommand draws a trace, bench forwards to benchmarks/run.py, and the exit codes hold."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import logosq_os_scheduler
from logosq_os_scheduler import ManualClock, SchedulerConfig, Task, TaskStatus
from logosq_os_scheduler.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from logosq_os_scheduler.core import SchedulerCore
from logosq_os_scheduler.observability import TraceRecorder, validate_trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SRC = Path(logosq_os_scheduler.__file__).resolve().parents[1]


def env_with_src() -> dict[str, str]:
    """The environment for a child Python that imports this checkout's package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # a real picture, not an empty canvas


def assert_demo_trace(path: Path) -> None:
    trace = json.loads(path.read_text())
    validate_trace(trace)
    other = trace["otherData"]
    assert other["tasks"] == other["finished"] >= 250
    priorities = {e["args"]["priority"] for e in trace["traceEvents"] if e.get("cat") == "task"}
    assert priorities == {"CRITICAL", "HIGH", "NORMAL", "LOW", "IDLE"}
    outcomes = {e["name"] for e in trace["traceEvents"] if e["ph"] == "i"}
    assert {"failed", "timed_out", "cancelled"} <= outcomes


# -- help and usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["demo", "--help"], ["timeline", "--help"], ["bench", "--help"], ["--version"]],
)
def test_help_and_version_exit_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "logosq" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["demo", "--bogus"],
        ["demo", "--workers", "0"],
        ["demo", "--progress", "--no-progress"],
        ["timeline"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert "error" in capsys.readouterr().err


def test_help_through_python_dash_m() -> None:
    for module in ("logosq_os_scheduler.cli", "logosq_os_scheduler"):
        done = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            capture_output=True,
            text=True,
            env=env_with_src(),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "demo" in done.stdout and "timeline" in done.stdout and "bench" in done.stdout


# -- demo -----------------------------------------------------------------------------------------


@pytest.mark.observability
def test_demo_quick_in_process_writes_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rich")
    pytest.importorskip("matplotlib")
    trace, png = tmp_path / "demo.trace.json", tmp_path / "demo.png"
    argv = ["demo", "--quick", "--no-progress", "--trace", str(trace), "--timeline", str(png)]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "Scheduler metrics" in out and "By priority" in out
    assert "every task ended as planned" in out
    assert_demo_trace(trace)
    assert_png(png)


@pytest.mark.observability
def test_demo_quick_as_a_command_with_live_progress(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    pytest.importorskip("matplotlib")
    trace, png = tmp_path / "demo.trace.json", tmp_path / "demo.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "logosq_os_scheduler.cli",
            "demo",
            "--quick",
            "--progress",
            "--trace",
            str(trace),
            "--timeline",
            str(png),
        ],
        capture_output=True,
        text=True,
        env=env_with_src(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CRITICAL" in done.stdout  # the progress display's rows and the table's
    assert_demo_trace(trace)
    assert_png(png)


@pytest.mark.observability
async def test_demo_exits_1_when_a_task_does_not_end_as_planned(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    from logosq_os_scheduler._demo import DemoContext, DemoOptions, main_async

    def broken(x: int) -> int:
        raise RuntimeError("this task was meant to work")

    async def part(ctx: DemoContext) -> None:
        await ctx.submit(Task.classical("fine").with_function(abs, -1))
        await ctx.submit(Task.classical("broken").with_function(broken, 1))

    out = io.StringIO()
    options = DemoOptions(quick=True, trace=tmp_path / "t.json", timeline=None, progress=False)
    assert await main_async(options, Console(file=out), [("a broken part", part)]) == EXIT_FAILURE
    assert "1 tasks did not end as planned" in out.getvalue()
    assert "'broken', a broken part): failed, expected completed" in out.getvalue()
    validate_trace(tmp_path / "t.json")


PROGRESS_LINE = re.compile(
    r"^\[ *\d+\.\d s\] (?P<part>[^:]+): (?P<done>[\d,]+)/(?P<submitted>[\d,]+) tasks done, "
    r"\d+ running, \d+ waiting, [\d,]+ tasks/s$",
    re.MULTILINE,
)


@pytest.mark.observability
async def test_demo_off_a_terminal_prints_progress_lines_and_says_what_tables_count() -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    from logosq_os_scheduler._demo import DemoOptions, print_report, run_demo

    out = io.StringIO()
    console = Console(file=out, width=200)
    assert not console.is_terminal  # as when stdout is a pipe or a CI log
    options = DemoOptions(quick=True, trace=None, timeline=None, progress_interval=0.05)
    report, _recorder = await run_demo(options, console)
    print_report(report, console)
    text = out.getvalue()

    # Plain progress lines while it runs, the last one once everything finished.
    lines = list(PROGRESS_LINE.finditer(text))
    assert len(lines) >= 2, text
    assert all(m["part"] in {"vqe h2", "classical burst", "quantum burst", "finishing"}
               for m in lines[:-1])  # fmt: skip
    last = lines[-1]
    assert last["part"] == "done"
    submitted = f"{report.metrics.submitted:,}"
    assert last["done"] == last["submitted"] == submitted

    # Each table says what it counts, and Backends and Routing count the same circuits.
    assert "By priority: the demo's own tasks" in text
    assert "Backends: circuits run on each" in text
    assert "circuits completed" in text and "failed jobs" in text
    assert "Routing: completed circuits by the rule that chose their backend" in text
    assert report.metrics.backends
    for name, backend in report.metrics.backends.items():
        routed = sum(n for (where, _rule), n in report.routing.items() if where == name)
        assert routed == backend.completed, (name, report.routing)
    if report.vqe_energy is not None:  # the VQE names aer: its circuits are pinned there
        assert report.routing[("aer", "pinned")] > 0


def test_demo_progress_interval_must_be_positive() -> None:
    from logosq_os_scheduler._demo import DemoOptions

    with pytest.raises(ValueError, match="progress_interval must be a positive"):
        DemoOptions(progress_interval=0)


# -- timeline -------------------------------------------------------------------------------------


def small_trace(path: Path) -> Path:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(workers=2), clock)
    recorder = TraceRecorder.attach(core)
    tasks = [Task.classical(f"t{i}").with_function(abs, i).build() for i in range(6)]
    for t in tasks:
        core.admit(t, core.classical, 0.0)
    for i in range(6):
        clock.set(0.01 * (i + 1))
        running = next(t for t in tasks if t.status is TaskStatus.RUNNING)
        core.transition(running, TaskStatus.COMPLETED, clock.now())
        core.release_task(running, clock.now())
        core.next_ready(core.classical, clock.now())
    return recorder.export_chrome_trace(path)


@pytest.mark.observability
def test_timeline_subcommand_draws_a_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    trace = small_trace(tmp_path / "run.trace.json")
    png = tmp_path / "out.png"
    assert main(["timeline", str(trace), "-o", str(png), "--validate", "--title", "t"]) == 0
    assert_png(png)
    assert f"timeline: {png}" in capsys.readouterr().out
    # Without -o the picture goes beside the trace.
    assert main(["timeline", str(trace)]) == EXIT_OK
    assert_png(trace.with_suffix(".png"))


@pytest.mark.observability
def test_timeline_subcommand_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    assert main(["timeline", str(tmp_path / "missing.json")]) == EXIT_USAGE
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    assert main(["timeline", str(bad)]) == EXIT_FAILURE
    overlapping = json.loads(small_trace(tmp_path / "ok.json").read_text())
    for e in overlapping["traceEvents"]:
        if e.get("cat") == "task":
            e["ts"] = 0.0  # every run now starts at once on two lanes: overlaps
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(overlapping))
    assert main(["timeline", str(broken), "--validate"]) == EXIT_FAILURE
    assert "not a valid trace" in capsys.readouterr().err
    assert main(["timeline", str(broken)]) == EXIT_OK  # drawing alone does not validate


# -- bench ----------------------------------------------------------------------------------------


def test_bench_forwards_arguments_and_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "benchmarks" / "run.py"
    script.parent.mkdir()
    record = tmp_path / "argv.json"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            with open({str(record)!r}, "w") as fh:
                json.dump(sys.argv[1:], fh)
            sys.exit(1 if "--fail" in sys.argv else 0)
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick", "--rounds", "3"]) == EXIT_OK
    assert json.loads(record.read_text()) == ["--quick", "--rounds", "3"]
    assert main(["bench", "--", "--fail"]) == EXIT_FAILURE
    assert json.loads(record.read_text()) == ["--fail"]


def test_without_the_extra_demo_and_timeline_say_what_to_install(tmp_path: Path) -> None:
    # A Python where rich and matplotlib cannot be imported, as without the extra.
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import sys

            class Block:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in {"rich", "matplotlib"}:
                        raise ModuleNotFoundError(name)
                    return None

            sys.meta_path.insert(0, Block())
            """
        )
    )
    trace = small_trace(tmp_path / "run.trace.json")
    env = env_with_src()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    for argv in (["demo", "--quick"], ["timeline", str(trace)]):
        done = subprocess.run(
            [sys.executable, "-m", "logosq_os_scheduler.cli", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert done.returncode == EXIT_USAGE, done.stderr
        assert "logosq-os-scheduler[observability]" in done.stderr
    assert not (tmp_path / "logosq-demo.trace.json").exists()
