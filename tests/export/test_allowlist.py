from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.allowlist import AllowlistViolation, check_graph, load_allowlist


def _model(nodes, initializers=(), opset: int = 17, extra_opsets=()):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 2]) for n in ("x", "u")]
        + [helper.make_tensor_value_info("i", TensorProto.INT64, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=list(initializers),
    )
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets)


def test_scatter_elements_with_add_reduction_is_rejected() -> None:
    model = _model([helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=0, reduction="add")])
    with pytest.raises(AllowlistViolation, match=r"reduction='add' is not supported natively"):
        check_graph(model)


def test_scatter_without_reduction_passes() -> None:
    model = _model([helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=0)])
    assert check_graph(model) == ["ScatterElements"]


@pytest.mark.parametrize(
    ("op", "reason"),
    [("Unique", "not supported"), ("NonZero", "data-dependent"), ("Erf", "not in the TensorRT allowlist")],
)
def test_other_ops_are_rejected_with_a_reason(op: str, reason: str) -> None:
    with pytest.raises(AllowlistViolation, match=reason):
        check_graph(_model([helper.make_node(op, ["x"], ["y"])]))


def test_custom_domain_and_low_opset_are_rejected() -> None:
    node = helper.make_node("SparseConvolution", ["x"], ["y"], domain="spconv")
    model = _model([node], opset=13, extra_opsets=[helper.make_opsetid("spconv", 1)])
    with pytest.raises(AllowlistViolation) as info:
        check_graph(model)
    text = str(info.value)
    assert (
        "opset 13 < 17" in text
        and "custom opset domain 'spconv'" in text
        and "custom domain 'spconv'" in text
    )


def test_reduce_axes_must_be_constant() -> None:
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    ok = _model([helper.make_node("ReduceSum", ["x", "axes"], ["y"])], initializers=[axes])
    assert check_graph(ok) == ["ReduceSum"]
    dynamic = _model([helper.make_node("ReduceSum", ["x", "i"], ["y"])])
    with pytest.raises(AllowlistViolation, match="input 1 must be a constant initializer"):
        check_graph(dynamic)


def test_allowlist_names_its_source() -> None:
    allowlist = load_allowlist()
    assert "onnx-tensorrt" in allowlist.source and allowlist.min_opset >= 17
    assert not set(allowlist.ops) & set(allowlist.known_unsupported)
