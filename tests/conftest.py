"""Shared fixtures: a manual clock and helpers for building tasks."""

from __future__ import annotations

import pytest

from logosq_os_scheduler import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
