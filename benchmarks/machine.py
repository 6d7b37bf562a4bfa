"""What the figures were measured on: CPU, memory, OS, Python, event loop, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import loadavg

__all__ = ["machine_info"]

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except (OSError, ValueError):
        pass
    return None


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + (" (with uncommitted changes)" if dirty else "")


def machine_info(use_uvloop: bool, systems: list[Any]) -> dict[str, Any]:
    """Describe this machine and the software measured on it."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    loop = "asyncio (stdlib)"
    if use_uvloop:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    versions: dict[str, str] = {}
    for cls in systems:
        if cls.name != "logosq":  # ours is listed as the package, not as a peer
            versions.update(cls.versions())
    import logosq_os_scheduler

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": _ram_gib(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "loop": loop,
        "package": f"logosq-os-scheduler {logosq_os_scheduler.__version__}",
        "package_path": str(Path(logosq_os_scheduler.__file__).resolve().parent),
        "revision": _git_revision(),
        "versions": versions,
        "load_start": loadavg(),
    }
