"""Kill a provider child (``_provider_child.py``) once its job's ID is in its journal."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = HERE / "_provider_child.py"


def kill_with_job_in_flight(mode: str, journal: Path) -> str:
    """Start the child in ``mode`` on ``journal``, SIGKILL it once the journal holds the
    acknowledged ID of its job, and return that ID."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(journal)],
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None, f"the child exited early ({child.returncode})"
            assert time.monotonic() < deadline, "no job ID was written in 120 s"
            found: list[tuple[object, ...]] = []
            if journal.exists():
                try:
                    with sqlite3.connect(journal) as conn:
                        found = conn.execute(
                            "SELECT job_id FROM jobs WHERE job_id IS NOT NULL"
                        ).fetchall()
                except sqlite3.OperationalError:
                    pass  # the child has not created its tables yet
            if found:
                return str(found[0][0])
            time.sleep(0.01)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
