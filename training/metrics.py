"""Segmentation metrics: a confusion matrix over the training classes and the IoU it gives.

The nuScenes-lidarseg rule (`docs/architecture.md` §6): points labelled 0 (ignore) are left out; a
prediction of 0 counts as a miss for the true class but as nobody's false positive; IoU_c =
TP / (TP + FP + FN) over classes 1…K; mIoU is the mean over the classes that occur in the labels or
the predictions (a class absent from both has no IoU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ConfusionMatrix", "IoUReport"]


@dataclass(frozen=True)
class IoUReport:
    """Per-class IoU (NaN for a class that never occurs) and the means over groups of classes."""

    class_names: tuple[str, ...]  # classes 1…K
    iou: tuple[float, ...]
    accuracy: float  # over labelled points

    @property
    def miou(self) -> float:
        return _nanmean(self.iou)

    def group_miou(self, names: Sequence[str]) -> float:
        """Mean IoU over the named classes (NaN entries skipped)."""
        unknown = set(names) - set(self.class_names)
        if unknown:
            raise ValueError(f"unknown classes {sorted(unknown)}")
        return _nanmean([v for n, v in zip(self.class_names, self.iou, strict=True) if n in names])

    def as_dict(self) -> dict[str, object]:
        return {
            "miou": self.miou,
            "accuracy": self.accuracy,
            "iou": {n: (None if np.isnan(v) else v) for n, v in zip(self.class_names, self.iou, strict=True)},
        }

    def table(self, groups: dict[str, Sequence[str]] | None = None) -> str:
        """A Markdown table of the per-class IoU (percent), then mIoU and any named group means."""
        lines = ["| class | IoU % |", "|---|---:|"]
        lines += [f"| {n} | {_pct(v)} |" for n, v in zip(self.class_names, self.iou, strict=True)]
        lines.append(f"| **mIoU** | **{_pct(self.miou)}** |")
        for label, names in (groups or {}).items():
            lines.append(f"| mIoU {label} | {_pct(self.group_miou(names))} |")
        return "\n".join(lines)


def _nanmean(values: Sequence[float]) -> float:
    array = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(array)) if np.isfinite(array).any() else float("nan")


def _pct(value: float) -> str:
    return "—" if np.isnan(value) else f"{100 * value:.1f}"


class ConfusionMatrix:
    """Counts of (label, prediction) pairs over ``num_classes`` classes, class 0 = ignore."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError("need at least one class besides ignore")
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        """Add ``(N,)`` predicted and true class ids (int); points labelled 0 are skipped."""
        if predictions.shape != labels.shape:
            raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
        labels, predictions = labels.reshape(-1).long().cpu(), predictions.reshape(-1).long().cpu()
        keep = labels > 0
        k = self.num_classes
        if bool(((labels < 0) | (labels >= k) | (predictions < 0) | (predictions >= k)).any()):
            raise ValueError(f"class ids must lie in [0, {k})")
        pairs = labels[keep] * k + predictions[keep]
        self.counts += torch.bincount(pairs, minlength=k * k).view(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        self.counts += other.counts

    def report(self, class_names: Sequence[str]) -> IoUReport:
        """IoU per class 1…K; ``class_names`` lists all classes including ignore (index 0)."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        counts = self.counts.double()
        tp = counts.diagonal()[1:]
        fn = counts[1:].sum(1) - tp  # includes predictions of 0
        fp = counts[1:, 1:].sum(0) - tp  # a prediction of 0 is nobody's false positive
        union = tp + fp + fn
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        labelled = float(counts[1:].sum())
        accuracy = float(tp.sum()) / labelled if labelled else float("nan")
        return IoUReport(tuple(class_names[1:]), tuple(float(v) for v in iou), accuracy)
