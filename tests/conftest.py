"""Shared fixtures: a manual clock, and virtual time for runtime tests.

A test marked ``virtual_time`` runs on an event loop whose time is virtual and jumps to the
next timer whenever the loop would only wait (``looptime``; as trio's
``MockClock(autojump_threshold=0)``). A scheduler given ``clock=LoopClock()`` then arms
every timer (deadlines, batch windows, back-off, probes, job time-outs) in that time: a test
of a half-minute time-out takes microseconds and never waits on the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from logosq_os_scheduler import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _virtual_time_loop() -> asyncio.AbstractEventLoop:
    import looptime

    return looptime.new_event_loop(start=0.0)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    if item.get_closest_marker("virtual_time") is None:
        return {"asyncio": asyncio.new_event_loop}
    return {"virtual_time": _virtual_time_loop}
