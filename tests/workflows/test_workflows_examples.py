"""The example scripts run as a new user would run them, and say what they should."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("qiskit_aer")
pytest.importorskip("scipy")

from _workflow_helpers import aer_backend, runs_hybrid_algorithms

pytestmark = pytest.mark.qiskit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str) -> str:
    aer_backend()  # skips where the scheduler has no Qiskit adapter
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_basic_scheduling_runs_a_bell_circuit_and_a_classical_task() -> None:
    out = run_example("basic_scheduling.py")
    counts = re.search(r"bell_state counts: (\{.*\}) on 'aer'", out)
    assert counts is not None, out
    assert set(ast.literal_eval(counts.group(1))) <= {"00", "11"}
    angle = re.search(r"optimize_params: best angle ([\d.]+) rad", out)
    assert angle is not None and abs(float(angle.group(1)) - 3.365) < 0.01


async def test_vqe_workflow_runs_the_workflow_and_the_hybrid_task() -> None:
    if not await runs_hybrid_algorithms():
        pytest.skip("this scheduler does not run hybrid algorithms yet")
    out = run_example("vqe_workflow.py", "--iterations", "5")
    # 1 init task, then per iteration 6 circuits (3 points x 2 groups) and 1 update.
    workflow = re.search(r"workflow: E = (-[\d.]+) Ha after 5 iterations, 36 tasks", out)
    hybrid = re.search(r"hybrid task: E = (-[\d.]+) Ha after 5 iterations", out)
    assert workflow is not None and hybrid is not None, out
    # From the Hartree-Fock start (-1.8369 Ha) towards the FCI energy (-1.8573 Ha): the last
    # workflow estimate has 4096 shots per basis (about 4.5 mHa standard error), the hybrid
    # task's final estimate 100,000 (about 1 mHa).
    assert float(workflow.group(1)) < -1.84
    assert abs(float(hybrid.group(1)) - (-1.857275)) < 0.006
