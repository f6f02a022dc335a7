"""`multiply_adds` counts what the encoder computes: by hand on a cloud of three voxels, and against
the MatMuls PyTorch and ONNX Runtime really execute."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from seg3d.checkpoint import load_encoder
from seg3d.config import ModelConfig
from seg3d.model import Encoder3D
from seg3d.model.cost import MultiplyAdds, multiply_adds
from seg3d.preprocess import EncoderInputs, crop_mask, prepare_inputs
from seg3d.scans import RealScan

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo" / "encoder3d.pt"
aten = torch.ops.aten


class MatMulCounter(TorchDispatchMode):
    """Sums ``m·k·n`` over every matrix product torch executes (``aten.mm``, ``addmm``, ``matmul``,
    ``bmm``, and ``linear``: in inference mode ``F.linear`` reaches the dispatcher undecomposed)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket
        if op is aten.linear:
            x, w = args[0], args[1]
            self.macs += math.prod(x.shape[:-1]) * w.shape[0] * w.shape[1]
        elif op in (aten.mm, aten.matmul):
            a, b = args[0], args[1]
            assert a.dim() == 2 and b.dim() == 2, f"{op}: {a.shape} @ {b.shape}"
            self.macs += a.shape[0] * a.shape[1] * b.shape[1]
        elif op is aten.addmm:
            a, b = args[1], args[2]
            self.macs += a.shape[0] * a.shape[1] * b.shape[1]
        elif op is aten.bmm:
            a, b = args[0], args[1]
            self.macs += a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return out


def executed_macs(model: Encoder3D, inputs: EncoderInputs) -> int:
    with torch.inference_mode(), MatMulCounter() as counter:
        model(inputs)
    return counter.macs


def three_voxels(config: ModelConfig) -> EncoderInputs:
    """Four points in three scale-1 voxels of the ``tiny`` grid (0.2 m cells from -50 m): A (two
    points, x cell 250) and B (x cell 251) are neighbours, C (x cell 350) is alone. At every coarser
    conv scale (2, 4, 8) A and B share a voxel and C is two or more cells away from it."""
    points = torch.tensor(
        [
            [0.10, 0.1, 0.1, 10.0],  # A
            [0.15, 0.1, 0.1, 20.0],  # A
            [0.30, 0.1, 0.1, 30.0],  # B
            [20.10, 0.1, 0.1, 40.0],  # C
        ]
    )
    return prepare_inputs(points, config)


def test_hand_count_on_three_voxels(tiny_config: ModelConfig) -> None:
    inputs = three_voxels(tiny_config)
    voxels = {s: int(inputs.conv[s].neighbours.shape[0]) for s in (1, 2, 4, 8)}
    assert voxels == {1: 3, 2: 2, 4: 2, 8: 2}  # the layout the docstring describes
    c = tiny_config.encoder.hidden  # 32
    # Present taps per conv scale: scale 1 has the three centres plus A->B and B->A; every coarser
    # scale has only its two centres.
    sparse, dense = multiply_adds(inputs, tiny_config, "sparse"), multiply_adds(inputs, tiny_config, "dense")
    assert sparse.conv3 == 4 * (5 + 2 + 2 + 2) * c * c  # four 3×3×3 convs per block
    assert dense.conv3 == 4 * 27 * (3 + 2 + 2 + 2) * c * c
    assert sparse.conv1 == dense.conv1 == 2 * (3 + 2 + 2 + 2) * c * c
    # Embedding: fc1 per point (4 × 10 → 32), fc2 per scale-1 voxel (3); spconv runs fc2 per point.
    assert sparse.embedding == 4 * 10 * c + 3 * c * c
    assert multiply_adds(inputs, tiny_config, "sparse", "spconv").embedding == 4 * 10 * c + 4 * c * c
    assert sparse.total == sum(v for k, v in sparse.as_dict().items() if k != "total")


def test_dense_never_below_sparse(tiny_config: ModelConfig, nuscenes_scans: list[RealScan]) -> None:
    clouds = [three_voxels(tiny_config)]
    for scan in nuscenes_scans[:2]:
        points = scan.points[crop_mask(scan.points[:, :3], tiny_config.grid)]
        clouds += [prepare_inputs(points[:500], tiny_config), prepare_inputs(points, tiny_config)]
    for inputs in clouds:
        for schedule in ("table", "graph", "spconv"):
            dense = multiply_adds(inputs, tiny_config, "dense", schedule)  # type: ignore[arg-type]
            sparse = multiply_adds(inputs, tiny_config, "sparse", schedule)  # type: ignore[arg-type]
            assert dense.conv3 >= sparse.conv3 > 0
            assert dense.total >= sparse.total > 0
            assert dense.linear == sparse.linear


def test_present_share_on_a_real_sweep_at_full_width(
    full_config: ModelConfig, nuscenes_scans: list[RealScan]
) -> None:
    scan = nuscenes_scans[0]
    inputs = prepare_inputs(scan.points[crop_mask(scan.points[:, :3], full_config.grid)], full_config)
    dense = multiply_adds(inputs, full_config, "dense")
    sparse = multiply_adds(inputs, full_config, "sparse")
    ratio = sparse.conv3 / dense.conv3
    assert 0.05 < ratio < 0.3, ratio  # ~3.3 of 27 taps present at 0.1 m
    assert dense.total > 4 * sparse.total  # the convolutions dominate at width 256


def _assert_equal_within_one_percent(executed: int, counted: MultiplyAdds) -> None:
    # FLOPs: 2 per multiply-add on both sides.
    assert abs(2 * executed - 2 * counted.total) <= 0.01 * 2 * counted.total, (executed, counted)


def _clouds(config: ModelConfig, scans: list[RealScan]) -> list[EncoderInputs]:
    clouds = [three_voxels(config)]
    if scans:
        points = scans[0].points[crop_mask(scans[0].points[:, :3], config.grid)]
        clouds.append(prepare_inputs(points[:8000], config))
    return clouds


@pytest.fixture(scope="module")
def real_or_none() -> list[RealScan]:
    from seg3d.scans import real_scans

    return real_scans(("nuscenes",))


def test_table_forward_executes_what_is_counted(
    tiny_config: ModelConfig, real_or_none: list[RealScan]
) -> None:
    """The torch backend's encoder (the demo checkpoint, folded, present taps on CPU) performs the
    counted sparse multiply-adds; the gather form (all 27 taps) the dense ones."""
    served = load_encoder(DEMO, "table", fold=True)
    assert served.present_taps and served.config == tiny_config
    gather = Encoder3D(tiny_config, "table").eval()
    assert not gather.present_taps
    for inputs in _clouds(tiny_config, real_or_none):
        _assert_equal_within_one_percent(
            executed_macs(served, inputs), multiply_adds(inputs, tiny_config, "sparse")
        )
        _assert_equal_within_one_percent(
            executed_macs(gather, inputs), multiply_adds(inputs, tiny_config, "dense")
        )


def test_spconv_reference_executes_what_is_counted(
    tiny_config: ModelConfig, real_or_none: list[RealScan]
) -> None:
    """spconv's CPU convolutions are torch MatMuls over each kernel offset's pairs (centre included),
    so the reference's whole count is observable too."""
    pytest.importorskip("spconv.pytorch")
    reference = load_encoder(DEMO, "spconv")
    for inputs in _clouds(tiny_config, real_or_none):
        counted = multiply_adds(inputs, tiny_config, "sparse", "spconv")
        _assert_equal_within_one_percent(executed_macs(reference, inputs), counted)


def test_exported_graphs_execute_what_is_counted(
    tiny_config: ModelConfig, real_or_none: list[RealScan], tmp_path: Path
) -> None:
    """ONNX Runtime's profile of the dense and sparse graphs (no graph rewrites, so every MatMul
    node runs as written): the MatMuls' input shapes give the executed multiply-adds."""
    ort = pytest.importorskip("onnxruntime")
    from export.onnx_graph import build_encoder_graph
    from seg3d.graph_inputs import graph_inputs
    from seg3d.model.folding import fold_state_dict

    model = Encoder3D(tiny_config, "table").eval()
    state = fold_state_dict(model.state_dict(), model)
    for form in ("dense", "sparse"):
        graph = build_encoder_graph(state, tiny_config, "fp32", form)
        nodes = {n.name: n for n in graph.graph.node}
        weights = {i.name: list(i.dims) for i in graph.graph.initializer}
        for k, inputs in enumerate(_clouds(tiny_config, real_or_none)):
            options = ort.SessionOptions()
            options.enable_profiling = True
            options.profile_file_prefix = str(tmp_path / f"{form}-{k}")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            session = ort.InferenceSession(
                graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
            feeds = {name: t.numpy() for name, t in graph_inputs(inputs, tiny_config, form).items()}
            session.run(["labels"], feeds)
            executed = 0
            for event in json.loads(Path(session.end_profiling()).read_text()):
                args = event.get("args", {})
                if event.get("cat") != "Node" or args.get("op_name") != "MatMul":
                    continue
                if not event["name"].endswith("_kernel_time"):
                    continue
                node = nodes[event["name"].removesuffix("_kernel_time")]
                (x_shape,) = args["input_type_shape"][0].values()  # the weight is an initializer
                k_in, n_out = weights[node.input[1]]
                assert x_shape[-1] == k_in
                executed += math.prod(x_shape[:-1]) * k_in * n_out
            counted = multiply_adds(inputs, tiny_config, form, "graph")  # type: ignore[arg-type]
            _assert_equal_within_one_percent(executed, counted)


def test_empty_cloud_and_bad_arguments(tiny_config: ModelConfig) -> None:
    empty = prepare_inputs(torch.zeros((0, 4)), tiny_config)
    assert multiply_adds(empty, tiny_config, "dense").total == 0
    inputs = three_voxels(tiny_config)
    with pytest.raises(ValueError, match="form"):
        multiply_adds(inputs, tiny_config, "gather")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schedule"):
        multiply_adds(inputs, tiny_config, "dense", "eager")  # type: ignore[arg-type]
