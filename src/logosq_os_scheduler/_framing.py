"""Length-prefixed frames: how a worker process and its parent cut a byte stream into messages.

A frame is a fixed-size binary header, one field of which is the length of the body that
follows it. Two protocols are built on it, each with its own header:

* the process executor's (``executors/_process/_wire.py``): a kind, a task id and the
  body's length (and, towards a worker, the task's limits), over a socket pair;
* the Qiskit simulator workers' (``backends/_aer_worker.py``): the body's length alone,
  over a worker's stdin and stdout.

Bodies are bytes to this module (both protocols put pickles in them). The executor's two
per-task loops (the parent reading replies, a worker reading tasks) cut frames inline from its
framings' ``header`` and ``size`` rather than call :meth:`Framing.split`, whose list of frames
costs more on a path every task takes; the simulator workers use :meth:`Framing.split` and
:meth:`Framing.read`. It needs only the standard library and imports nothing from the package:
the simulator worker runs as a script, without the package on its path, and loads this file by
its location.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

__all__ = ["Framing"]


class Framing:
    """One protocol's frame layout: a header packed by ``struct`` format ``fmt``, whose field
    ``length_at`` is the length of the body after it.

    Attributes:
        header: The header's ``struct.Struct``; a frame is ``header.pack(...) + body``.
        size: The header's size in bytes.
    """

    __slots__ = ("_length_at", "_unpack_from", "header", "size")

    def __init__(self, fmt: str, *, length_at: int) -> None:
        self.header = struct.Struct(fmt)
        self.size = self.header.size
        self._length_at = length_at
        # Bound once: split() runs for every read of a worker's replies.
        self._unpack_from = self.header.unpack_from

    def body_length(self, data: bytes | bytearray, pos: int = 0) -> int:
        """The body length in the header at ``pos`` (``data`` holds a whole header there)."""
        length: int = self._unpack_from(data, pos)[self._length_at]
        return length

    def split(
        self, data: bytes | bytearray, pos: int = 0
    ) -> tuple[list[tuple[tuple[Any, ...], bytes | bytearray]], int]:
        """The complete frames in ``data`` from ``pos`` on, and where the rest begins.

        Returns:
            Each complete frame as its header's fields and its body (a copy of that slice of
            ``data``, of its type), in order; and the offset just past the last of them, where
            an incomplete frame (or nothing) begins. ``data`` is not changed.
        """
        frames: list[tuple[tuple[Any, ...], bytes | bytearray]] = []
        size = self.size
        end_of_data = len(data)
        unpack = self._unpack_from
        at = self._length_at
        while end_of_data - pos >= size:
            fields = unpack(data, pos)
            end = pos + size + fields[at]
            if end > end_of_data:
                break
            frames.append((fields, data[pos + size : end]))
            pos = end
        return frames, pos

    def read(self, stream: BinaryIO) -> tuple[tuple[Any, ...], bytes] | None:
        """Read one frame from a blocking stream: its header's fields and its body; None at
        end of stream, or when the stream ends inside the frame."""
        header = stream.read(self.size)
        if len(header) < self.size:
            return None
        fields = self.header.unpack(header)
        length = fields[self._length_at]
        body = stream.read(length)
        if len(body) < length:
            return None
        return fields, body
