"""GPU paths of training, checked on CPU: the backend a CUDA run trains on and what it saves for the
backward pass, validation split across processes, the device a bare ``cuda`` names, and the process
group's timeout. No test moves anything to CUDA: availability is faked where a choice depends on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch

import training.backend as backend_module
import training.distributed as distributed
from seg3d.config import ModelConfig
from seg3d.model import Encoder3D
from seg3d.model.sparse_conv import TableSubMConv3d, spconv_available
from seg3d.preprocess import EncoderInputs, crop_mask, prepare_inputs
from seg3d.scans import real_scans, synthetic_sweep
from tests.helpers import mini_3d_config
from tests.training.model.samples import make_batch
from training.backend import choose_backend, needs_grad_scaler, spconv_cuda_available
from training.model import BranchConfig, build_training_model

REPO = Path(__file__).resolve().parents[2]
CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


# --- 1. the training backend and its saved activations ---------------------------------------------


@pytest.fixture(scope="module")
def sweep_inputs(tiny_config: ModelConfig) -> EncoderInputs:
    """A real nuScenes sweep when the shared scans are present, else the synthetic stand-in."""
    scans = real_scans(("nuscenes",), tiny_config.input.intensity_max)
    points = (
        scans[0].points if scans else synthetic_sweep(34_000, intensity_max=tiny_config.input.intensity_max)
    )
    return prepare_inputs(points[crop_mask(points[:, :3], tiny_config.grid)], tiny_config)


def _conv_saved_bytes(encoder: Encoder3D, inputs: EncoderInputs) -> int:
    """Bytes the 3×3×3 convs of a training forward save for the backward pass (each storage once:
    index tables shared by the convs of a resolution count once)."""
    inside = [False]
    storages: dict[int, int] = {}
    hooks = []
    for module in encoder.modules():
        if isinstance(module, TableSubMConv3d) and module.kernel_size == 3:
            hooks.append(module.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True)))
            hooks.append(module.register_forward_hook(lambda *_: inside.__setitem__(0, False)))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if inside[0]:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            encoder.train().forward_features(inputs, keep_point_features=False)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(storages.values())


def _present_fraction(encoder: Encoder3D, inputs: EncoderInputs) -> float:
    """Present taps over all 27 taps, weighted as the convs see them (each resolution's voxels)."""
    present = total = 0
    for r in encoder.config.encoder.conv_scales:
        neighbours = inputs.conv[r].neighbours
        present += int((neighbours < neighbours.shape[0]).sum())
        total += neighbours.numel()
    return present / total


@pytest.mark.parametrize("spconv_installed", [False, True])
def test_a_cuda_run_trains_on_spconv_or_present_taps_never_the_dense_gather(
    monkeypatch: pytest.MonkeyPatch,
    tiny_config: ModelConfig,
    sweep_inputs: EncoderInputs,
    spconv_installed: bool,
) -> None:
    """``auto`` on a (faked) CUDA device: spconv when a CUDA build imports; else the table backend
    over present taps, whose convs save at most ~present/27 of the dense gather's bytes."""
    monkeypatch.setattr(backend_module, "spconv_cuda_available", lambda: spconv_installed)
    choice = choose_backend("auto", CUDA)
    if spconv_installed:
        assert (choice.backend, choice.present_taps) == ("spconv", False)
        assert "spconv" in choice.describe()
        return
    assert (choice.backend, choice.present_taps) == ("table", True)
    assert "present taps" in choice.describe()
    torch.manual_seed(0)
    model = build_training_model(tiny_config, BranchConfig(mode="3d"), backend=choice.backend)
    encoder = model.encoder3d
    dense = _conv_saved_bytes(encoder, sweep_inputs)
    encoder.present_taps = choice.present_taps
    present = _conv_saved_bytes(encoder, sweep_inputs)
    fraction = _present_fraction(encoder, sweep_inputs)
    assert fraction < 0.5  # a real-ish cloud: most of the 27 taps are empty
    # Indices and the kernel add a little on top of the present rows.
    assert present <= 1.1 * fraction * dense, (present, dense, fraction)


def test_backend_choices_on_cpu_and_explicit_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    auto_cpu = choose_backend("auto", CPU)
    assert (auto_cpu.backend, auto_cpu.present_taps) == ("table", True)
    table_cuda = choose_backend("table", CUDA)
    assert (table_cuda.backend, table_cuda.present_taps) == ("table", True)
    with pytest.raises(ValueError, match="CUDA only"):
        choose_backend("spconv", CPU)
    monkeypatch.setattr(backend_module, "spconv_cuda_available", lambda: False)
    with pytest.raises(ValueError, match="spconv-cu126"):
        choose_backend("spconv", CUDA)
    monkeypatch.setattr(backend_module, "spconv_cuda_available", lambda: True)
    assert choose_backend("spconv", CUDA).backend == "spconv"
    # spconv casts to float16 under autocast: only then does a run scale its loss.
    spconv, table = choose_backend("spconv", CUDA), choose_backend("table", CUDA)
    assert needs_grad_scaler(spconv, amp=True, device=CUDA)
    assert not needs_grad_scaler(spconv, amp=False, device=CUDA)
    assert not needs_grad_scaler(table, amp=True, device=CUDA)


def test_spconv_cuda_available_refuses_a_cpu_only_build() -> None:
    if not spconv_available():
        assert not spconv_cuda_available()
        return
    from spconv.cppconstants import CPU_ONLY_BUILD

    assert spconv_cuda_available() == (not CPU_ONLY_BUILD)


def test_present_taps_train_with_the_dense_loss_and_gradients(tiny_config: ModelConfig) -> None:
    batch = make_batch(tiny_config, sizes=(3000, 2500))
    results = []
    for present in (False, True):
        torch.manual_seed(0)
        model = build_training_model(tiny_config, BranchConfig(mode="3d"))
        model.encoder3d.present_taps = present
        out = model(batch)
        out.loss.backward()
        results.append((out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (dense_loss, dense_grads), (present_loss, present_grads) = results
    torch.testing.assert_close(present_loss, dense_loss, rtol=1e-5, atol=1e-6)
    # Float sums in another order, amplified by BatchNorm and Lovász's sort: a few 1e-2 of each
    # gradient's scale at worst (the same before present taps saved less).
    for name, grad in dense_grads.items():
        scale = float(grad.abs().max())
        assert float((present_grads[name] - grad).abs().max()) <= 0.05 * scale + 1e-7, name


def test_the_loop_trains_on_the_chosen_backend_and_says_so(
    synthetic_nuscenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from seg3d.checkpoint import load_checkpoint
    from training.config import TrainConfig
    from training.loop import train
    from training.train import main as train_main

    config = TrainConfig.model_validate(_loop_config())
    train(config, synthetic_nuscenes, tmp_path / "run", max_steps=1, progress=False)
    assert "training backend: table with present taps (auto: cpu device" in capsys.readouterr().err
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint.training["backend"] == {"backend": "table", "present_taps": True}
    assert checkpoint.training["config"]["loop"]["backend"] == "auto"
    # --backend spconv on CPU is a clear argument error, not a crash in the backward pass.
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    common = ["--config", str(path), "--data-root", str(synthetic_nuscenes), "--no-progress"]
    assert train_main([*common, "--out", str(tmp_path / "spconv"), "--backend", "spconv"]) == 2
    assert "CUDA only" in capsys.readouterr().err


def _loop_config() -> dict:
    return mini_3d_config(
        "gpu_paths",
        optim={"lr": 0.05},
        loop={"epochs": 1, "batch_size": 1, "val_every": 1000, "max_val_samples": 2},
    )


# --- 2. validation split across processes ----------------------------------------------------------


def _worker(data_root: Path, out: Path, processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    module = ["-m", "tests.training.sharded_validation_worker", str(data_root), str(out)]
    command = (
        [sys.executable, *module]
        if processes == 1
        else [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *module]
    )
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_validation_is_split_across_processes_and_summed_exactly(
    synthetic_nuscenes: Path, tmp_path: Path
) -> None:
    """Two gloo processes each read a disjoint half of the validation samples; the all-reduced
    confusion matrix equals one process's over all of them, exactly, on both ranks."""
    _worker(synthetic_nuscenes, tmp_path / "one", 1)
    _worker(synthetic_nuscenes, tmp_path / "two", 2)
    single = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    size = single["size"]
    assert size >= 4 and single["read"] == list(range(size))
    assert [r["world"] for r in ranks] == [2, 2]
    read = [set(r["read"]) for r in ranks]
    assert not read[0] & read[1]  # disjoint shards
    assert read[0] | read[1] == set(range(size))  # that cover the split
    assert sorted(len(r["read"]) for r in ranks) == [size // 2, size - size // 2]  # half each
    assert sum(map(sum, single["counts"])) > 0  # labelled points were counted
    assert ranks[0]["counts"] == ranks[1]["counts"] == single["counts"]


def test_shards_are_disjoint_and_cover_every_sample() -> None:
    from training.evaluation import shard_indices

    for count in (0, 1, 5, 6019):
        for world in (1, 2, 3, 8):
            shards = [list(shard_indices(count, rank, world)) for rank in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(count))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_the_process_group_gets_an_explicit_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    env = distributed.setup_distributed("cpu", timeout_minutes=45)
    assert calls == [{"backend": "gloo", "timeout": timedelta(minutes=45)}]
    assert (env.rank, env.world) == (1, 2)
    distributed.setup_distributed("cpu")
    assert calls[1]["timeout"] == timedelta(minutes=distributed.DEFAULT_TIMEOUT_MINUTES)
    assert calls[1]["timeout"] > timedelta(minutes=10)  # beyond NCCL's default watchdog


def test_the_timeout_comes_from_the_config() -> None:
    from training.config import TrainConfig

    config = TrainConfig.model_validate({**_loop_config(), "loop": {"dist_timeout_minutes": 90}})
    assert config.loop.dist_timeout_minutes == 90
    assert TrainConfig.model_validate(_loop_config()).loop.dist_timeout_minutes > 10


# --- 3. a bare ``cuda`` device ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "environ", "cuda", "expected"),
    [
        ("cuda", {"LOCAL_RANK": "3", "WORLD_SIZE": "4"}, True, "cuda:3"),
        ("cuda", {}, True, "cuda:0"),
        ("cuda:2", {"LOCAL_RANK": "3"}, True, "cuda:2"),
        (None, {"LOCAL_RANK": "1"}, True, "cuda:1"),
        (None, {"LOCAL_RANK": "1"}, False, "cpu"),
        ("cpu", {"LOCAL_RANK": "1"}, True, "cpu"),
    ],
)
def test_resolve_device(device: str | None, environ: dict[str, str], cuda: bool, expected: str) -> None:
    assert distributed.resolve_device(device, environ, cuda_available=cuda) == torch.device(expected)


def test_setup_distributed_gives_a_bare_cuda_this_processs_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--device cuda`` under torchrun: set_device gets ``cuda:<LOCAL_RANK>``, never a bare ``cuda``
    (which it refuses)."""
    selected: list[torch.device] = []

    def set_device(device: torch.device) -> None:
        if torch.device(device).index is None:
            raise ValueError("Expected a cuda device with a specified index or an integer")
        selected.append(torch.device(device))

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    env = distributed.setup_distributed("cuda")
    assert env.device == torch.device("cuda", 1)
    assert selected == [torch.device("cuda", 1)]
    monkeypatch.delenv("LOCAL_RANK")
    assert distributed.setup_distributed("cuda").device == torch.device("cuda", 0)
