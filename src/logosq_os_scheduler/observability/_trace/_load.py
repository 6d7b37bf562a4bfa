"""Reading a trace back: its events and its ``otherData``, from a file, an object or a list."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["TraceInput", "TraceValidationError", "load_trace"]


class TraceValidationError(ValueError):
    """A trace broke the Chrome trace-event rules or disagreed with the tasks' histories.

    Attributes:
        problems: Every problem found, one line each.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"invalid trace ({len(self.problems)} problems):\n  {shown}{more}")


TraceInput = str | os.PathLike[str] | Mapping[str, object] | Sequence[Mapping[str, object]]
"""A trace file's path, its parsed JSON object, or its list of events."""


def load_trace(trace: TraceInput) -> tuple[list[Mapping[str, object]], Mapping[str, object]]:
    """Read a trace into its events and its ``otherData``.

    Args:
        trace: A path to a trace JSON file, the parsed object, or the bare list of events.

    Returns:
        ``(events, other_data)``; ``other_data`` is empty for a bare list.

    Raises:
        OSError: If the file cannot be read.
        TraceValidationError: If it is not JSON, or not a trace.
    """
    data: object
    if isinstance(trace, str | os.PathLike):
        try:
            data = json.loads(Path(trace).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TraceValidationError([f"not JSON: {exc}"]) from exc
    else:
        data = trace
    other: Mapping[str, object] = {}
    if isinstance(data, Mapping):
        events = data.get("traceEvents")
        extra = data.get("otherData")
        if isinstance(extra, Mapping):
            other = extra
    else:
        events = data
    if not isinstance(events, Sequence) or isinstance(events, str | bytes):
        raise TraceValidationError(["no traceEvents list"])
    bad = [i for i, ev in enumerate(events) if not isinstance(ev, Mapping)]
    if bad:
        raise TraceValidationError([f"event {i} is not an object" for i in bad])
    return list(events), other
