"""The ``logosq`` command: run the demo, draw a trace's timeline, run the benchmarks,
simulate a quantum cloud, read a journal.

::

    logosq demo [--quick] [--trace PATH] [--timeline PATH] [--journal PATH]
                [--progress | --no-progress]
    logosq timeline TRACE [-o timeline.png] [--title TEXT] [--validate]
    logosq bench [ARGS ...]             (ARGS go to benchmarks/run.py)
    logosq simulate [--tasks N] [--backends N] [--users N] [--load X] [--seed N]
                    [--trace CSV] [--save-trace CSV] [--policies P,P] [--plot PNG] [--json PATH]
    logosq jobs --journal PATH [--status S] [--limit N]     list a journal's tasks
    logosq jobs show ID|KEY --journal PATH                  one task, with its result
    logosq jobs gc --older-than 7d --journal PATH           delete tasks that ended before
    logosq serve --config server.toml [--host H] [--port P] [--journal PATH]
                 [--ssl-keyfile KEY --ssl-certfile CERT]    the scheduler as an HTTP service
    logosq token                                            a new API token and its config line

Exit codes, for scripts:

===  ==========================================================================
0    success
1    the work failed: a demo task did not end as planned, the demo raised, a
     benchmark failed, or a trace could not be drawn or did not validate
2    usage error: bad arguments, a missing or malformed file, or a missing extra
130  interrupted (Ctrl-C)
===  ==========================================================================

Also runnable as ``python -m logosq_os_scheduler.cli`` or ``python -m logosq_os_scheduler``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from . import __version__

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_EXTRA_HINT = "pip install 'logosq-os-scheduler[observability]'"

Handler = Callable[[argparse.Namespace, list[str]], int]
_N = TypeVar("_N", int, float)


def _error(message: str) -> None:
    print(f"logosq: error: {message}", file=sys.stderr)


def _missing(*modules: str) -> list[str]:
    """The modules of ``modules`` that cannot be imported here."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


# -- demo -----------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    needed = ["rich"] + (["matplotlib"] if args.timeline is not None else [])
    missing = _missing(*needed)
    if missing:
        _error(f"the demo needs {', '.join(missing)}: {_EXTRA_HINT}")
        return EXIT_USAGE
    from ._demo import DemoOptions, main_async
    from ._runtime import run

    options = DemoOptions(
        quick=args.quick,
        trace=args.trace,
        timeline=args.timeline,
        progress=args.progress,
        workers=args.workers,
        seed=args.seed,
        journal=args.journal,
    )
    from ._errors import JournalError

    try:
        return run(main_async(options))
    except JournalError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except Exception as exc:
        # The workload itself broke (not a task: tasks' failures are part of the plan).
        _error(f"the demo failed: {type(exc).__name__}: {exc}")
        if args.verbose:
            traceback.print_exc()
        return EXIT_FAILURE


# -- timeline -------------------------------------------------------------------------------------


def _cmd_timeline(args: argparse.Namespace, extra: list[str]) -> int:
    trace_path: Path = args.trace
    if not trace_path.is_file():
        _error(f"no trace file at {trace_path}")
        return EXIT_USAGE
    if _missing("matplotlib"):
        _error(f"drawing a timeline needs matplotlib: {_EXTRA_HINT}")
        return EXIT_USAGE
    from .observability._timeline import render_timeline
    from .observability._trace import TraceValidationError, load_trace, validate_trace

    output: Path = args.output or trace_path.with_suffix(".png")
    try:
        events, other = load_trace(trace_path)
        trace = {"traceEvents": events, "otherData": dict(other)}
        if args.validate:
            validate_trace(trace)
        render_timeline(trace, output, title=args.title)
    except TraceValidationError as exc:
        _error(f"{trace_path} is not a valid trace: {exc}")
        return EXIT_FAILURE
    except OSError as exc:
        _error(f"cannot draw {trace_path} to {output}: {exc}")
        return EXIT_FAILURE
    print(f"timeline: {output}")
    return EXIT_OK


# -- bench ----------------------------------------------------------------------------------------


def find_benchmarks() -> Path | None:
    """``benchmarks/run.py`` in the working directory, or beside the source tree."""
    here = Path(__file__).resolve()
    for root in (Path.cwd(), here.parents[2]):
        script = root / "benchmarks" / "run.py"
        if script.is_file():
            return script
    return None


def _cmd_bench(args: argparse.Namespace, extra: list[str]) -> int:
    script = find_benchmarks()
    if script is None:
        _error(
            "benchmarks/run.py not found: the benchmarks live in the source checkout; "
            "run `logosq bench` from its root"
        )
        return EXIT_USAGE
    forwarded = extra[1:] if extra[:1] == ["--"] else extra
    # A process of its own: its timings are not disturbed by this one, and its exit code
    # (0 ok, 1 failed, 2 usage) is ours.
    completed = subprocess.run([sys.executable, str(script), *forwarded], check=False)
    return completed.returncode


# -- simulate -------------------------------------------------------------------------------------


def _cmd_simulate(args: argparse.Namespace, extra: list[str]) -> int:
    import json

    from ._errors import SchedulerError
    from .simulate import make_cloud, read_trace, simulate, workload_for, write_trace

    if args.plot is not None and _missing("matplotlib"):
        _error(f"--plot needs matplotlib: {_EXTRA_HINT}")
        return EXIT_USAGE
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    try:
        cloud = make_cloud(args.backends, seed=args.seed)
        if args.trace is not None:
            workload = read_trace(args.trace)
        else:
            workload = workload_for(
                cloud, tasks=args.tasks, load=args.load, users=args.users, seed=args.seed
            )
        report = simulate(workload=workload, cloud=cloud, policies=policies, seed=args.seed)
    except SchedulerError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _error(f"cannot read the trace: {exc}")
        return EXIT_USAGE
    print(f"workload: {report.workload}")
    print(f"cloud: {report.cloud}; offered load {report.offered_load:.2f}x its unbatched capacity")
    print()
    print(report.table())
    try:
        if args.save_trace is not None:
            write_trace(workload, args.save_trace)
            print(f"\nworkload trace: {args.save_trace}")
        if args.plot is not None:
            print(f"plot: {report.plot(args.plot)}")
        if args.json is not None:
            args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
            print(f"json: {args.json}")
    except OSError as exc:
        _error(f"cannot write the output: {exc}")
        return EXIT_FAILURE
    return EXIT_OK


def _positive_float(text: str) -> float:
    return _positive_of(text, float, "a positive number")


# -- jobs -----------------------------------------------------------------------------------------


def _cmd_jobs(args: argparse.Namespace, extra: list[str]) -> int:
    import time

    from ._errors import JournalError
    from .journal import _inspect

    if args.journal is None:
        _error("jobs needs --journal PATH: the file given to QuantumScheduler(journal=...)")
        return EXIT_USAGE
    path = str(args.journal)
    try:
        if args.action == "show":
            ref: int | str = int(args.ref) if args.ref.isdigit() else args.ref
            row = _inspect.show_row(path, ref)
            now = time.time()
            fields = [
                ("id", row.task_id),
                ("key", row.key or "-"),
                ("name", row.name),
                ("type", row.task_type.value),
                ("priority", row.priority.name),
                ("status", row.status.value),
                ("submitted", f"{_inspect.format_age(now - row.submitted)} ago"),
                ("attempts", row.attempts),
                ("backend", row.backend or "-"),
                ("job id", row.job_id or "-"),
                ("recovery", row.recovery or "-"),
            ]
            if row.finished is not None:
                fields.append(("took", f"{row.finished - row.submitted:.3f} s"))
            label = "error" if row.status.value == "failed" else "result"
            fields.append((label, _inspect.describe_value(row)))
            for name, value in fields:
                print(f"{name:>10}  {value}")
            return EXIT_OK
        if args.action == "gc":
            deleted = _inspect.gc(path, args.older_than)
            print(f"deleted {deleted} tasks that ended more than {args.older_than_text} ago")
            return EXIT_OK
        rows = list(_inspect.list_rows(path, status=args.status, limit=args.limit))
        totals = _inspect.counts(path)
    except JournalError as exc:
        _error(str(exc))
        return EXIT_USAGE
    now = time.time()
    header = f"{'ID':>8}  {'KEY':<20} {'NAME':<20} {'STATUS':<10} {'BACKEND':<12} JOB ID  AGE"
    print(header)
    for row in rows:
        print(
            f"{row.task_id:>8}  {(row.key or '-')[:20]:<20} {row.name[:20]:<20} "
            f"{row.status.value:<10} {(row.backend or '-')[:12]:<12} "
            f"{(row.job_id or '-')[:8]:<7} {_inspect.format_age(now - row.submitted)}"
        )
    summary = ", ".join(f"{n} {s}" for s, n in sorted(totals.items())) or "no tasks"
    print(f"\n{sum(totals.values())} tasks in {path}: {summary}")
    return EXIT_OK


# -- serve and token ------------------------------------------------------------------------------

_SERVICE_HINT = "pip install 'logosq-os-scheduler[service]'"


def _cmd_serve(args: argparse.Namespace, extra: list[str]) -> int:
    missing = _missing("starlette", "uvicorn", "msgspec")
    if missing:
        _error(f"logosq serve needs {', '.join(missing)}: {_SERVICE_HINT}")
        return EXIT_USAGE
    from ._errors import InvalidConfigError, JournalError
    from .service import load_config, serve

    try:
        config = load_config(args.config)
        changes: dict[str, object] = {}
        if args.host is not None:
            changes["host"] = args.host
        if args.port is not None:
            changes["port"] = args.port
        if args.journal is not None:
            changes["journal"] = str(args.journal)
        if changes:
            config = config.replace(**changes)
        try:
            started = serve(
                config,
                ssl_keyfile=args.ssl_keyfile,
                ssl_certfile=args.ssl_certfile,
                ssl_keyfile_password=args.ssl_keyfile_password,
            )
        except SystemExit:
            # uvicorn exits (with its own code, 3) when it cannot start, for example on a
            # port in use; it has logged why. This command's code for that is 1.
            started = False
    except (InvalidConfigError, JournalError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    return EXIT_OK if started else EXIT_FAILURE


def _cmd_token(args: argparse.Namespace, extra: list[str]) -> int:
    from .service._token import new_token

    token, digest = new_token()
    print(token)
    print(f'token_sha256 = "{digest}"')
    print(
        "give the first line to the user (it is shown only now); put the second in their "
        "[users.NAME] table",
        file=sys.stderr,
    )
    return EXIT_OK


def _duration(text: str) -> float:
    from .journal._inspect import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- the parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``logosq`` argument parser, with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="logosq",
        description=(
            "A hybrid quantum-classical task scheduler: demo, timelines, benchmarks, simulation."
        ),
        epilog="Exit codes: 0 ok, 1 the work failed, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help=(
            "log more of the scheduler's records to stderr (warnings are always shown; "
            "-v: INFO, -vv: DEBUG, every task's steps)"
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run a mixed workload with live progress, then print metrics",
        description=(
            "Run a mixed workload across all five priorities with live progress (when stdout "
            "is not a terminal, a plain progress line every few seconds); print tables of "
            "metrics; write the trace (open it in https://ui.perfetto.dev) and a "
            "timeline picture. Exits 1 if any task did not end as planned."
        ),
    )
    demo.add_argument("--quick", action="store_true", help="a small, fast run")
    demo.add_argument(
        "--trace",
        type=Path,
        default=Path("logosq-demo.trace.json"),
        metavar="PATH",
        help="where to write the Chrome trace / Perfetto JSON (default: %(default)s)",
    )
    demo.add_argument(
        "--no-trace", dest="trace", action="store_const", const=None, help="write no trace"
    )
    demo.add_argument(
        "--journal",
        type=Path,
        default=None,
        metavar="PATH",
        help="run on this durable journal (then: logosq jobs --journal PATH)",
    )
    demo.add_argument(
        "--timeline",
        type=Path,
        default=Path("logosq-demo-timeline.png"),
        metavar="PATH",
        help="where to write the timeline picture (default: %(default)s)",
    )
    demo.add_argument(
        "--no-timeline",
        dest="timeline",
        action="store_const",
        const=None,
        help="draw no timeline",
    )
    shown = demo.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show live progress even when stdout is not a terminal",
    )
    shown.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="show no progress: neither the live display nor the plain progress lines",
    )
    demo.add_argument(
        "--workers", type=_positive, default=4, help="classical worker slots (default: 4)"
    )
    demo.add_argument(
        "--seed", type=int, default=2024, help="seed of the workload (default: %(default)s)"
    )
    demo.set_defaults(handler=_cmd_demo)

    timeline = sub.add_parser(
        "timeline",
        help="draw a trace as a Gantt chart with the queue depth beneath",
        description="Draw a trace written by the scheduler as a PNG picture.",
    )
    timeline.add_argument("trace", type=Path, metavar="TRACE", help="a .trace.json file")
    timeline.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="PNG",
        help="where to write the picture (default: TRACE with the suffix .png)",
    )
    timeline.add_argument("--title", default=None, help="a title above the chart")
    timeline.add_argument(
        "--validate", action="store_true", help="check the trace first; exit 1 if it is invalid"
    )
    timeline.set_defaults(handler=_cmd_timeline)

    bench = sub.add_parser(
        "bench",
        help="run the benchmarks (benchmarks/run.py in the source checkout)",
        description=(
            "Run benchmarks/run.py from the source checkout. Every other argument goes to it; "
            "use `logosq bench -- --help` for its own options."
        ),
    )
    bench.set_defaults(handler=_cmd_bench)

    sim = sub.add_parser(
        "simulate",
        help="compare this scheduler's policy with FCFS and least-busy on a simulated cloud",
        description=(
            "Run the scheduler's core policy under virtual time on simulated quantum devices "
            "(latency, other users' queues, failures, outages, calibration), beside "
            "first-come-first-served and least-busy (IBM's rule), on one workload; print job "
            "completion time, queue wait by priority, utilisation, estimated fidelity and "
            "fairness between users."
        ),
    )
    sim.add_argument(
        "--tasks", type=_positive, default=100_000, help="jobs to generate (default: %(default)s)"
    )
    sim.add_argument(
        "--backends", type=_positive, default=100, help="simulated devices (default: %(default)s)"
    )
    sim.add_argument(
        "--users", type=_positive, default=20, help="users submitting (default: %(default)s)"
    )
    sim.add_argument(
        "--load",
        type=_positive_float,
        default=1.0,
        help=(
            "arrivals as a multiple of the cloud's capacity at one circuit a job "
            "(default: %(default)s)"
        ),
    )
    sim.add_argument("--seed", type=int, default=0, help="for every random draw (default: 0)")
    sim.add_argument(
        "--trace",
        type=Path,
        default=None,
        metavar="CSV",
        help=(
            "run the jobs of this CSV trace instead of generated ones (header: arrival, "
            "qubits, shots; optional user, priority, two_qubit_gates, all_to_all)"
        ),
    )
    sim.add_argument(
        "--save-trace", type=Path, default=None, metavar="CSV", help="write the workload as a trace"
    )
    sim.add_argument(
        "--policies",
        default="fcfs,least-busy,logosq",
        help="comma-separated, of fcfs, least-busy, logosq, logosq-fair (ours with fair share "
        "between the users; default: the first three)",
    )
    sim.add_argument(
        "--plot", type=Path, default=None, metavar="PNG", help="draw the comparison (matplotlib)"
    )
    sim.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="write the report as JSON"
    )
    sim.set_defaults(handler=_cmd_simulate)

    def journal_option(default: object) -> argparse.ArgumentParser:
        # On `jobs` and on each of its actions, so that --journal may come before or after
        # the action; an action's copy sets it only when given there.
        holder = argparse.ArgumentParser(add_help=False)
        holder.add_argument(
            "--journal",
            type=Path,
            default=default,
            metavar="PATH",
            help="the journal's file, as given to QuantumScheduler(journal=...) (required)",
        )
        return holder

    journal = journal_option(None)
    journal_again = journal_option(argparse.SUPPRESS)
    jobs = sub.add_parser(
        "jobs",
        parents=[journal],
        help="list, show or compact the tasks of a journal",
        description=(
            "Read a scheduler's journal (also while the scheduler runs): list its newest "
            "tasks, show one by id or client key with its result, or delete finished ones."
        ),
    )
    jobs.add_argument("--status", default=None, help="only tasks in this status")
    jobs.add_argument(
        "--limit", type=_positive, default=50, help="newest tasks to list (default: %(default)s)"
    )
    jobs.set_defaults(handler=_cmd_jobs, action="list")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", parents=[journal_again], help="one task with its result")
    show.add_argument("ref", metavar="ID|KEY", help="a task id or a client key")
    gc = actions.add_parser("gc", parents=[journal_again], help="delete tasks that ended long ago")
    gc.add_argument(
        "--older-than",
        dest="older_than_text",
        required=True,
        metavar="AGE",
        help="delete those that ended before this long ago: 7d, 12h, 30m, 45s",
    )
    serve_cmd = sub.add_parser(
        "serve",
        help="run the scheduler as an HTTP service (needs the service extra)",
        description=(
            "Serve a scheduler on a durable journal over HTTP to the users of a config file "
            "(docs/service.md). SIGTERM or SIGINT stops it gracefully: queued tasks stay in "
            "the journal for the next start."
        ),
    )
    serve_cmd.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="the TOML config"
    )
    serve_cmd.add_argument("--host", default=None, help="listen address (overrides [server] host)")
    serve_cmd.add_argument(
        "--port", type=int, default=None, help="TCP port (overrides [server] port)"
    )
    serve_cmd.add_argument(
        "--journal",
        type=Path,
        default=None,
        metavar="PATH",
        help="the journal (overrides [server] journal)",
    )
    serve_cmd.add_argument(
        "--ssl-keyfile", default=None, metavar="KEY", help="TLS private key (PEM)"
    )
    serve_cmd.add_argument(
        "--ssl-certfile", default=None, metavar="CERT", help="TLS certificate chain (PEM)"
    )
    serve_cmd.add_argument(
        "--ssl-keyfile-password", default=None, metavar="PASSWORD", help="password of the key file"
    )
    serve_cmd.set_defaults(handler=_cmd_serve)
    token = sub.add_parser(
        "token",
        help="print a new API token and the config line with its hash",
        description="Print a new random API token, then the token_sha256 line for the config.",
    )
    token.set_defaults(handler=_cmd_token)
    return parser


def _positive(text: str) -> int:
    return _positive_of(text, int, "a positive integer")


def _positive_of(text: str, convert: Callable[[str], _N], what: str) -> _N:
    """``text`` as a finite number above zero, for argparse; an error saying ``what`` if not."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``logosq`` command with ``argv`` (default: the process's arguments).

    Returns:
        The exit code (see the module docstring); never raises SystemExit itself.
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        # argparse exits 0 after --help or --version and 2 on a usage error.
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_usage(sys.stderr)
        _error(
            "choose a command: demo, timeline, bench, simulate, jobs, serve or token "
            "(see logosq --help)"
        )
        return EXIT_USAGE
    if getattr(args, "older_than_text", None) is not None:
        try:
            args.older_than = _duration(args.older_than_text)
        except argparse.ArgumentTypeError as exc:
            _error(f"--older-than: {exc}")
            return EXIT_USAGE

    # The package is silent by itself (a library's NullHandler); the command shows its
    # warnings on stderr, and -v / -vv more.
    from .observability._logging import configure_logging

    levels = {0: logging.WARNING, 1: logging.INFO}
    handler_added = configure_logging(levels.get(args.verbose, logging.DEBUG))
    command: Handler = args.handler
    try:
        return command(args, extra)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    finally:
        logging.getLogger("logosq_os_scheduler").removeHandler(handler_added)


if __name__ == "__main__":
    sys.exit(main())
