"""Local Object Branch: segment softmax, class-aware attention, selection, parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.model.config import LOBAttention
from training.model.lob import BoxSelection, LOBScale, LocalObjectBranch, segment_softmax
from training.model.msfskd import MSFSKD


def test_segment_softmax_sums_to_one_per_segment_and_is_stable() -> None:
    scores = torch.tensor([1e4, 1e4 - 1.0, 3.0, -2.0, 0.5, -1e4])
    segment = torch.tensor([0, 0, 1, 1, 1, 2])
    weights = segment_softmax(scores, segment, 3)
    assert torch.isfinite(weights).all()
    sums = torch.zeros(3).index_add(0, segment, weights)
    assert torch.allclose(sums, torch.ones(3))
    assert weights[5].item() == 1.0  # a one-point segment
    assert torch.allclose(weights[:2], torch.softmax(torch.tensor([1.0, 0.0]), 0))
    assert torch.allclose(weights[2:5], torch.softmax(scores[2:5], 0))


def _selection(point_box: list[int], box_class: list[int]) -> BoxSelection:
    return BoxSelection.from_point_box(torch.tensor(point_box), torch.tensor(box_class), 6)


def test_selection_compacts_boxes_and_checks_classes() -> None:
    selection = _selection([-1, 4, 2, -1, 4, 2, 2], [0, 1, 5, 3, 4])
    assert selection.rows.tolist() == [1, 2, 4, 5, 6]
    assert selection.segment.tolist() == [1, 0, 1, 0, 0]  # box 2 -> 0, box 4 -> 1
    assert selection.segment_class.tolist() == [5, 4]
    with pytest.raises(ValueError, match="lob_classes"):
        _selection([0], [6])


def _reference_scale(
    lob: LOBScale, f3d: torch.Tensor, f2d: torch.Tensor, selection: BoxSelection
) -> torch.Tensor:
    """§5.2 written box by box with plain torch.softmax, as an independent check of the vectorised form
    (``box_token``: the pooled token is fused; ``point_weights``: each point's weighted feature)."""
    logits = torch.empty(selection.num_selected, lob.head[-1].out_features)
    for b in range(selection.num_boxes):
        mine = torch.nonzero(selection.segment == b).flatten()
        rows = selection.rows[mine]
        h = F.leaky_relu(lob.fuse(torch.cat([f3d[rows], f2d[rows]], 1)), 0.1)
        e = lob.point_embed(h)
        emb = lob.class_embed.weight[selection.segment_class[b]]
        s = (e @ emb) / torch.clamp(e.norm(dim=1) * emb.norm(), min=1e-8)
        w = torch.softmax(s / lob.tau, 0)
        weighted = w[:, None] * h
        context = weighted.sum(0).expand_as(h) if lob.attention == "box_token" else weighted
        f = h + lob.out(torch.cat([h, context], 1))
        logits[mine] = lob.head(f)
    return logits


@pytest.mark.parametrize("attention", ["box_token", "point_weights"])
def test_lob_scale_matches_the_box_by_box_definition(attention: LOBAttention) -> None:
    lob = LOBScale(
        channels=8, dim=4, num_box_classes=6, tau=0.1, head_hidden=16, num_classes=17, attention=attention
    )
    f3d, f2d = torch.randn(12, 8), torch.randn(12, 8)
    selection = _selection([0, -1, 3, 3, 0, 1, -1, 3, 0, 0, -1, 1], [2, 5, 0, 2])
    out = lob(f3d, f2d, selection)
    assert out.logits.shape == (9, 17)
    assert torch.allclose(out.logits, _reference_scale(lob, f3d, f2d, selection), atol=1e-5)


def test_attention_weights_sum_to_one_per_box_and_a_lone_point_gets_one() -> None:
    lob = LOBScale(channels=8, dim=4, num_box_classes=6, tau=0.1, head_hidden=16, num_classes=17)
    selection = _selection([2, 0, 0, -1, 0, 2, 7, 2], [1, 0, 3, 0, 0, 0, 0, 4])
    out = lob(torch.randn(8, 8), torch.randn(8, 8), selection)
    sums = torch.zeros(selection.num_boxes).index_add(0, selection.segment, out.weights)
    assert torch.allclose(sums, torch.ones(selection.num_boxes))
    lone = selection.rows.tolist().index(6)  # the only point of box 7
    assert out.weights[lone].item() == 1.0


def test_points_outside_boxes_do_not_affect_the_output() -> None:
    lob = LOBScale(channels=8, dim=4, num_box_classes=6, tau=0.1, head_hidden=16, num_classes=17)
    point_box = [1, -1, 0, -1, 1, 1, -1, 0]
    selection = _selection(point_box, [3, 4])
    f3d, f2d = torch.randn(8, 8), torch.randn(8, 8)
    before = lob(f3d, f2d, selection).logits
    outside = torch.tensor(point_box) < 0
    f3d[outside] = torch.randn(int(outside.sum()), 8) * 100
    f2d[outside] = float("nan")
    after = lob(f3d, f2d, selection).logits
    assert torch.equal(before, after)


def test_branch_parameter_counts_at_the_full_config() -> None:
    lob = LocalObjectBranch(channels=256, num_scales=6, head_hidden=128, num_classes=17)
    per_scale = {
        "fuse": 512 * 256 + 256,  # W_h, 2C -> C with bias
        "point_embed": 256 * 128,  # W_e, no bias
        "class_embed": 6 * 128,  # one D-wide row per interest class
        "out": 512 * 256,  # W_o, no bias
        "head": 256 * 128 + 128 + 128 * 17 + 17,
    }
    assert sum(p.numel() for p in lob.scales[0].parameters()) == sum(per_scale.values()) == 331_025
    aux = 256 * 128 + 128 + 128 * 17 + 17
    seg2d = 4 * 256 * 128 + 128 + 128 * 17 + 17
    assert sum(p.numel() for p in lob.parameters()) == 6 * (331_025 + aux) + seg2d == 2_330_077
    msfskd = MSFSKD(channels=256, num_scales=6, head_hidden=128, num_classes=17)
    assert sum(p.numel() for p in msfskd.parameters()) == 2_197_469  # docs/architecture.md §4


def test_point_weights_fuse_each_points_own_feature() -> None:
    """``point_weights`` has the token path's parameters, so one state dict serves both; a box of one
    point (weight 1) fuses the same context either way, a larger box does not."""
    token = LOBScale(channels=8, dim=4, num_box_classes=6, tau=0.1, head_hidden=16, num_classes=17)
    weights = LOBScale(
        channels=8,
        dim=4,
        num_box_classes=6,
        tau=0.1,
        head_hidden=16,
        num_classes=17,
        attention="point_weights",
    )
    weights.load_state_dict(token.state_dict())
    selection = _selection([0, 1, 1, 1, -1], [2, 4])
    f3d, f2d = torch.randn(5, 8), torch.randn(5, 8)
    a, b = token(f3d, f2d, selection), weights(f3d, f2d, selection)
    assert a.logits.shape == b.logits.shape == (4, 17)
    assert torch.equal(a.weights, b.weights)
    assert torch.allclose(a.logits[0], b.logits[0], atol=1e-6)  # the lone point of box 0
    assert not torch.allclose(a.logits[1:], b.logits[1:])
    with pytest.raises(ValueError, match="unknown LOB attention"):
        LOBScale(8, 4, 6, 0.1, 16, 17, attention="mean")  # type: ignore[arg-type]
