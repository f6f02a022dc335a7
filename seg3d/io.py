"""Artifact I/O: atomic writes for every artifact (checkpoints, engines, manifests, benchmark
results) and the SHA-256 that manifests record and loads verify. Point files: `seg3d.points`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_writer", "file_sha256", "remove_stale_temporaries", "write_atomic"]


_TMP_SUFFIX = ".tmp"  # `atomic_writer` writes ``.NAME.<random>.tmp`` beside ``NAME``


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error.

    It is written next to ``path`` (same filesystem), flushed to disk, made readable by others
    (``mkstemp`` creates mode 0600) and renamed over ``path``; on any error it is removed, so a crash
    never leaves a half-written artifact.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
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


def remove_stale_temporaries(folder: str | Path, targets: Collection[str] | None = None) -> None:
    """Remove what writes cut by a kill left in ``folder``: `atomic_writer`'s unfinished copies
    (never a complete file), of every target or only of the file names in ``targets``."""
    for stale in Path(folder).glob(f".*{_TMP_SUFFIX}"):
        target = stale.name[1:].rsplit(".", 2)[0]  # .NAME.<random>.tmp -> NAME
        if targets is None or target in targets:
            stale.unlink(missing_ok=True)


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
