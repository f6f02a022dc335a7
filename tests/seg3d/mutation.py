"""Mutating a point file with a text header (PCD, PLY) for the readers' property tests: what either
reader may raise on a broken file is `PointsError`, nothing else."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st

from seg3d.points import PointFormat, PointsError, decode_points

__all__ = ["check_only_points_errors", "mutate"]


def mutate(draw: st.DrawFn, data: bytes, header_end: bytes, tokens: Sequence[str]) -> bytes:
    """1–4 edits of ``data``: a header word replaced by one of ``tokens`` (the header ends at the
    first ``header_end``), a byte changed, bytes deleted or inserted, or the file cut short."""
    out = bytearray(data)
    end = out.index(header_end)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(out)))
        action = draw(st.sampled_from(["token", "byte", "delete", "insert", "truncate"]))
        if action == "token":
            words = out[:end].split(b" ")
            i = draw(st.integers(0, len(words) - 1))
            words[i] = draw(st.sampled_from(tokens)).encode()
            out = bytearray(b" ".join(words)) + out[end:]
            end = max(0, out.find(header_end))
        elif action == "byte" and where < len(out):
            out[where] = draw(st.integers(0, 255))
        elif action == "delete":
            del out[where : where + draw(st.integers(1, 16))]
        elif action == "insert":
            out[where:where] = draw(st.binary(min_size=1, max_size=8))
        else:
            del out[where:]
    return bytes(out)


def check_only_points_errors(
    data: bytes, fmt: PointFormat, allow_missing: bool, max_points: int | None
) -> None:
    """Decoding ``data`` either raises a `PointsError` naming the source or gives finite ``(N, 4)``
    float32 points."""
    try:
        points = decode_points(data, fmt, 255.0, max_points=max_points, allow_missing_intensity=allow_missing)
    except PointsError as exc:
        assert exc.code and str(exc).startswith("body")
    else:
        assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 4
        assert np.isfinite(points).all()
