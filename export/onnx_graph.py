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

Precision ``int8`` is explicit quantization: the input of each quantized ``MatMul`` (after its
``Gather``, for a convolution tap) passes through ``QuantizeLinear`` (int8, per-tensor scale from
calibration, zero point 0) and ``DequantizeLinear``; its weight is stored as int8 with one
symmetric scale per output channel behind its own ``DequantizeLinear`` (axis 1). Every quantized
tensor has exactly one consumer, the layout both runtimes fuse: ONNX Runtime's CPU provider into
``MatMulIntegerToFloat`` (a shared quantized tensor stays in float there), TensorRT's
explicit-quantization path into INT8 GEMMs. In the sparse form the centre tap of a block's first
convolution and the block's 1×1 shortcut read the same voxels, so they are one ``MatMul`` with
their weights side by side, split by ``Slice``. Activations between layers, biases, pooling and the
per-voxel tap sums stay float32; layers without a scale (`INT8_EXCLUDED`, or returned to float32
by calibration) stay float32 too. `_EncoderGraph.layers` records the precision of every layer for
the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
from seg3d.manifest import GRAPH_FORMS, GraphForm, LayerPrecision, Precision
from seg3d.model.sparse_conv import one_by_one_matrix

__all__ = [
    "INT8_EXCLUDED",
    "IR_VERSION",
    "OPSET",
    "GraphForm",
    "Precision",
    "build_encoder_graph",
    "calibration_graph",
    "layer_precisions",
]

OPSET = 17
#: IR 8 is what opset 17 shipped with; TensorRT 10's parser and ONNX Runtime both read it.
IR_VERSION = 8

_ONNX_TYPE = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16, "int8": TensorProto.FLOAT}
#: Dtype of the activations between layers (int8 graphs quantize at each layer's input only).
_NP_TYPE = {"fp32": np.float32, "fp16": np.float16, "int8": np.float32}
#: Largest magnitude of a symmetric int8 value (-128 is left out, as TensorRT does).
INT8_MAX = 127
#: Layers an int8 graph keeps in float32: the first embedding layer reads raw coordinates and
#: intensity (metres and a 0-255 scale in one tensor), the last one writes the logits.
INT8_EXCLUDED = ("embed.fc1", "head.2")


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

    def quantize(self, x: str, scale: float) -> str:
        """``x`` through ``QuantizeLinear`` (int8, zero point 0) and a ``DequantizeLinear``, for one
        MatMul. One pair per consumer: ONNX Runtime fuses ``DQ → MatMul`` only when the quantized
        tensor has that single consumer."""
        q = self.op("QuantizeLinear", [x, self.scale(scale), self.int8_zero()])
        return self.op("DequantizeLinear", [q, self.scale(scale), self.int8_zero()])

    def scale(self, value: float) -> str:
        return self.shared_const(("scale", value), np.array(value, dtype=np.float32))

    def int8_zero(self) -> str:
        return self.shared_const(("int8_zero",), np.array(0, dtype=np.int8))

    def int8_weight(self, matrix: torch.Tensor, hint: str) -> str:
        """``DequantizeLinear`` of ``matrix`` ``[K, N]`` stored as int8, symmetric per column."""
        w = matrix.detach().cpu().double().numpy()
        amax = np.abs(w).max(axis=0)
        scales = np.where(amax > 0, amax / INT8_MAX, 1.0)
        q = np.clip(np.rint(w / scales), -INT8_MAX, INT8_MAX).astype(np.int8)
        zero = self.shared_const(("int8_zeros", q.shape[1]), np.zeros(q.shape[1], dtype=np.int8))
        return self.op(
            "DequantizeLinear",
            [self.const(hint, q), self.const(f"{hint}.scale", scales.astype(np.float32)), zero],
            axis=1,
        )


class _EncoderGraph:
    def __init__(
        self,
        state: dict[str, torch.Tensor],
        config: ModelConfig,
        precision: Precision,
        form: GraphForm,
        activation_scales: Mapping[str, float] | None = None,
    ) -> None:
        self.state = state
        self.config = config
        self.form = form
        self.g = _Graph(precision)
        self.hidden = config.encoder.hidden
        self.slope = config.encoder.leaky_slope
        self.scales = dict(activation_scales or {})
        #: every conv and linear layer: its precision, and the float tensor it reads (what
        #: calibration observes)
        self.layers: dict[str, LayerPrecision] = {}
        self.sites: dict[str, str] = {}

    # -- layers ---------------------------------------------------------------------------
    def product(
        self, x: str, matrix: torch.Tensor, prefix: str, rows: str | None = None, fp32: bool = False
    ) -> str:
        """``x @ matrix`` (``[K, N]``), or ``x[rows] @ matrix`` with ``rows`` an index input, in the
        layer's precision; float32 when ``fp32`` (the caller made ``x`` float32)."""
        g = self.g
        self.sites.setdefault(prefix, x)
        source = g.op("Gather", [x, rows], axis=0) if rows is not None else x
        scale = self.scales.get(prefix) if g.precision == "int8" else None
        if scale is None:
            self.layers[prefix] = "fp32" if fp32 or g.precision != "fp16" else "fp16"
            weight = g.weight(matrix, f"{prefix}.weight", np.float32 if fp32 else None)
            return g.op("MatMul", [source, weight])
        self.layers[prefix] = "int8"
        return g.op("MatMul", [g.quantize(source, scale), g.int8_weight(matrix, f"{prefix}.weight")])

    def bias(self, x: str, prefix: str, fp32: bool = False) -> str:
        bias = self.g.weight(self.state[f"{prefix}.bias"], f"{prefix}.bias", np.float32 if fp32 else None)
        return self.g.op("Add", [x, bias])

    def linear(self, x: str, prefix: str, fp32: bool = False) -> str:
        return self.bias(self.product(x, self.state[f"{prefix}.weight"].t(), prefix, fp32=fp32), prefix, fp32)

    def leaky(self, x: str) -> str:
        return self.g.op("LeakyRelu", [x], alpha=self.slope)

    def conv3(self, x: str, scale: int, prefix: str) -> str:
        if self.form == "sparse":
            return self.conv3_sparse(x, scale, prefix)[0]
        return self.conv3_dense(x, f"neighbours_s{scale}", prefix)

    def conv3_with_shortcut(self, x: str, scale: int, prefix: str, shortcut: str) -> tuple[str, str]:
        """A 3×3×3 conv and the 1×1 ``shortcut`` conv of the same input: (conv, shortcut)."""
        if self.form == "sparse":
            conv, short = self.conv3_sparse(x, scale, prefix, shortcut)
            assert short is not None
            return conv, short
        return self.conv3_dense(x, f"neighbours_s{scale}", prefix), self.conv1(x, shortcut)

    def conv3_sparse(
        self, x: str, scale: int, prefix: str, shortcut: str | None = None
    ) -> tuple[str, str | None]:
        """Present taps only: centre MatMul + per-tap Gather·MatMul, summed per voxel in float32.
        Taps without pairs read row 0 once (`seg3d.graph_inputs.export_taps`): no zero row needed.
        With ``shortcut`` (a 1×1 conv of ``x``), its weight rides in the centre tap's MatMul."""
        g = self.g
        weight = self.state[f"{prefix}.weight"]  # (C_out, 3, 3, 3, C_in)
        c_out, c_in = weight.shape[0], weight.shape[-1]
        kernel = weight.permute(1, 2, 3, 4, 0).reshape(-1, c_in, c_out)  # (27, C_in, C_out)
        fp16 = g.precision == "fp16"
        sources, sums = tap_input_names(scale)
        contributions = [
            self.product(x, kernel[t], prefix, rows=source)
            for t, source in zip(NON_CENTRE_TAPS, sources, strict=True)
        ]
        # The zero row the sum tables pad with rides in the same Concat: one copy of the
        # contributions, not two (Concat was a quarter of the full-width graph's data movement).
        every = g.op("Concat", [*contributions, g.zero_row(c_out, g.dtype)], axis=0)  # [R + 1, C_out]
        summed = self.row_sum(g.cast(every, TensorProto.FLOAT) if fp16 else every, sums, c_out)
        centre_matrix = kernel[len(kernel) // 2]
        if shortcut is not None:
            centre_matrix = torch.cat([centre_matrix, one_by_one_matrix(self.state[f"{shortcut}.weight"])], 1)
        centre = self.product(x, centre_matrix, prefix)
        short = None
        if shortcut is not None:
            self.layers[shortcut] = self.layers[prefix]
            short = self.bias(self.take_columns(centre, c_out, 2 * c_out), shortcut)
            centre = self.take_columns(centre, 0, c_out)
        out = g.op("Add", [g.cast(centre, TensorProto.FLOAT) if fp16 else centre, summed])
        if fp16:
            out = g.cast(out, TensorProto.FLOAT16)
        return self.bias(out, prefix), short

    def row_sum(self, padded: str, names: list[str], channels: int) -> str:
        """Per-target sums of float32 rows through a weightless pool form (index, extra_index,
        overflow_target, overflow_index): the same Gather · ReduceSum · ScatterND as `pool`.
        ``padded`` already ends with the zero row the tables' pad index reads."""
        g = self.g
        index, extra_index, overflow_target, overflow_index = names
        zero = g.zero_row(channels, np.float32)
        main = g.op("ReduceSum", [g.op("Gather", [padded, index], axis=0), g.axes(1)], keepdims=0)
        extra = g.op("ReduceSum", [g.op("Gather", [padded, extra_index], axis=0), g.axes(1)], keepdims=0)
        fragments = g.op("Concat", [main, extra, zero], axis=0)
        completed = g.op(
            "ReduceSum", [g.op("Gather", [fragments, overflow_index], axis=0), g.axes(1)], keepdims=0
        )
        return g.op("ScatterND", [main, overflow_target, completed])

    def conv3_dense(self, x: str, neighbours: str, prefix: str) -> str:
        g = self.g
        weight = self.state[f"{prefix}.weight"]  # (C_out, 3, 3, 3, C_in)
        c_out, c_in = weight.shape[0], weight.shape[-1]
        flat = weight.permute(1, 2, 3, 4, 0).reshape(27 * c_in, c_out)
        shape = g.shared_const(("shape", -1, 27 * c_in), np.array([-1, 27 * c_in], dtype=np.int64))
        padded = g.op("Concat", [x, g.zero_row(c_in, g.dtype)], axis=0)  # pad V: the zero row
        rows = g.op("Reshape", [g.op("Gather", [padded, neighbours], axis=0), shape])
        self.sites.setdefault(prefix, x)
        scale = self.scales.get(prefix) if g.precision == "int8" else None
        if scale is None:
            self.layers[prefix] = g.precision  # fp32 or fp16 here
            return self.bias(g.op("MatMul", [rows, g.weight(flat, f"{prefix}.weight")]), prefix)
        self.layers[prefix] = "int8"
        product = g.op("MatMul", [g.quantize(rows, scale), g.int8_weight(flat, f"{prefix}.weight")])
        return self.bias(product, prefix)

    def conv1(self, x: str, prefix: str) -> str:
        return self.bias(self.product(x, one_by_one_matrix(self.state[f"{prefix}.weight"]), prefix), prefix)

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
                h, identity = self.conv3_with_shortcut(v, r_prev, f"{base}.conv1", f"{base}.shortcut")
                h = self.leaky(h)
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


#: Key of the graph's metadata entry holding the precision of every layer (JSON object).
LAYERS_METADATA = "seg3d.layer_precision"
#: Prefix of a calibration graph's extra outputs: ``<prefix><layer>`` is the float tensor the layer
#: reads.
SITE_OUTPUT = "site:"


def _encoder(
    folded_state: dict[str, torch.Tensor],
    config: ModelConfig,
    precision: Precision,
    form: GraphForm,
    activation_scales: Mapping[str, float] | None,
) -> tuple[_EncoderGraph, onnx.GraphProto]:
    if precision not in _ONNX_TYPE:
        raise ValueError(f"precision must be one of {', '.join(_ONNX_TYPE)}, got {precision!r}")
    if form not in GRAPH_FORMS:
        raise ValueError(f"form must be one of {', '.join(GRAPH_FORMS)}, got {form!r}")
    if any(".bn" in key for key in folded_state):
        raise ValueError("the state dict still has BatchNorm entries: fold it first (fold_state_dict)")
    if precision == "int8" and not activation_scales:
        raise ValueError("an int8 graph needs activation scales: calibrate first (export.calibrate)")
    for name, value in (activation_scales or {}).items():
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"activation scale of {name} must be a positive number, got {value}")
    encoder = _EncoderGraph(folded_state, config, precision, form, activation_scales)
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
    return encoder, graph


def _model(graph: onnx.GraphProto, layers: dict[str, LayerPrecision]) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ddata-lidarseg export"
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {LAYERS_METADATA: json.dumps(layers)})
    return model


def build_encoder_graph(
    folded_state: dict[str, torch.Tensor],
    config: ModelConfig,
    precision: Precision = "fp32",
    form: GraphForm = "dense",
    activation_scales: Mapping[str, float] | None = None,
) -> onnx.ModelProto:
    """The ONNX model of the encoder whose BN-folded state dict is ``folded_state``.

    Inputs are `seg3d.graph_inputs.graph_input_names` of ``form`` (dynamic point, voxel and table
    dims); outputs ``logits`` ``[N, num_classes]`` float32 and ``labels`` ``[N]`` int64. An ``int8``
    graph needs ``activation_scales`` (layer → scale of its input, `export.calibrate`); a layer
    without one stays float32. `layer_precisions` reads back what each layer runs in.
    """
    encoder, graph = _encoder(folded_state, config, precision, form, activation_scales)
    return _model(graph, encoder.layers)


def calibration_graph(
    folded_state: dict[str, torch.Tensor], config: ModelConfig, form: GraphForm = "dense"
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The float32 graph with one more output per layer that int8 may quantize (every conv and
    linear but `INT8_EXCLUDED`): the tensor the layer reads. Returns the model and layer → output
    name."""
    encoder, graph = _encoder(folded_state, config, "fp32", form, None)
    sites = {layer: f"{SITE_OUTPUT}{layer}" for layer in encoder.sites if layer not in INT8_EXCLUDED}
    for layer, output in sites.items():
        graph.node.append(helper.make_node("Identity", [encoder.sites[layer]], [output], name=output))
        graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, None))
    return _model(graph, encoder.layers), sites


def layer_precisions(model: onnx.ModelProto) -> dict[str, LayerPrecision]:
    """The precision of every conv and linear layer of a graph this module built (empty for graphs
    written before it was recorded)."""
    for prop in model.metadata_props:
        if prop.key == LAYERS_METADATA:
            layers: dict[str, LayerPrecision] = json.loads(prop.value)
            return layers
    return {}
