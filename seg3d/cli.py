"""``python -m seg3d``: inspect configs and check an install end to end.

python -m seg3d describe --config nuscenes_full
python -m seg3d smoke [--config tiny] [--scan FILE.bin --format nuscenes|kitti|xyzi|xyz]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from seg3d.config import ModelConfig, bundled_configs, load_config
from seg3d.helptext import plain
from seg3d.model import Encoder3D, spconv_available
from seg3d.points import PointFormat, read_points
from seg3d.preprocess import crop_mask, prepare_inputs
from seg3d.scans import real_scans, synthetic_sweep


def parameter_table(model: Encoder3D) -> list[tuple[str, int]]:
    """Parameter counts per part of the encoder."""
    rows = [("input embedding", sum(p.numel() for p in model.embed.parameters()))]
    for i, block in enumerate(model.spv_blocks):
        rows.append((f"block {i}: voxel branch", sum(p.numel() for p in block.voxel.parameters())))
        rows.append((f"block {i}: point branch", sum(p.numel() for p in block.point.parameters())))
    rows.append(("head", sum(p.numel() for p in model.head.parameters())))
    return rows


def describe(config: ModelConfig) -> int:
    model = Encoder3D(config, "table")
    enc = config.encoder
    print(
        f"{config.name}: {config.dataset}, width {enc.hidden}, scales {list(enc.scale_list)}, "
        f"{config.num_classes} classes, voxel {config.grid.voxel_size(1)} m"
    )
    rows = parameter_table(model)
    for name, count in rows:
        print(f"  {name:<28}{count:>14,}")
    print(f"  {'total':<28}{sum(c for _, c in rows):>14,}")
    return 0


def _load_scan(path: Path | None, fmt: PointFormat, config: ModelConfig) -> tuple[str, torch.Tensor]:
    if path is not None:
        return str(path), torch.from_numpy(read_points(path, fmt, config.input.intensity_max))
    scans = real_scans(("nuscenes",), config.input.intensity_max)
    if scans:
        return scans[0].name, scans[0].points
    # No data at hand: a synthetic ring-shaped sweep is enough to exercise the whole path.
    return "synthetic ring sweep", synthetic_sweep(intensity_max=config.input.intensity_max)


def smoke(config: ModelConfig, scan: Path | None, fmt: PointFormat) -> int:
    """Preprocess one scan, run the table encoder (random weights) and compare with spconv."""
    name, points = _load_scan(scan, fmt, config)
    keep = crop_mask(points[:, :3], config.grid)
    timings: dict[str, float] = {}
    inputs = prepare_inputs(points[keep], config, timings=timings)
    torch.manual_seed(0)
    model = Encoder3D(config, "table").eval()
    start = time.perf_counter()
    with torch.no_grad():
        logits = model(inputs)
    encoder_ms = (time.perf_counter() - start) * 1e3
    print(f"scan: {name}: {points.shape[0]:,} points, {int(keep.sum()):,} inside the crop")
    print("voxels per scale: " + ", ".join(f"s={s}: {v.num_voxels:,}" for s, v in inputs.voxels.items()))
    print("preprocessing ms: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"table encoder ({config.name}, random weights): {encoder_ms:.0f} ms, logits {tuple(logits.shape)}")
    if logits.shape[0] != int(keep.sum()) or not bool(torch.isfinite(logits).all()):
        print("FAILED: logits are not one finite row per point", file=sys.stderr)
        return 1
    if spconv_available():
        reference = Encoder3D(config, "spconv").eval()
        reference.load_state_dict(model.state_dict())
        with torch.no_grad():
            expected = reference(inputs)
        agreement = float((logits.argmax(1) == expected.argmax(1)).float().mean())
        diff = float((logits - expected).abs().max())
        print(f"spconv reference: argmax agreement {agreement:.4%}, max |Δ| {diff:.2e}")
        if agreement < 0.999:
            print("FAILED: table and spconv disagree", file=sys.stderr)
            return 1
    else:
        print("spconv not installed: reference comparison skipped (pip install '.[cpu]')")
    print("OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seg3d",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    configs = ", ".join(bundled_configs())
    d = sub.add_parser("describe", help="parameter counts of an encoder config")
    d.add_argument("--config", default="nuscenes_full", help=f"bundled name ({configs}) or YAML path")
    s = sub.add_parser("smoke", help="preprocess a scan, run the encoder, compare with spconv")
    s.add_argument("--config", default="tiny", help=f"bundled name ({configs}) or YAML path")
    s.add_argument(
        "--scan",
        type=Path,
        default=None,
        help="a .bin point file (default: a real nuScenes sweep if found, else synthetic)",
    )
    s.add_argument(
        "--format",
        type=PointFormat,
        choices=list(PointFormat),
        default=PointFormat.NUSCENES,
        help="; ".join(f"{f.value}: {f.description}" for f in PointFormat) + " (default nuscenes)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "describe":
            return describe(config)
        return smoke(config, args.scan, args.format)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
