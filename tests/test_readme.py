"""Every Python block in the README runs as written, so the README cannot drift from the code.

Each ```python block is a whole program: it is run on its own in a fresh interpreter, in an
empty folder (a block may write files there). A block that needs an extra carries that
extra's marker, so the core suite (no extras) runs only the blocks it can.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

# The marker a block needs, by the modules it imports.
_EXTRAS = {
    "qiskit": ("qiskit", "qiskit_aer", "qiskit_ibm_runtime"),
    "ray": ("ray",),
    "security": ("logosq_os_scheduler.security",),
    "observability": ("prometheus_client", "rich", "matplotlib"),
}


def _imports(code: str) -> set[str]:
    found = set()
    for match in re.finditer(r"^\s*(?:from|import)\s+([\w.]+)", code, re.MULTILINE):
        found.add(match.group(1))
    return found


def _marks(code: str) -> list[pytest.MarkDecorator]:
    modules = _imports(code)
    marks = []
    for marker, roots in _EXTRAS.items():
        if any(m == r or m.startswith(r + ".") for m in modules for r in roots):
            marks.append(getattr(pytest.mark, marker))
    return marks


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def _cases() -> list[object]:
    return [
        pytest.param(code, id=f"README.md:{line}", marks=_marks(code)) for line, code in _blocks()
    ]


def test_the_readme_has_python_blocks_to_check() -> None:
    assert len(_blocks()) >= 3


@pytest.mark.parametrize("code", _cases())
def test_a_readme_block_runs_as_written(code: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    # A README example that prints something to stderr (a warning, a log record) would
    # greet a new user with noise.
    assert proc.stderr == ""


def test_the_marks_follow_the_imports() -> None:
    marks = _marks("import asyncio\nfrom qiskit import QuantumCircuit\n")
    assert [m.name for m in marks] == ["qiskit"]
    marks = _marks("from logosq_os_scheduler.security import verify_result\n")
    assert [m.name for m in marks] == ["security"]
    assert _marks("from logosq_os_scheduler import Task\n") == []
