"""Ctrl-C in a BlockingScheduler's ``with`` block: it says what it waits for, the wait is
bounded by ``interrupt_timeout``, and a second Ctrl-C abandons it.

Each test runs a real script in a child process and sends it SIGINT, as a terminal does; the
test waits on the child's output and exit, never on a sleep.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest

from _interrupt import INTERRUPT_FROM_ANOTHER_THREAD
from logosq_os_scheduler import BlockingScheduler, InvalidConfigError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# _SIGINT_NOTE: a child started from a shell's background job (``pytest ... &``) inherits
# SIGINT ignored, and Python then installs no handler for it: each script installs Python's
# own, so the tests do not depend on how the suite was started.

# Two workers, both stuck in a function that never returns, and a third task queued behind
# them; the main thread waits on the first handle when Ctrl-C comes.
_SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading
    import logosq_os_scheduler as lq

    signal.signal(signal.SIGINT, signal.default_int_handler)  # see _SIGINT_NOTE

    never = threading.Event()
    said = threading.Lock()

    def say(line):  # one line at a time: worker threads and the main thread all print
        with said:
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()

    def stuck(i):
        say(f"started {{i}}")
        never.wait()

    handles = []
    try:
        with lq.BlockingScheduler(2, interrupt_timeout={timeout}) as s:
            for i in range(3):
                handles.append(s.submit(lq.Task.classical(f"t{{i}}").with_function(stuck, i)))
            say("submitted")
            handles[0].result()
    except KeyboardInterrupt:
        print("statuses", *(h.status.name for h in handles), flush=True)
        sys.exit(130)
    """
)


@pytest.fixture
def start() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start the script with an ``interrupt_timeout``; the child is reaped whatever happens."""
    children: list[subprocess.Popen[str]] = []

    def _start(timeout: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT.format(timeout=timeout)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(proc)
        assert proc.stdout is not None
        lines = {proc.stdout.readline().strip() for _ in range(3)}
        assert lines == {"started 0", "started 1", "submitted"}
        return proc

    yield _start
    for proc in children:
        proc.kill()
        proc.communicate()


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    return proc.communicate(timeout=60)


def test_a_bounded_wait_says_what_it_waits_for_then_cancels_the_running_tasks(
    start: Callable[[str], subprocess.Popen[str]],
) -> None:
    proc = start("0.2")
    proc.send_signal(signal.SIGINT)
    out, err = _finish(proc)
    assert proc.returncode == 130, err
    assert out.split() == ["statuses", "CANCELLED", "CANCELLED", "CANCELLED"]
    assert err == (
        "logosq: interrupted: queued tasks cancelled; waiting up to 0.2 s for 2 running "
        "task(s) to end (press Ctrl-C again to stop waiting)\n"
    )


def test_a_second_ctrl_c_abandons_an_unbounded_wait(
    start: Callable[[str], subprocess.Popen[str]],
) -> None:
    proc = start("None")
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("logosq: interrupted: queued tasks cancelled; waiting until they end")
    assert "for 2 running task(s)" in first
    proc.send_signal(signal.SIGINT)
    out, err = _finish(proc)
    assert proc.returncode == 130, err
    assert err == "logosq: interrupted again: cancelling the running tasks and exiting\n"
    assert out.split() == ["statuses", "CANCELLED", "CANCELLED", "CANCELLED"]


@pytest.mark.parametrize("bad", [-1, "soon", float("nan")])
def test_interrupt_timeout_is_validated(bad: object) -> None:
    with pytest.raises(InvalidConfigError, match="interrupt_timeout"):
        BlockingScheduler(1, interrupt_timeout=bad)  # type: ignore[arg-type]


# Ctrl-C that the kernel hands to one of the scheduler's threads (see _interrupt): the main
# thread, blocked in ``result()``, must still see it. Here the worker running the task sends
# it, then stays busy.
_SCRIPT_OTHER_THREAD = INTERRUPT_FROM_ANOTHER_THREAD + textwrap.dedent(
    """
    import logosq_os_scheduler as lq

    def interrupt_then_stay():
        interrupt_from_here()
        never.wait()

    try:
        with lq.BlockingScheduler(1, interrupt_timeout=0.2) as s:
            handle = s.submit(lq.Task.classical("t").with_function(interrupt_then_stay))
            handle.result()
    except KeyboardInterrupt:
        print("interrupted", handle.status.name, flush=True)
        sys.exit(130)
    """
)


def test_ctrl_c_delivered_to_another_thread_still_interrupts_a_wait() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT_OTHER_THREAD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert out.split() == ["interrupted", "CANCELLED"]
