"""Throughput of the nuScenes loader (with images) on a generated nuScenes-format dataset.

    python bench/loader.py --data-root runs/demo-data --version v1.0-trainval --split train
    python bench/loader.py                        # generates 10 scenes × 5 samples into a temp folder

Measures samples per second of `training.data.nuscenes.NuScenesDataset.__getitem__` (one process,
no DataLoader workers) in three settings: training with one random camera (2DPASS; jitter, flip,
dropout, 3D augmentation), training with all six cameras, and 3D only (no image). Then a
DataLoader with 2 workers and the collate (which builds the encoder tables) at batch 2 for the
random-camera setting. Writes ``bench/results/loader-<machine>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from torch.utils.data import DataLoader

from seg3d.config import load_config
from seg3d.io import write_atomic
from seg3d.sysinfo import machine_info, machine_slug
from training.data.batch import collate
from training.data.nuscenes import NuScenesDataset, NuScenesOptions


def _rate(dataset: NuScenesDataset, count: int) -> float:
    dataset[0]  # warm-up (file cache, first image decode)
    start = time.perf_counter()
    for i in range(count):
        dataset[i % len(dataset)]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root", type=Path, default=None, help="nuScenes-layout root (default: generate)"
    )
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--split", default="mini_train")
    parser.add_argument("--samples", type=int, default=40, help="samples timed per setting")
    parser.add_argument("--config", default="tiny", help="model config (crop range, tables for collate)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            from training.data.synthetic import generate

            root = Path(tmp) / "nuscenes"
            generate(root, scenes=10, samples_per_scene=5, seed=0, version="v1.0-mini")
        config = load_config(args.config)
        base = NuScenesOptions(version=args.version, split=args.split)
        settings = {
            "train, 1 random camera": (base, True),
            "train, 6 cameras": (base.model_copy(update={"cameras": "all"}), True),
            "train, 3D only": (base.model_copy(update={"cameras": "none"}), True),
            "eval, 1 random camera": (base, False),
        }
        rows = {}
        for name, (options, training) in settings.items():
            dataset = NuScenesDataset(root, config, options, training=training)
            rows[name] = _rate(dataset, args.samples)
            print(f"{name}: {rows[name]:.2f} samples/s")
        dataset = NuScenesDataset(root, config, base, training=True)
        loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=partial(collate, config=config))
        start, seen = time.perf_counter(), 0
        for batch in loader:
            seen += len(batch.names)
            if seen >= args.samples:
                break
        rows["DataLoader, 2 workers, collate, batch 2, 1 camera"] = seen / (time.perf_counter() - start)
        print(f"DataLoader: {rows['DataLoader, 2 workers, collate, batch 2, 1 camera']:.2f} samples/s")
    info = machine_info()
    slug = machine_slug(info)
    result = {
        "machine": info,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_root": str(args.data_root or "generated: 10 scenes × 5 samples, seed 0, v1.0-mini"),
        "config": args.config,
        "samples_per_setting": args.samples,
        "samples_per_s": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / f"loader-{slug}.json", json.dumps(result, indent=2))
    lines = [
        f"# nuScenes loader throughput on {info['cpu']} ({info['logical_cores']} cores)",
        "",
        f"{result['date']}; data: {result['data_root']}; crop/tables of `{args.config}`; images 1600×900 JPEG "
        "resized to 400×240.",
        "",
        "| setting | samples/s |",
        "|---|---:|",
        *[f"| {name} | {rate:.2f} |" for name, rate in rows.items()],
    ]
    write_atomic(args.out / f"loader-{slug}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
