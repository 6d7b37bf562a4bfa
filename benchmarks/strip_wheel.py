"""Repack a wheel without some of its files, keeping it installable.

For carrying Ray to a machine that takes at most 64 MiB of files per command (see
docs/scaling.md): Ray's wheel is about 76 MiB, of which 31 MiB is ``ray/jars/ray_dist.jar``,
needed only for Java workers. Run::

    python benchmarks/strip_wheel.py .whl/ray-*.whl --drop ray/jars/

The wheel is rewritten in place (same name) without the members under each ``--drop``
prefix, and its ``RECORD`` lists only what is left, so ``pip install`` accepts it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import zipfile
from pathlib import Path


def strip(wheel: Path, prefixes: list[str]) -> tuple[int, int]:
    """Rewrite ``wheel`` without members under ``prefixes``; returns (bytes before, after)."""
    before = wheel.stat().st_size
    fd, tmp_name = tempfile.mkstemp(suffix=".whl", dir=wheel.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                name = info.filename
                if any(name.startswith(p) for p in prefixes):
                    continue
                data = src.read(info)
                if name.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines(keepends=True)
                    kept = [line for line in lines if not any(line.startswith(p) for p in prefixes)]
                    data = "".join(kept).encode()
                # Same compression and attributes (executable bits of raylet, gcs_server).
                dst.writestr(info, data, compress_type=info.compress_type)
        tmp.replace(wheel)
    finally:
        tmp.unlink(missing_ok=True)
    return before, wheel.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument(
        "--drop", action="append", required=True, help="member prefix to leave out (repeatable)"
    )
    args = parser.parse_args()
    before, after = strip(args.wheel, args.drop)
    print(f"{args.wheel.name}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
