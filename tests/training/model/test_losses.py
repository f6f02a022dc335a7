"""Lovász-softmax against hand computation, the combined segmentation loss, the distillation KL."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from training.model.heads import voxel_majority_labels
from training.model.losses import distillation_kl, lovasz_softmax, seg_loss


def test_lovasz_two_present_classes_by_hand() -> None:
    probabilities = torch.tensor(
        [
            [0.1, 0.6, 0.3],  # label 1
            [0.2, 0.5, 0.3],  # label 2
            [0.0, 0.2, 0.8],  # label 1
            [0.5, 0.25, 0.25],  # label 0: removed before anything else
        ]
    )
    labels = torch.tensor([1, 2, 1, 0])
    # Class 0 is absent once the ignored point is gone: only classes 1 and 2 count.
    # Class 1: fg = [1, 0, 1], p = [.6, .5, .2], errors = [.4, .5, .8].
    #   sorted errors .8 (fg 1), .5 (fg 0), .4 (fg 1); G = 2
    #   intersection = 2 - cumsum[1, 1, 2] = [1, 1, 0]; union = 2 + cumsum[0, 1, 0] = [2, 3, 3]
    #   J = 1 - [1/2, 1/3, 0] = [1/2, 2/3, 1]; steps = [1/2, 1/6, 1/3]
    #   loss_1 = .8/2 + .5/6 + .4/3 = 0.4 + 0.083333 + 0.133333 = 37/60
    # Class 2: fg = [0, 1, 0], p = [.3, .3, .8], errors = [.3, .7, .8].
    #   sorted .8 (fg 0), .7 (fg 1), .3 (fg 0); G = 1
    #   intersection = 1 - [0, 1, 1] = [1, 0, 0]; union = 1 + [1, 1, 2] = [2, 2, 3]
    #   J = 1 - [1/2, 0, 0] = [1/2, 1, 1]; steps = [1/2, 1/2, 0]
    #   loss_2 = .8/2 + .7/2 + 0 = 0.75 = 45/60
    # mean over the present classes = (37/60 + 45/60) / 2 = 41/60
    assert lovasz_softmax(probabilities, labels).item() == pytest.approx(41 / 60, abs=1e-6)


def test_lovasz_single_present_class_by_hand() -> None:
    probabilities = torch.tensor([[0.0, 0.9, 0.1], [0.0, 0.3, 0.7]])
    labels = torch.tensor([1, 1])
    # Class 1: errors [.1, .7] -> sorted .7, .1 (both fg); G = 2
    #   intersection = 2 - [1, 2] = [1, 0]; union = 2 + [0, 0] = [2, 2]; J = [1/2, 1]; steps = [1/2, 1/2]
    #   loss_1 = .7/2 + .1/2 = 0.4. Class 2 has errors but no point: not counted.
    assert lovasz_softmax(probabilities, labels).item() == pytest.approx(0.4, abs=1e-6)
    # Without the ignore rule, label 0 points count like any class.
    with_zero = torch.tensor([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0]])
    # Class 0: fg [1, 0], errors [.4, 0] -> sorted .4 (fg 1), 0 (fg 0); G = 1
    #   intersection = 1 - [1, 1] = [0, 0]; union = 1 + [0, 1] = [1, 2]; J = [1, 1]; steps = [1, 0] -> 0.4
    # Class 1: fg [0, 1], errors [.4, 0] -> sorted .4 (fg 0), 0 (fg 1); G = 1
    #   intersection = 1 - [0, 1] = [1, 0]; union = 1 + [1, 1] = [2, 2]; J = [1/2, 1]
    #   steps = [1/2, 1/2] -> .4/2 + 0/2 = 0.2
    # mean = 0.3
    result = lovasz_softmax(with_zero, torch.tensor([0, 1]), ignore_index=None)
    assert result.item() == pytest.approx(0.3, abs=1e-6)


def test_lovasz_is_zero_for_perfect_predictions() -> None:
    labels = torch.tensor([1, 3, 3, 2, 0, 1])
    perfect = F.one_hot(labels, 5).float()
    perfect[4] = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0])  # an ignored point may predict anything
    assert lovasz_softmax(perfect, labels).item() == 0.0


def test_lovasz_gradients_flow() -> None:
    logits = torch.randn(50, 6, requires_grad=True)
    labels = torch.randint(0, 6, (50,))
    lovasz_softmax(F.softmax(logits, dim=1), labels).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    kept = labels != 0
    assert logits.grad[~kept].abs().sum() == 0  # ignored points get no gradient


def test_seg_loss_is_cross_entropy_plus_weighted_lovasz() -> None:
    logits = torch.randn(40, 5)
    labels = torch.randint(0, 5, (40,))
    ce = F.cross_entropy(logits, labels, ignore_index=0)
    lovasz = lovasz_softmax(F.softmax(logits, dim=1), labels)
    assert seg_loss(logits, labels, 0.5).item() == pytest.approx((ce + 0.5 * lovasz).item(), rel=1e-6)
    assert seg_loss(logits, labels, 0.0).item() == pytest.approx(ce.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("logits", "labels"),
    [
        (torch.zeros(0, 17), torch.zeros(0, dtype=torch.int64)),
        (torch.randn(6, 17), torch.zeros(6, dtype=torch.int64)),
    ],
    ids=["empty", "all-ignored"],
)
def test_seg_loss_degenerate_inputs_give_a_zero_that_backpropagates(logits, labels) -> None:
    logits = logits.clone().requires_grad_(True)
    loss = seg_loss(logits * 2, labels)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_distillation_kl_is_elementwise_mean_and_teacher_gets_no_gradient() -> None:
    teacher = torch.randn(7, 4, requires_grad=True)
    student = torch.randn(7, 4, requires_grad=True)
    loss = distillation_kl(teacher, student)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about reduction="mean" on every call
        expected = F.kl_div(F.log_softmax(student, 1), F.softmax(teacher, 1), reduction="mean")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert distillation_kl(teacher, student).item() >= 0
    assert distillation_kl(student, student).item() == pytest.approx(0.0, abs=1e-7)
    empty = torch.zeros(0, 4, requires_grad=True)
    assert distillation_kl(empty, empty).item() == 0.0


def test_voxel_majority_labels_ties_go_to_the_lowest_class() -> None:
    labels = torch.tensor([3, 3, 1, 2, 2, 5, 0, 0, 4, 4, 1])
    inverse = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    # voxel 0: 3,3,1 -> 3; voxel 1: 2,2,5 -> 2; voxel 2: 0,0 -> 0 (allowed, ignored by the loss);
    # voxel 3: 4,4,1 -> 4; voxel 4: no point -> 0
    assert voxel_majority_labels(labels, inverse, 5, 6).tolist() == [3, 2, 0, 4, 0]
    tie = voxel_majority_labels(torch.tensor([5, 2, 5, 2, 0]), torch.zeros(5, dtype=torch.int64), 1, 6)
    assert tie.tolist() == [2]
