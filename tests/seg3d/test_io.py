from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from seg3d.io import atomic_writer, file_sha256, remove_stale_temporaries, write_atomic


def test_atomic_writer_commits_only_on_success(tmp_path) -> None:
    target = tmp_path / "artifact.bin"
    write_atomic(target, b"first")
    assert target.read_bytes() == b"first" and (target.stat().st_mode & 0o777) == 0o644
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"first"  # the old content survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.bin"]  # no temporary left behind


def test_file_sha256_reads_past_one_chunk(tmp_path) -> None:
    data = bytes(range(256)) * 5000  # > 1 MiB: several chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_stale_temporaries_of_cut_writes_are_removed_never_a_complete_file(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a.bin", b"done")
    for name in (".a.bin.x1y2.tmp", ".b.bin.k3j4.tmp", ".c.label.zz.tmp"):
        (tmp_path / name).write_bytes(b"cut")
    (tmp_path / "notes.tmp").write_bytes(b"not ours")  # not atomic_writer's pattern
    remove_stale_temporaries(tmp_path, {"a.bin", "c.label"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.bin.k3j4.tmp", "a.bin", "notes.tmp"]
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "notes.tmp"]
    assert (tmp_path / "a.bin").read_bytes() == b"done"
    remove_stale_temporaries(tmp_path / "absent")  # nothing to do
