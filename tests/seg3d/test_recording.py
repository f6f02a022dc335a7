"""Rerun recordings: read back by rerun itself, they hold every point with its class id and an
annotation context naming and colouring every class; without rerun-sdk the error says how to
install it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from seg3d.classes import NUSCENES_LIDARSEG, SEMANTICKITTI
from seg3d.recording import (
    ENTITY,
    RerunMissingError,
    recording_bytes,
    recording_content,
    write_recording,
)


def read_recording(path: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, tuple[int, int, int]]]]:
    """Positions, class ids and the annotation context's classes of a ``.rrd``, read by rerun's own
    reader (``rerun.dataframe.load_recording``); skips where the installed rerun has none."""
    dataframe = pytest.importorskip("rerun.dataframe", reason="this rerun-sdk has no .rrd reader")
    recording = dataframe.load_recording(str(path))
    table = recording.view(index="log_time", contents="/**").select().read_all()

    def column(entity: str, field: str):
        for i, f in enumerate(table.schema):
            meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
            if meta.get("rerun.entity_path") == entity and meta.get("rerun.archetype_field") == field:
                values = [v for v in table.column(i).to_pylist() if v is not None]
                assert len(values) == 1, f"{entity} {field}: one row expected, got {len(values)}"
                return values[0]
        raise AssertionError(f"no {field} column at {entity}: {table.schema.names}")

    positions = np.asarray(column("/" + ENTITY, "positions"), dtype=np.float32)
    class_ids = np.asarray(column("/" + ENTITY, "class_ids"))
    context = []
    (described,) = column("/", "context")  # one annotation context: a list of class descriptions
    for entry in described:
        info = entry["class_description"]["info"]
        rgba = info["color"]
        context.append(
            (info["id"], info["label"], ((rgba >> 24) & 255, (rgba >> 16) & 255, (rgba >> 8) & 255))
        )
    return positions, class_ids, context


@pytest.fixture(scope="module")
def rerun():
    return pytest.importorskip("rerun", reason="rerun-sdk (the viz extra) is not installed")


def test_a_real_scan_reads_back_with_its_class_ids_and_class_names(
    rerun, nuscenes_scans, tmp_path: Path
) -> None:
    points = nuscenes_scans[0].points.numpy()
    labels = np.random.default_rng(0).integers(1, len(NUSCENES_LIDARSEG), points.shape[0])
    path = tmp_path / "scan.rrd"
    write_recording(path, points, labels, NUSCENES_LIDARSEG, name="scan")
    assert path.read_bytes()[:3] == b"RRF"  # rerun's file header
    positions, class_ids, context = read_recording(path)
    assert np.array_equal(positions, points[:, :3])  # every point, in input order
    assert np.array_equal(class_ids, labels)
    assert context == [
        (i, n, c)
        for i, (n, c) in enumerate(zip(NUSCENES_LIDARSEG.names, NUSCENES_LIDARSEG.colours, strict=True))
    ]


def test_the_class_table_is_the_model_s(rerun, tmp_path: Path) -> None:
    points = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    labels = np.arange(50) % len(SEMANTICKITTI)
    path = tmp_path / "kitti.rrd"
    path.write_bytes(recording_bytes(points, labels, SEMANTICKITTI))
    _, class_ids, context = read_recording(path)
    assert np.array_equal(class_ids, labels)
    assert [name for _, name, _ in context] == list(SEMANTICKITTI.names)
    assert [colour for _, _, colour in context] == list(SEMANTICKITTI.colours)


def test_content_checks_its_input() -> None:
    content = recording_content(np.zeros((3, 5)), np.array([1, 2, 3]), NUSCENES_LIDARSEG)
    assert content.positions.shape == (3, 3) and content.class_ids.tolist() == [1, 2, 3]
    assert content.classes[4] == (4, "car", (255, 158, 0))
    with pytest.raises(ValueError, match="need"):
        recording_content(np.zeros((3, 4)), np.array([1, 2]), NUSCENES_LIDARSEG)
    with pytest.raises(ValueError, match="outside"):
        recording_content(np.zeros((1, 4)), np.array([17]), NUSCENES_LIDARSEG)


def test_without_rerun_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rerun", None)  # `import rerun` now raises ImportError
    with pytest.raises(RerunMissingError, match=r"pip install -e '\.\[viz\]'"):
        recording_bytes(np.zeros((1, 4)), np.array([1]), NUSCENES_LIDARSEG)


def test_a_rerun_failure_is_an_error_not_a_dropped_recording(rerun, monkeypatch: pytest.MonkeyPatch) -> None:
    """rerun drops what it cannot convert with a warning by default (0.23 under numpy 1 dropped every
    annotation context so); here it raises, and rerun's strict mode is left as it was."""
    import rerun.error_utils

    def broken(*args, **kwargs):
        raise TypeError("asarray() got an unexpected keyword argument 'copy'")

    monkeypatch.setattr(rerun, "AnnotationInfo", broken)
    before = rerun.error_utils.strict_mode()
    with pytest.raises(RuntimeError, match="could not record: TypeError"):
        recording_bytes(np.zeros((2, 4)), np.array([1, 2]), NUSCENES_LIDARSEG)
    assert rerun.error_utils.strict_mode() == before
