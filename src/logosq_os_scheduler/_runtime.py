"""Event-loop selection: uvloop when installed (the seed's default runtime), asyncio otherwise."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["new_event_loop", "run", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    """Whether uvloop can be imported (it is used by :func:`run` and BlockingScheduler)."""
    return importlib.util.find_spec("uvloop") is not None


def new_event_loop(*, use_uvloop: bool | None = None) -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when available (or when asked), asyncio's otherwise.

    Args:
        use_uvloop: True to require uvloop, False to refuse it, None to use it if installed.
    """
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """Run a coroutine to completion on a fresh loop (uvloop if installed), like asyncio.run."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop=use_uvloop)) as runner:
        return runner.run(main)
