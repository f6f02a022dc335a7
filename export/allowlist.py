"""Check an ONNX graph against the TensorRT operator allowlist in `trt_allowlist.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import yaml
from onnx import helper

__all__ = ["ALLOWLIST_PATH", "Allowlist", "AllowlistViolation", "check_graph", "load_allowlist"]

ALLOWLIST_PATH = Path(__file__).with_name("trt_allowlist.yaml")


class AllowlistViolation(ValueError):
    """The graph uses an operator, attribute or domain TensorRT would not import natively."""


@dataclass(frozen=True)
class Allowlist:
    source: str
    min_opset: int
    ops: dict[str, dict[str, Any]]
    known_unsupported: dict[str, str]


def load_allowlist(path: Path = ALLOWLIST_PATH) -> Allowlist:
    data = yaml.safe_load(path.read_text())
    return Allowlist(
        source=data["source"],
        min_opset=int(data["min_opset"]),
        ops={name: rule or {} for name, rule in data["ops"].items()},
        known_unsupported=dict(data.get("known_unsupported", {})),
    )


def check_graph(model: onnx.ModelProto, allowlist: Allowlist | None = None) -> list[str]:
    """Return the sorted op types of ``model`` or raise `AllowlistViolation` listing every problem."""
    allowlist = allowlist or load_allowlist()
    problems: list[str] = []
    opsets = {o.domain or "": o.version for o in model.opset_import}
    if opsets.get("", 0) < allowlist.min_opset:
        problems.append(f"opset {opsets.get('', 0)} < {allowlist.min_opset}")
    for domain in sorted(set(opsets) - {"", "ai.onnx"}):
        problems.append(f"custom opset domain {domain!r}")
    initializers = {t.name for t in model.graph.initializer}
    op_types: set[str] = set()
    for node in model.graph.node:
        where = f"node {node.name or '?'} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r}")
            continue
        op_types.add(node.op_type)
        rule = allowlist.ops.get(node.op_type)
        if rule is None:
            reason = allowlist.known_unsupported.get(node.op_type, "not in the TensorRT allowlist")
            problems.append(f"{where}: {reason}")
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for attr, bad_values in (rule.get("forbidden_attributes") or {}).items():
            value = attrs.get(attr)
            if isinstance(value, bytes):
                value = value.decode()
            if value in bad_values:
                problems.append(f"{where}: attribute {attr}={value!r} is not supported natively")
        for position in rule.get("constant_inputs") or []:
            if (
                position < len(node.input)
                and node.input[position]
                and node.input[position] not in initializers
            ):
                problems.append(f"{where}: input {position} must be a constant initializer")
    if problems:
        raise AllowlistViolation(
            f"{len(problems)} TensorRT allowlist violation(s) ({allowlist.source}):\n  "
            + "\n  ".join(problems)
        )
    return sorted(op_types)
