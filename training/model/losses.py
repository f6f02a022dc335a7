"""Segmentation losses of every training term: cross-entropy + Lovász-softmax (`docs/architecture.md` §4).

Lovász-softmax (Berman, Rannen Triki, Blaschko, CVPR 2018) is the Lovász extension of the Jaccard
loss, evaluated at the vector of per-point errors. For one class ``c`` with ground truth
``fg_i = [y_i = c]`` and probability ``p_i(c)``:

- errors ``m_i = |fg_i − p_i(c)|``, sorted in decreasing order (permutation ``π``);
- with ``G = Σ fg`` and cumulative sums over the sorted order,
  ``J_k = 1 − (G − Σ_{j≤k} fg_π(j)) / (G + Σ_{j≤k} (1 − fg_π(j)))``
  is the Jaccard loss when the first ``k`` sorted points are the mispredicted ones;
- ``loss_c = Σ_k m_π(k) · (J_k − J_{k−1})`` with ``J_0 = 0``.

As in 2DPASS the ignore label's points are removed first, only classes present among the remaining
labels count, and the result is the mean over those classes for the whole batch at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_kl", "graph_zero", "lovasz_softmax", "seg_loss"]


def graph_zero(reference: torch.Tensor) -> torch.Tensor:
    """An exact scalar ``0`` that stays attached to ``reference``'s graph.

    Summing an empty slice is exactly zero even when ``reference`` holds Inf or NaN (``0 · x`` is not),
    and ``backward`` through it runs and writes zero gradients.
    """
    return reference.flatten()[:0].sum()


def _jaccard_steps(fg_sorted: torch.Tensor) -> torch.Tensor:
    """``J_k − J_{k−1}`` per column of ``fg_sorted`` (``(N, K)`` 0/1, rows in sorted-error order)."""
    total = fg_sorted.sum(dim=0)
    intersection = total - fg_sorted.cumsum(dim=0)
    union = total + (1.0 - fg_sorted).cumsum(dim=0)
    # union >= 1 on every row of a present class (G >= 1), so the division is safe there.
    jaccard = 1.0 - intersection / union.clamp(min=1.0)
    steps = jaccard.clone()
    steps[1:] = jaccard[1:] - jaccard[:-1]
    return steps


def lovasz_softmax(
    probabilities: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = 0
) -> torch.Tensor:
    """Multi-class Lovász-softmax over the whole batch.

    Args:
        probabilities: ``(N, K)`` class probabilities (softmax outputs).
        labels: ``(N,)`` int64 class ids.
        ignore_index: label whose points are removed before anything else; None keeps all.

    Returns:
        Scalar mean of ``loss_c`` over the classes present in the kept labels; an exact zero attached
        to the graph when no point is kept.
    """
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(
            f"expected probabilities (N, K) and labels (N,), got {tuple(probabilities.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if ignore_index is not None:
        keep = labels != ignore_index
        probabilities, labels = probabilities[keep], labels[keep]
    if labels.numel() == 0:
        return graph_zero(probabilities)
    num_classes = probabilities.shape[1]
    present = torch.bincount(labels, minlength=num_classes) > 0
    fg = F.one_hot(labels, num_classes)[:, present].to(probabilities.dtype)
    errors = (fg - probabilities[:, present]).abs()
    errors_sorted, order = errors.sort(dim=0, descending=True)
    # The Jaccard steps depend on the order only: a constant of the (piecewise-linear) extension.
    steps = _jaccard_steps(fg.gather(0, order))
    return (errors_sorted * steps).sum(dim=0).mean()


def seg_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    lovasz_weight: float = 1.0,
    ignore_index: int = 0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``CE(logits, labels) + lovasz_weight · Lovász-softmax(softmax(logits), labels)``.

    Both parts ignore ``ignore_index``. ``class_weights`` (``(K,)``) weights the cross-entropy only,
    as 2DPASS does for SemanticKITTI. Returns an exact zero attached to the graph when ``logits`` is
    empty or every label is ignored (plain cross-entropy would give 0/0 = NaN).
    """
    if labels.numel() == 0 or not bool((labels != ignore_index).any()):
        return graph_zero(logits)
    ce = F.cross_entropy(logits, labels, weight=class_weights, ignore_index=ignore_index)
    if lovasz_weight == 0:
        return ce
    return ce + lovasz_weight * lovasz_softmax(F.softmax(logits, dim=1), labels, ignore_index)


def distillation_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(teacher).detach() ‖ softmax(student))`` averaged over all ``N × K`` elements.

    The element-wise mean is 2DPASS's ``F.kl_div(..., reduction="mean")``; it is written out here
    because that call warns on every use. The teacher is detached: no gradient reaches it or
    anything before it. Zero attached to the student's graph when there is no row.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"teacher {tuple(teacher_logits.shape)} and student {tuple(student_logits.shape)} differ"
        )
    if student_logits.shape[0] == 0:
        return graph_zero(student_logits)
    target = F.softmax(teacher_logits.detach(), dim=1)
    # xlogy gives 0 · log 0 = 0 where a teacher probability underflows to zero.
    return (torch.xlogy(target, target) - target * F.log_softmax(student_logits, dim=1)).mean()
