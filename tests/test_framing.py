"""The frame layout the worker protocols share (``_framing.Framing``): splitting a byte
stream into frames, reading one from a blocking stream, and the layouts built on it."""

from __future__ import annotations

import io

from logosq_os_scheduler._framing import Framing
from logosq_os_scheduler.executors._process import _wire


def test_split_returns_complete_frames_and_where_the_rest_begins() -> None:
    f = Framing("<BQ", length_at=1)
    data = f.header.pack(1, 3) + b"abc" + f.header.pack(2, 0) + f.header.pack(3, 5) + b"xy"
    frames, end = f.split(data)
    assert frames == [((1, 3), b"abc"), ((2, 0), b"")]
    assert end == 2 * f.size + 3  # the third frame is incomplete: it starts there
    assert f.split(data, end) == ([], end)
    assert f.body_length(data, end) == 5
    # A header cut short is not a frame either.
    assert f.split(data[: f.size - 1]) == ([], 0)


def test_split_keeps_the_type_of_the_buffer() -> None:
    f = Framing(">Q", length_at=0)
    frames, _ = f.split(bytearray(f.header.pack(2) + b"hi"))
    assert frames == [((2,), bytearray(b"hi"))]
    assert isinstance(frames[0][1], bytearray)


def test_read_takes_one_frame_and_none_at_a_cut_or_the_end() -> None:
    f = Framing(">Q", length_at=0)
    stream = io.BytesIO(f.header.pack(2) + b"ok" + f.header.pack(4) + b"cu")
    assert f.read(stream) == ((2,), b"ok")
    assert f.read(stream) is None  # the body ends inside the frame
    assert f.read(io.BytesIO(b"")) is None


def test_the_process_executor_frames_are_framings_with_their_old_bytes() -> None:
    assert _wire._TO_WORKER.header is _wire._HDR_IN
    assert _wire._HDR_IN.format == "<BqQQd"
    assert _wire._HDR_OUT.format == "<BqQ"
    reply = _wire._HDR_OUT.pack(_wire._OK, 7, 3) + b"abc"
    assert _wire._FROM_WORKER.split(reply) == ([((_wire._OK, 7, 3), b"abc")], len(reply))
