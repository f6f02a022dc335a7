"""Build the plugin-free ONNX graph of the 3D encoder from a BN-folded state dict.

The graph is written node by node with `onnx.helper` rather than traced, so its operator set is
exactly the one below and nothing else (`export/trt_allowlist.yaml` checks it):

- submanifold 3×3×3 conv, in one of two forms (`seg3d.manifest.GraphForm`):

  - ``dense``: ``Concat`` (zero row) → ``Gather`` over the neighbour table → ``Reshape``
    ``[V, 27·C]`` → ``MatMul`` ``[27·C, C]`` → ``Add`` bias;
  - ``sparse`` (present taps only): ``MatMul`` of every voxel by the centre tap; for each other tap
    ``Gather`` of its source rows (zero row appended) → ``MatMul`` by that tap's ``[C, C]``; the
    contributions ``Concat``-ed in tap order and summed per voxel like a pool without weights
    (``Gather`` → ``ReduceSum``, overflow through ``ScatterND``), in float32; ``Add`` centre and bias;

  the 1×1×1 conv and every linear layer are ``MatMul`` + ``Add``;
- every scatter-mean: ``Gather`` → ``Mul`` by the table weights → ``ReduceSum`` over the width, the
  overflow rows summed the same way and written back with ``ScatterND`` (no reduction attribute:
  the targets are distinct);
- ``LeakyRelu``, ``Relu``, ``Slice``, ``Unsqueeze``, ``Cast``, and ``ArgMax`` over the classes for
  the labels output.

Precision ``fp16`` stores weights and runs convolutions and linear layers in float16, but keeps the
first embedding layer (it reads raw coordinates) and every pooling reduction in float32, with
explicit ``Cast`` nodes: the reductions sum up to ~1,500 rows. Outputs are always float32 logits
and int64 labels (the argmax over every class but the ignore class).
"""

from __future__ import annotations

from itertools import count
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from seg3d.config import ModelConfig
from seg3d.graph_inputs import (
    NON_CENTRE_TAPS,
    POOL_PARTS,
    TAP_SUM_WIDTH,
    graph_input_names,
    pool_names,
    tap_input_names,
)
from seg3d.manifest import GRAPH_FORMS, GraphForm, Precision
from seg3d.model.sparse_conv import one_by_one_matrix

__all__ = ["IR_VERSION", "OPSET", "GraphForm", "Precision", "build_encoder_graph"]

OPSET = 17
#: IR 8 is what opset 17 shipped with; TensorRT 10's parser and ONNX Runtime both read it.
IR_VERSION = 8

_ONNX_TYPE = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}
_NP_TYPE = {"fp32": np.float32, "fp16": np.float16}


class _Graph:
    """A small node/initializer accumulator with unique names."""

    def __init__(self, precision: Precision) -> None:
        self.precision = precision
        self.dtype = _NP_TYPE[precision]
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._ids = count()
        self._constants: dict[tuple[object, ...], str] = {}

    def name(self, hint: str) -> str:
        return f"{hint}_{next(self._ids)}"

    def const(self, hint: str, value: npt.NDArray[Any]) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def shared_const(self, key: tuple[object, ...], value: npt.NDArray[Any]) -> str:
        """An initializer reused by every node that asks for the same ``key`` (axes, shapes, zeros)."""
        if key not in self._constants:
            self._constants[key] = self.const("c", value)
        return self._constants[key]

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out

    def weight(self, tensor: torch.Tensor, hint: str, dtype: npt.DTypeLike = None) -> str:
        return self.const(hint, tensor.detach().cpu().numpy().astype(dtype or self.dtype))

    def axes(self, *axes: int) -> str:
        return self.shared_const(("axes", axes), np.array(axes, dtype=np.int64))

    def zero_row(self, channels: int, dtype: npt.DTypeLike) -> str:
        return self.shared_const(("zero", channels, np.dtype(dtype).str), np.zeros((1, channels), dtype))

    def cast(self, x: str, to: int) -> str:
        return self.op("Cast", [x], to=to)


class _EncoderGraph:
    def __init__(
        self, state: dict[str, torch.Tensor], config: ModelConfig, precision: Precision, form: GraphForm
    ) -> None:
        self.state = state
        self.config = config
        self.form = form
        self.g = _Graph(precision)
        self.hidden = config.encoder.hidden
        self.slope = config.encoder.leaky_slope

    # -- layers ---------------------------------------------------------------------------
    def linear(self, x: str, prefix: str, fp32: bool = False) -> str:
        dtype = np.float32 if fp32 else None
        w = self.g.weight(self.state[f"{prefix}.weight"].t(), f"{prefix}.weight", dtype)
        b = self.g.weight(self.state[f"{prefix}.bias"], f"{prefix}.bias", dtype)
        return self.g.op("Add", [self.g.op("MatMul", [x, w]), b])

    def leaky(self, x: str) -> str:
        return self.g.op("LeakyRelu", [x], alpha=self.slope)

    def conv3(self, x: str, scale: int, prefix: str) -> str:
        if self.form == "sparse":
            return self.conv3_sparse(x, scale, prefix)
        return self.conv3_dense(x, f"neighbours_s{scale}", prefix)

    def conv3_sparse(self, x: str, scale: int, prefix: str) -> str:
        """Present taps only: centre MatMul + per-tap Gather·MatMul, summed per voxel in float32."""
        g = self.g
        weight = self.state[f"{prefix}.weight"]  # (C_out, 3, 3, 3, C_in)
        c_out, c_in = weight.shape[0], weight.shape[-1]
        kernel = weight.permute(1, 2, 3, 4, 0).reshape(-1, c_in, c_out)  # (27, C_in, C_out)
        fp16 = g.precision == "fp16"
        padded = g.op("Concat", [x, g.zero_row(c_in, g.dtype)], axis=0)
        sources, sums = tap_input_names(scale)
        contributions = [
            g.op(
                "MatMul", [g.op("Gather", [padded, source], axis=0), g.weight(kernel[t], f"{prefix}.weight")]
            )
            for t, source in zip(NON_CENTRE_TAPS, sources, strict=True)
        ]
        every = g.op("Concat", contributions, axis=0)  # [R, C_out]
        summed = self.row_sum(g.cast(every, TensorProto.FLOAT) if fp16 else every, sums, c_out)
        centre = g.op("MatMul", [x, g.weight(kernel[len(kernel) // 2], f"{prefix}.weight")])
        out = g.op("Add", [g.cast(centre, TensorProto.FLOAT) if fp16 else centre, summed])
        if fp16:
            out = g.cast(out, TensorProto.FLOAT16)
        return g.op("Add", [out, g.weight(self.state[f"{prefix}.bias"], f"{prefix}.bias")])

    def row_sum(self, rows: str, names: list[str], channels: int) -> str:
        """Per-target sums of float32 ``rows`` through a weightless pool form (index, extra_index,
        overflow_target, overflow_index): the same Gather · ReduceSum · ScatterND as `pool`."""
        g = self.g
        index, extra_index, overflow_target, overflow_index = names
        zero = g.zero_row(channels, np.float32)
        padded = g.op("Concat", [rows, zero], axis=0)
        main = g.op("ReduceSum", [g.op("Gather", [padded, index], axis=0), g.axes(1)], keepdims=0)
        extra = g.op("ReduceSum", [g.op("Gather", [padded, extra_index], axis=0), g.axes(1)], keepdims=0)
        fragments = g.op("Concat", [main, extra, zero], axis=0)
        completed = g.op(
            "ReduceSum", [g.op("Gather", [fragments, overflow_index], axis=0), g.axes(1)], keepdims=0
        )
        return g.op("ScatterND", [main, overflow_target, completed])

    def conv3_dense(self, x: str, neighbours: str, prefix: str) -> str:
        weight = self.state[f"{prefix}.weight"]  # (C_out, 3, 3, 3, C_in)
        c_out, c_in = weight.shape[0], weight.shape[-1]
        flat = weight.permute(1, 2, 3, 4, 0).reshape(27 * c_in, c_out)
        padded = self.g.op("Concat", [x, self.g.zero_row(c_in, self.g.dtype)], axis=0)
        gathered = self.g.op("Gather", [padded, neighbours], axis=0)
        shape = self.g.shared_const(("shape", -1, 27 * c_in), np.array([-1, 27 * c_in], dtype=np.int64))
        rows = self.g.op("Reshape", [gathered, shape])
        out = self.g.op("MatMul", [rows, self.g.weight(flat, f"{prefix}.weight")])
        return self.g.op("Add", [out, self.g.weight(self.state[f"{prefix}.bias"], f"{prefix}.bias")])

    def conv1(self, x: str, prefix: str) -> str:
        matrix = one_by_one_matrix(self.state[f"{prefix}.weight"])
        out = self.g.op("MatMul", [x, self.g.weight(matrix, f"{prefix}.weight")])
        return self.g.op("Add", [out, self.g.weight(self.state[f"{prefix}.bias"], f"{prefix}.bias")])

    def pool(self, x: str, name: str, channels: int, x_is_fp32: bool = False) -> str:
        """Weighted mean through the pool tables, always reduced in float32."""
        g = self.g
        fp16 = g.precision == "fp16"
        xf = g.cast(x, TensorProto.FLOAT) if fp16 and not x_is_fp32 else x
        zero = g.zero_row(channels, np.float32)
        padded = g.op("Concat", [xf, zero], axis=0)

        def fragments(index: str, weight: str) -> str:
            gathered = g.op("Gather", [padded, index], axis=0)  # [R, M, C]
            weighted = g.op("Mul", [gathered, g.op("Unsqueeze", [weight, g.axes(2)])])
            return g.op("ReduceSum", [weighted, g.axes(1)], keepdims=0)

        main = fragments(f"{name}_index", f"{name}_weight")
        extra = fragments(f"{name}_extra_index", f"{name}_extra_weight")
        every = g.op("Concat", [main, extra, zero], axis=0)
        completed = g.op(
            "ReduceSum", [g.op("Gather", [every, f"{name}_overflow_index"], axis=0), g.axes(1)], keepdims=0
        )
        out = g.op("ScatterND", [main, f"{name}_overflow_target", completed])
        return g.cast(out, TensorProto.FLOAT16) if fp16 else out

    def take_columns(self, x: str, start: int, end: int) -> str:
        starts = self.g.shared_const(("start", start), np.array([start], dtype=np.int64))
        ends = self.g.shared_const(("end", end), np.array([end], dtype=np.int64))
        return self.g.op("Slice", [x, starts, ends, self.g.axes(1)])

    # -- network --------------------------------------------------------------------------
    def build(self) -> tuple[str, str]:
        g, enc, c = self.g, self.config.encoder, self.hidden
        h = g.op("Relu", [self.linear("features", "embed.fc1", fp32=True)])
        x = self.linear(self.pool(h, "pool_points", c, x_is_fp32=True), "embed.fc2")
        point_features = []
        for i, (r_prev, r) in enumerate(zip(enc.conv_scales, enc.scale_list, strict=True)):
            v = x
            for j in range(2):
                base = f"blocks.{i}.voxel.{j}"
                identity = self.conv1(v, f"{base}.shortcut")
                h = self.leaky(self.conv3(v, r_prev, f"{base}.conv1"))
                v = self.leaky(g.op("Add", [self.conv3(h, r_prev, f"{base}.conv2"), identity]))
            f = g.op("Add", [x, v])
            ctx_prefix = f"blocks.{i}.point.context"
            ctx = self.pool(f, f"pool_context_s{r_prev}", c)
            for layer in ("fc1", "fc2", "fc3"):
                ctx = self.leaky(self.linear(ctx, f"{ctx_prefix}.{layer}"))
            ctx = g.op("Gather", [ctx, f"context_inverse_s{r_prev}"], axis=0)
            identity = self.leaky(self.linear(f, f"blocks.{i}.point.identity"))
            fused = g.op("Concat", [identity, ctx], axis=1)
            out = self.linear(
                self.leaky(self.linear(fused, f"blocks.{i}.point.out1")), f"blocks.{i}.point.out2"
            )
            if r_prev == r:
                p, v_down = out, v
            else:
                both = g.op("Concat", [out, v], axis=1)
                moved = self.pool(both, f"pool_down_s{r_prev}_s{r}", 2 * c)
                p, v_down = self.take_columns(moved, 0, c), self.take_columns(moved, c, 2 * c)
            point_features.append(g.op("Gather", [p, f"inverse_s{r}"], axis=0))
            x = g.op("Add", [p, v_down])
        head = g.op("Concat", point_features, axis=1)
        logits = self.linear(g.op("Relu", [self.linear(head, "head.0")]), "head.2")
        if g.precision == "fp16":
            logits = g.cast(logits, TensorProto.FLOAT)
        mask = np.zeros((1, self.config.num_classes), dtype=np.float32)
        mask[0, self.config.ignore_index] = -np.inf  # the ignore class is never a label
        labels = g.op("ArgMax", [g.op("Add", [logits, g.const("ignore_mask", mask)])], axis=1, keepdims=0)
        return logits, labels


def _input_infos(config: ModelConfig, form: GraphForm) -> list[onnx.ValueInfoProto]:
    enc, widths = config.encoder, config.tables
    conv_scales = sorted(set(enc.conv_scales))
    dims: dict[str, list[str | int]] = {"features": ["N", 10]}
    for s in conv_scales:
        dims[f"neighbours_s{s}"] = [f"V{s}", 27]
        sources, (index, extra_index, overflow_target, overflow_index) = tap_input_names(s)
        for t, name in zip(NON_CENTRE_TAPS, sources, strict=True):
            dims[name] = [f"P{s}_{min(t, 26 - t)}"]  # taps t and 26 - t: the same pairs, swapped
        dims[index] = [f"V{s}", TAP_SUM_WIDTH]
        dims[extra_index] = [f"tap_sum_s{s}_E", TAP_SUM_WIDTH]
        dims[overflow_target] = [f"tap_sum_s{s}_H", 1]
        dims[overflow_index] = [f"tap_sum_s{s}_H", f"tap_sum_s{s}_K"]
        dims[f"context_inverse_s{s}"] = [f"V{s}"]
    for s in sorted(set(enc.scale_list)):
        dims[f"inverse_s{s}"] = ["N"]
    targets = {"pool_points": ("V1", widths.point_pool_width)}
    targets.update({f"pool_context_s{s}": (f"C{s}", widths.voxel_pool_width) for s in conv_scales})
    targets.update(
        {
            f"pool_down_s{a}_s{b}": (f"V{b}", widths.voxel_pool_width)
            for a, b in zip(enc.conv_scales, enc.scale_list, strict=True)
            if a != b
        }
    )
    for pool in pool_names(config):
        rows, width = targets[pool]
        dims[f"{pool}_index"] = dims[f"{pool}_weight"] = [rows, width]
        dims[f"{pool}_extra_index"] = dims[f"{pool}_extra_weight"] = [f"{pool}_E", width]
        dims[f"{pool}_overflow_target"] = [f"{pool}_H", 1]
        dims[f"{pool}_overflow_index"] = [f"{pool}_H", f"{pool}_K"]
    infos = []
    for name in graph_input_names(config, form):
        is_float = name == "features" or name.endswith("_weight")
        dtype = TensorProto.FLOAT if is_float else TensorProto.INT64
        infos.append(helper.make_tensor_value_info(name, dtype, dims[name]))
    assert all(f"{p}_{part}" in dims for p in pool_names(config) for part in POOL_PARTS)
    return infos


def build_encoder_graph(
    folded_state: dict[str, torch.Tensor],
    config: ModelConfig,
    precision: Precision = "fp32",
    form: GraphForm = "dense",
) -> onnx.ModelProto:
    """The ONNX model of the encoder whose BN-folded state dict is ``folded_state``.

    Inputs are `seg3d.graph_inputs.graph_input_names` of ``form`` (dynamic point, voxel and table
    dims); outputs ``logits`` ``[N, num_classes]`` float32 and ``labels`` ``[N]`` int64.
    """
    if precision not in _ONNX_TYPE:
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    if form not in GRAPH_FORMS:
        raise ValueError(f"form must be one of {', '.join(GRAPH_FORMS)}, got {form!r}")
    if any(".bn" in key for key in folded_state):
        raise ValueError("the state dict still has BatchNorm entries: fold it first (fold_state_dict)")
    encoder = _EncoderGraph(folded_state, config, precision, form)
    logits, labels = encoder.build()
    g = encoder.g
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits_out"))
    g.nodes.append(helper.make_node("Identity", [labels], ["labels"], name="labels_out"))
    graph = helper.make_graph(
        g.nodes,
        f"{config.name}_encoder3d",
        _input_infos(config, form),
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", config.num_classes]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, ["N"]),
        ],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ddata-lidarseg export"
    )
    model.ir_version = IR_VERSION
    return model
