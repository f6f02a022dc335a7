"""Same seed and arguments: byte-identical files, whatever the number of workers; another seed differs."""

from __future__ import annotations

from pathlib import Path

import pytest

import training.data.synthetic.generator as generator
from training.data.synthetic import generate


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_the_same_bytes_with_any_worker_count(tmp_path: Path) -> None:
    generate(tmp_path / "one", scenes=2, samples_per_scene=1, seed=7, workers=1)
    generate(tmp_path / "two", scenes=2, samples_per_scene=1, seed=7, workers=2)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(one) == 2 * 7 + 2 + 14 + 2 + 1  # keyframe files, lidarseg labels, tables, two maps, recipe
    assert one.keys() == two.keys()
    assert [name for name in one if one[name] != two[name]] == []


def test_another_seed_gives_another_dataset(tmp_path: Path) -> None:
    generate(tmp_path / "a", scenes=1, samples_per_scene=1, seed=7, workers=1, version="v1.0-mini")
    generate(tmp_path / "b", scenes=1, samples_per_scene=1, seed=8, workers=1, version="v1.0-mini")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    sweeps = [[v for k, v in files.items() if k.startswith("samples/LIDAR_TOP/")] for files in (a, b)]
    assert len(sweeps[0]) == len(sweeps[1]) == 1 and sweeps[0] != sweeps[1]
    assert a["v1.0-mini/scene.json"] != b["v1.0-mini/scene.json"]  # tokens depend on the seed


def test_a_failed_run_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail_on_second(task):
        calls.append(task.sample)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(task)

    real = generator.make_keyframe
    monkeypatch.setattr(generator, "make_keyframe", fail_on_second)
    (tmp_path / "data").mkdir()  # an empty destination may be used
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path / "data", scenes=1, samples_per_scene=2, workers=1)
    assert [p.name for p in tmp_path.iterdir()] == ["data"] and not list((tmp_path / "data").iterdir())
