"""The assembled training model: every mode trains the parts it should, the KL stops at the teacher,
the 3D encoder's state dict is the checkpoint's ``encoder3d.`` part."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydantic
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from seg3d.checkpoint import Checkpoint, encoder_state_dict, load_checkpoint, save_checkpoint
from seg3d.config import ModelConfig, load_config
from seg3d.model import Encoder3D
from training.data.batch import Batch
from training.model import BranchConfig, TrainingModel, build_training_model, parameter_counts
from training.model.branch_inputs import build_branch_inputs, image_scale_index
from training.model.image_encoder import ResNet34, SmallBackbone

from .samples import make_batch

MODES = ("3d", "2dpass", "2ddata")


@pytest.fixture(scope="module")
def tiny() -> ModelConfig:
    return load_config("tiny")


@pytest.fixture(scope="module")
def batch(tiny: ModelConfig) -> Batch:
    return make_batch(tiny)


def _model(mode: str, config: ModelConfig, **fields: object) -> TrainingModel:
    torch.manual_seed(0)
    return build_training_model(config, BranchConfig(mode=mode, **fields))  # type: ignore[arg-type]


def _grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def _scale_terms(num_scales: int) -> set[str]:
    return {f"{kind}/{i}" for kind in ("aux3d", "fused", "kl") for i in range(num_scales)}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_trains_its_parts(mode: str, tiny: ModelConfig, batch: Batch) -> None:
    model = _model(mode, tiny)
    out = model(batch)
    assert out.logits.shape == (batch.points.shape[0], 17) and not out.logits.requires_grad
    expected = {"seg3d", "total"} if mode == "3d" else {"seg3d", "seg2d", "total"} | _scale_terms(4)
    assert set(out.terms) == expected
    assert all(torch.isfinite(torch.tensor(v)) for v in out.terms.values())
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert _grad_norm(model.encoder3d) > 0
    if mode == "3d":
        assert model.encoder2d is None and model.branch is None
    else:
        assert model.encoder2d is not None and _grad_norm(model.encoder2d.backbone.conv1) > 0
        assert _grad_norm(model.encoder2d.decoders) > 0


@pytest.mark.parametrize("mode", ["2dpass", "2ddata"])
def test_total_is_the_weighted_sum_of_the_terms(mode: str, tiny: ModelConfig, batch: Batch) -> None:
    config = BranchConfig(mode=mode, kl_weight=2.0)  # type: ignore[arg-type]
    with torch.no_grad():
        terms = TrainingModel(tiny, config)(batch).terms
    weighted = sum(config.term_weight(k, 4) * v for k, v in terms.items() if k != "total")
    assert terms["total"] == pytest.approx(weighted, rel=1e-5)
    assert config.term_weight("kl/3", 4) == 0.5 and config.term_weight("fused/0", 6) == pytest.approx(1 / 6)
    assert BranchConfig().term_weight("kl/0", 6) == pytest.approx(0.05 / 6)


@pytest.mark.parametrize("mode", ["2dpass", "2ddata"])
def test_kl_reaches_the_student_only(mode: str, tiny: ModelConfig, batch: Batch) -> None:
    model = _model(mode, tiny)
    terms, _ = model.loss_terms(batch)
    sum(v for k, v in terms.items() if k.startswith("kl/")).backward()
    assert model.encoder2d is not None and model.branch is not None
    assert _grad_norm(model.encoder2d) == 0  # the teacher's image side
    teacher = model.branch.fusions if mode == "2dpass" else model.branch.scales
    assert _grad_norm(teacher) == 0
    if mode == "2dpass":
        assert _grad_norm(model.branch.fused_heads) == 0
    assert _grad_norm(model.branch.aux3d) > 0  # the student
    assert _grad_norm(model.encoder3d.blocks) > 0  # and the 3D features it reads


def test_a_batch_without_selected_points_gives_zero_lob_terms(tiny: ModelConfig) -> None:
    empty = make_batch(tiny, boxes_used=False)
    assert empty.views is not None and bool((empty.views.point_box < 0).all())
    model = _model("2ddata", tiny)
    out = model(empty)
    for i in range(4):
        assert out.terms[f"fused/{i}"] == 0.0 and out.terms[f"kl/{i}"] == 0.0
    out.loss.backward()
    assert model.encoder2d is not None and model.branch is not None
    assert _grad_norm(model.encoder2d) > 0  # the 2D head still trains the image side
    assert _grad_norm(model.branch.aux3d) > 0
    # every LOB parameter is reached (DDP needs it), with an exactly zero gradient
    assert all(p.grad is not None and not p.grad.any() for p in model.branch.scales.parameters())


def test_branch_inputs_read_the_right_features(tiny: ModelConfig, batch: Batch) -> None:
    model = _model("2ddata", tiny).eval()
    assert model.encoder2d is not None and batch.views is not None and batch.labels is not None
    views = batch.views
    with torch.no_grad():
        output = model.encoder3d.forward_features(batch.inputs)
        inputs = build_branch_inputs(
            batch, batch.labels, output, model.encoder2d.forward_coarse(views.images), tiny
        )
        full_maps = model.encoder2d(views.images)
    assert inputs.image_scale == (0, 1, 2, 3)
    rows, cols = views.pixels[:, 0], views.pixels[:, 1]
    for got, full in zip(inputs.image_features, full_maps, strict=True):
        assert torch.equal(got, full[views.point_view, :, rows, cols])
    for i, r_prev in enumerate(tiny.encoder.conv_scales):
        expected = output.voxel_features[i][batch.inputs.voxels[r_prev].inverse[views.point_index]]
        assert torch.equal(inputs.point_features_3d(i), expected)
    assert torch.equal(inputs.point_labels, batch.labels[views.point_index])
    full_scales = load_config("nuscenes_full").encoder.scale_list
    assert [image_scale_index(s) for s in full_scales] == [0, 1, 2, 3, 3, 3]


def test_class_weights_weight_the_3d_cross_entropy(tiny: ModelConfig, batch: Batch) -> None:
    weights = torch.rand(17) + 0.5
    weights[0] = 0
    config = BranchConfig(mode="3d", lovasz_weight=0.0)
    with torch.no_grad():
        plain = TrainingModel(tiny, config)
        weighted = TrainingModel(tiny, config, weights)
        weighted.load_state_dict(plain.state_dict())  # weights derive from data: not in the state dict
        assert set(weighted.state_dict()) == set(plain.state_dict())
        logits = plain.predict_logits(batch.inputs)
        labels = batch.labels.long()
        expected = torch.nn.functional.cross_entropy(logits, labels, weight=weights, ignore_index=0)
        assert weighted(batch).terms["seg3d"] == pytest.approx(float(expected), rel=1e-5)
        assert plain(batch).terms["seg3d"] != pytest.approx(weighted(batch).terms["seg3d"], rel=1e-3)
    with pytest.raises(ValueError, match="class_weights has shape"):
        TrainingModel(tiny, config, torch.ones(20))


def test_bad_batches_are_refused(tiny: ModelConfig, batch: Batch) -> None:
    model = _model("2ddata", tiny)
    with pytest.raises(ValueError, match="needs camera views"):
        model(dataclasses.replace(batch, views=None))
    with pytest.raises(ValueError, match="needs labels"):
        model(dataclasses.replace(batch, labels=None))
    assert batch.views is not None
    bad_pixels = batch.views.pixels.clone()
    bad_pixels[0, 1] = 96
    with pytest.raises(ValueError, match="outside the 64×96 images"):
        model(dataclasses.replace(batch, views=dataclasses.replace(batch.views, pixels=bad_pixels)))
    assert _model("3d", tiny)(dataclasses.replace(batch, views=None)).terms.keys() == {"seg3d", "total"}


def test_encoder_state_dict_is_the_checkpoint_encoder_part(
    tiny: ModelConfig, batch: Batch, tmp_path: Path
) -> None:
    model = _model("2ddata", tiny).eval()
    state = model.state_dict()
    encoder_keys = set(model.encoder3d.state_dict())
    assert {k for k in state if k.startswith("encoder3d.")} == {f"encoder3d.{k}" for k in encoder_keys}
    assert all(k.split(".")[0] in {"encoder3d", "encoder2d", "branch"} for k in state)
    save_checkpoint(tmp_path / "ckpt.pt", Checkpoint(mode="2ddata", model_config=tiny, state_dict=state))
    bare = Encoder3D(tiny, "table")
    bare.load_state_dict(encoder_state_dict(load_checkpoint(tmp_path / "ckpt.pt")), strict=True)
    with torch.no_grad():
        assert torch.equal(bare.eval()(batch.inputs), model.predict_logits(batch.inputs))


def test_parameter_counts_at_the_full_config() -> None:
    full = load_config("nuscenes_full")
    counts = {mode: parameter_counts(_model(mode, full)) for mode in MODES}
    assert counts["3d"] == {"encoder3d": 45_614_865, "encoder2d": 0, "branch": 0, "total": 45_614_865}
    assert counts["2dpass"]["encoder2d"] == counts["2ddata"]["encoder2d"] == 26_433_920
    assert counts["2dpass"]["branch"] == 2_197_469
    assert counts["2ddata"]["branch"] == 2_330_077
    assert counts["2ddata"]["total"] == 45_614_865 + 26_433_920 + 2_330_077


def test_image_pretrained_initialises_the_backbone(tiny: ModelConfig, tmp_path: Path) -> None:
    torch.manual_seed(3)
    state = ResNet34().state_dict()
    path = tmp_path / "resnet34.pth"
    torch.save({**state, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, path)
    model = _model("2dpass", tiny, image_pretrained=path)
    assert model.encoder2d is not None
    assert torch.equal(model.encoder2d.backbone.layer2[1].conv2.weight, state["layer2.1.conv2.weight"])


@pytest.mark.parametrize("mode", ["2dpass", "2ddata"])
def test_the_small_image_encoder_trains_every_parameter(mode: str, tiny: ModelConfig, batch: Batch) -> None:
    model = _model(mode, tiny, image_encoder="small")
    assert model.encoder2d is not None and isinstance(model.encoder2d.backbone, SmallBackbone)
    out = model(batch)
    assert set(out.terms) == {"seg3d", "seg2d", "total"} | _scale_terms(4)
    assert all(torch.isfinite(torch.tensor(v)) for v in out.terms.values())
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert _grad_norm(model.encoder2d.backbone.stem) > 0 and _grad_norm(model.encoder2d.decoders) > 0
    assert _grad_norm(model.encoder3d) > 0
    default = _model(mode, tiny)
    assert default.encoder2d is not None and isinstance(default.encoder2d.backbone, ResNet34)
    resnet, small = parameter_counts(default), parameter_counts(model)
    assert resnet["encoder2d"] - small["encoder2d"] == 21_284_672 - 1_358_496  # backbones only differ
    assert (small["encoder3d"], small["branch"]) == (resnet["encoder3d"], resnet["branch"])


def test_image_pretrained_is_refused_for_the_small_encoder(tiny: ModelConfig, tmp_path: Path) -> None:
    path = tmp_path / "resnet34.pth"
    with pytest.raises(pydantic.ValidationError, match="torchvision resnet34 weights, which do not fit"):
        BranchConfig(mode="2dpass", image_encoder="small", image_pretrained=path)
    # model_copy(update=...) does not validate: the model refuses the pair itself
    config = BranchConfig(mode="2dpass", image_pretrained=path).model_copy(update={"image_encoder": "small"})
    with pytest.raises(ValueError, match="image_encoder 'small': drop image_pretrained"):
        TrainingModel(tiny, config)


def test_config_is_frozen_and_strict() -> None:
    config = BranchConfig()
    assert (config.mode, config.lob_dim, config.lob_tau, config.lovasz_weight) == ("2ddata", 128, 0.1, 1.0)
    assert config.image_encoder == "resnet34"
    with pytest.raises(pydantic.ValidationError):
        BranchConfig(image_encoder="resnet18")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        BranchConfig(lob_width=3)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        BranchConfig(mode="3D")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        config.mode = "3d"  # type: ignore[misc]


@pytest.mark.parametrize("mode", ["2dpass", "2ddata"])
def test_bf16_autocast_step(mode: str, tiny: ModelConfig, batch: Batch) -> None:
    """The loop trains under bf16 autocast: no dtype clash between float32 and bf16 parts."""
    model = _model(mode, tiny)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_every_parameter_is_used_for_ddp(tiny: ModelConfig) -> None:
    """DDP without find_unused_parameters fails on the next step if a parameter got no gradient:
    run two steps on a batch without selected points and with a zero KL weight."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    no_boxes = make_batch(tiny, boxes_used=False)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        for mode in ("2dpass", "2ddata"):
            wrapped = DistributedDataParallel(_model(mode, tiny, kl_weight=0.0))
            for _ in range(2):
                wrapped(no_boxes).loss.backward()
    finally:
        dist.destroy_process_group()


def test_aux3d_average_divides_the_auxiliary_weight_by_the_scales(tiny: ModelConfig, batch: Batch) -> None:
    plain = BranchConfig(aux3d_weight=0.6)
    averaged = BranchConfig(aux3d_weight=0.6, aux3d_average=True)
    assert plain.term_weight("aux3d/2", 6) == 0.6  # 2DPASS: every scale at full weight
    assert averaged.term_weight("aux3d/2", 6) == pytest.approx(0.1)
    assert averaged.term_weight("aux3d/0", 4) == pytest.approx(0.15)
    for name in ("seg3d", "seg2d", "fused/1", "kl/3"):  # the other terms are not touched
        assert averaged.term_weight(name, 6) == plain.term_weight(name, 6)
    config = averaged.model_copy(update={"mode": "2dpass"})
    with torch.no_grad():
        terms = TrainingModel(tiny, config)(batch).terms
    weighted = sum(config.term_weight(k, 4) * v for k, v in terms.items() if k != "total")
    assert terms["total"] == pytest.approx(weighted, rel=1e-5)


def test_a_2dpass_run_with_zero_branch_weights_trains_the_3d_encoder_alone(
    tiny: ModelConfig, batch: Batch
) -> None:
    """The paired 3D-only baseline: mode 2dpass with every branch weight 0 gives the 3D encoder the
    gradients mode 3d gives it (same initial weights), and still reaches every parameter (DDP)."""
    zeros = {"seg2d_weight": 0.0, "fused_weight": 0.0, "kl_weight": 0.0, "aux3d_weight": 0.0}
    paired, alone = _model("2dpass", tiny, **zeros), _model("3d", tiny)
    out = paired(batch)
    assert out.terms["total"] == pytest.approx(out.terms["seg3d"], rel=1e-6)
    assert out.terms["aux3d/0"] > 0  # computed, weighted out
    out.loss.backward()
    alone(batch).loss.backward()
    assert all(p.grad is not None for p in paired.parameters())
    assert paired.encoder2d is not None and paired.branch is not None
    assert _grad_norm(paired.encoder2d) == 0 and _grad_norm(paired.branch) == 0
    for (name, p), q in zip(paired.encoder3d.named_parameters(), alone.encoder3d.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("attention", ["box_token", "point_weights"])
def test_both_lob_attentions_train_the_branch(attention: str, tiny: ModelConfig, batch: Batch) -> None:
    model = _model("2ddata", tiny, lob_attention=attention)
    assert model.branch is not None and model.branch.scales[0].attention == attention
    out = model(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in out.terms.values())
    assert all(out.terms[f"fused/{i}"] > 0 for i in range(4))  # the batch has points in boxes
    out.loss.backward()
    for name, p in model.branch.scales.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.any(), f"{name} gets no gradient under {attention}"
    if attention == "point_weights":  # same weights, other fusion: other fused terms, same 3D terms
        token = _model("2ddata", tiny)(batch).terms
        assert out.terms["seg3d"] == token["seg3d"] and out.terms["aux3d/0"] == token["aux3d/0"]
        assert out.terms["fused/0"] != pytest.approx(token["fused/0"], rel=1e-6)


@pytest.mark.parametrize("mode", ["3d", "2ddata"])
def test_encoder_grad_norms_are_each_weighted_terms_pull_on_the_3d_encoder(
    mode: str, tiny: ModelConfig, batch: Batch
) -> None:
    model = _model(mode, tiny, seg3d_weight=2.0, kl_weight=0.0)
    out = model(batch)
    norms = model.encoder_grad_norms(out.graph_terms)
    assert set(norms) == set(out.terms) - {"total"}
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated
    seg3d = torch.autograd.grad(
        2.0 * out.graph_terms["seg3d"], list(model.encoder3d.parameters()), retain_graph=True
    )
    expected = float(torch.cat([g.flatten() for g in seg3d]).double().square().sum().sqrt())
    assert norms["seg3d"] == pytest.approx(expected, rel=1e-5)
    assert model.encoder_grad_norms(out.graph_terms, scale=1024.0)["seg3d"] == pytest.approx(
        expected, rel=1e-4
    )
    if mode == "2ddata":
        assert norms["aux3d/0"] > 0 and norms["fused/0"] > 0
        assert norms["kl/0"] == 0.0  # weight 0
        assert norms["seg2d"] == 0.0  # the 2D head reads image features only
    out.loss.backward()  # the graph survived the extra backwards
    assert all(p.grad is not None for p in model.parameters())


def test_encoder_grad_norms_under_ddp(tiny: ModelConfig, batch: Batch) -> None:
    """The loop measures the per-term norms through the DDP wrapper's output before its backward:
    the extra backwards must not trip DDP's bookkeeping on this step or the next."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        model = _model("2ddata", tiny)
        wrapped = DistributedDataParallel(model)
        for _ in range(2):
            out = wrapped(batch)
            norms = model.encoder_grad_norms(out.graph_terms)
            assert norms["seg3d"] > 0
            out.loss.backward()
    finally:
        dist.destroy_process_group()
