"""Confusion matrix and IoU under the nuScenes-lidarseg rules, against hand counts."""

from __future__ import annotations

import math

import pytest
import torch

from training.metrics import ConfusionMatrix

NAMES = ("ignore", "a", "b", "c")


def test_iou_follows_the_lidarseg_rules() -> None:
    matrix = ConfusionMatrix(4)
    labels = torch.tensor([1, 1, 1, 2, 2, 0, 0, 1])
    preds = torch.tensor([1, 2, 0, 2, 1, 3, 1, 1])
    matrix.update(preds, labels)
    report = matrix.report(NAMES)
    # a: TP 2 (rows 0, 7), FN 2 (pred 2, pred 0), FP 1 (row 4) → 2/5
    # b: TP 1, FN 1, FP 1 → 1/3; c: never labelled, predicted only on ignored points → no IoU
    assert report.iou[0] == pytest.approx(2 / 5) and report.iou[1] == pytest.approx(1 / 3)
    assert math.isnan(report.iou[2])
    assert report.miou == pytest.approx((2 / 5 + 1 / 3) / 2)
    assert report.accuracy == pytest.approx(3 / 6)
    assert report.group_miou(["b"]) == pytest.approx(1 / 3)
    assert "| **mIoU** | **36.7** |" in report.table({"things": ["a"]})


def test_updates_accumulate_and_merge() -> None:
    one, two, both = ConfusionMatrix(4), ConfusionMatrix(4), ConfusionMatrix(4)
    a = (torch.tensor([1, 2, 3]), torch.tensor([1, 3, 3]))
    b = (torch.tensor([2, 2]), torch.tensor([2, 1]))
    one.update(*a)
    two.update(*b)
    both.update(*a)
    both.update(*b)
    one.merge(two)
    assert torch.equal(one.counts, both.counts)


def test_bad_inputs_are_rejected() -> None:
    matrix = ConfusionMatrix(4)
    with pytest.raises(ValueError, match="predictions for"):
        matrix.update(torch.tensor([1, 2]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        matrix.update(torch.tensor([4]), torch.tensor([1]))
    with pytest.raises(ValueError, match="class names"):
        matrix.report(("x", "y"))
