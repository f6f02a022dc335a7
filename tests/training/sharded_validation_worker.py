"""Worker of ``test_gpu_paths.py``'s sharded-validation test: one process alone, or each of two
under ``torchrun`` (gloo). Validates a seeded tiny encoder on the synthetic data set's ``mini_val``
with `training.evaluation.evaluate_sharded`, records which samples this process read, and writes
``OUT/rank<r>.json``: the indices read and the (all-reduced) confusion matrix.

Usage: ``python -m tests.training.sharded_validation_worker DATA_ROOT OUT``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from seg3d.model import Encoder3D
from training.config import TrainConfig
from training.datasets import build_dataset
from training.distributed import setup_distributed
from training.evaluation import evaluate_sharded

CONFIG = {
    "name": "sharded_validation",
    "model": "tiny",
    "branch": {"mode": "3d"},
    "data": {
        "nuscenes": {"version": "v1.0-mini", "split": "mini_train", "cameras": "none"},
        "val_split": "mini_val",
        "num_workers": 0,
    },
}


class Recording:
    """The data set, remembering every sample index read."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        self.read.append(int(index))
        return self.dataset[index]

    def file_points(self, index: int):
        return self.dataset.file_points(index)

    def read_labels(self, index: int, count: int):
        return self.dataset.read_labels(index, count)


def main(data_root: str, out: str) -> None:
    torch.set_num_threads(1)
    env = setup_distributed("cpu")
    try:
        config = TrainConfig.model_validate(CONFIG)
        dataset = Recording(build_dataset(config, data_root, config.data.val_split, training=False))
        torch.manual_seed(0)  # the same weights in every process
        encoder = Encoder3D(config.model, "table")
        encoder.present_taps = True
        matrix = evaluate_sharded(encoder, dataset, config.model, env)
        record = {
            "rank": env.rank,
            "world": env.world,
            "size": len(dataset),
            "read": dataset.read,
            "counts": matrix.counts.tolist(),
        }
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"rank{env.rank}.json").write_text(json.dumps(record))
    finally:
        env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
