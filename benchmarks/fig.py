"""A figure measured over repeated runs: its median, min and max, formatted for the reports."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["Fig"]


class Fig:
    """Median, min and max of repeated runs (NaN runs ignored)."""

    def __init__(self, values: Sequence[float]) -> None:
        finite = [v for v in values if not math.isnan(v)]
        self.runs = list(values)
        self.median = statistics.median(finite) if finite else math.nan
        self.lo = min(finite) if finite else math.nan
        self.hi = max(finite) if finite else math.nan

    def fmt(self, scale: float = 1.0, digits: int = 0, unit: str = "") -> str:
        """``median (min-max)``, or the median alone when min and max print the same."""
        if math.isnan(self.median):
            return "n/a"

        def f(v: float) -> str:
            return f"{v * scale:,.{digits}f}"

        if f(self.lo) == f(self.hi):
            return f"{f(self.median)}{unit}"
        return f"{f(self.median)}{unit} ({f(self.lo)}-{f(self.hi)})"

    def ms(self, digits: int = 2) -> str:
        return self.fmt(1e3, digits, " ms")

    def rate(self) -> str:
        return self.fmt(1.0, 0, "/s")
