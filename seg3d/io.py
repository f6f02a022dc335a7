"""Artifact I/O: atomic writes for every artifact (checkpoints, engines, manifests, benchmark
results) and the SHA-256 that manifests record and loads verify. Point files: `seg3d.points`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_writer", "file_sha256", "write_atomic"]


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error.

    It is written next to ``path`` (same filesystem), flushed to disk, made readable by others
    (``mkstemp`` creates mode 0600) and renamed over ``path``; on any error it is removed, so a crash
    never leaves a half-written artifact.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` with `atomic_writer`."""
    with atomic_writer(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
