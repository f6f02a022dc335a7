"""Export the 3D encoder alone: plugin-free ONNX graph, manifest, and a TensorRT engine on GPU hosts.

    python export/to_trt.py --checkpoint runs/demo/best.pt --out exports/mymodel
    python export/to_trt.py --config nuscenes_full --random-init --out /tmp/full --precision fp16
    python export/to_trt.py --checkpoint best.pt --out exports/v2 --parity-scans a.pcd.bin b.pcd.bin
    python export/to_trt.py --config nuscenes_full --random-init --out /tmp/sparse --graph sparse
    python export/to_trt.py --checkpoint best.pt --out x8 --graph sparse --precision int8 --calibrate /nusc
    python export/to_trt.py --onnx exports/mymodel/model.onnx   # build the engine later, on a GPU host

Steps: load a checkpoint of any mode (3d, 2dpass, 2ddata) and keep only its 3D encoder -> fold
BatchNorm -> write the graph with dynamic point/voxel/table dims -> ONNX checker and the TensorRT
operator allowlist (export/trt_allowlist.yaml) -> ONNX Runtime parity against the spconv PyTorch
reference -> model.engine when TensorRT and a GPU are present, with the same parity gate run on the
engine itself -> manifest.json. Files are staged and
moved into --out only when every step succeeded; a non-empty --out is refused unless --overwrite.

Parity runs on the scans of --parity-scans; without them on the real scans of $SEG3D_REAL_DATA or
../shared/data/real; when there are none, on synthetic sweeps. The manifest records which (parity.source).
A skipped check (--skip-parity, or spconv not installed) prints a WARNING on stderr; --strict fails it.
The gate is the argmax agreement with the spconv fp32 reference on every scan: at least 99.9 % for
fp32, 99.5 % for fp16, 99 % for int8.

int8 (explicit quantization, export/calibrate.py): the float graph runs over the --calibrate clouds
(files, folders, a nuScenes-layout or SemanticKITTI root: sweeps of the sensor the model will see)
and each layer's input range is chosen by --calibrate-method. When the all-int8 graph's labels
agree with the float graph's on less than --int8-target of the calibration points, the layers
where int8 changes the most labels return to float32, the fewest that reach the target. The
manifest records every layer's precision, the ranges, and the calibration (graph.layers,
graph.quantization); the parity gate then decides.

The model's name (manifest model.name, the service's /v2/models/NAME) is --name, else the --out
folder's name.

Exit codes: 0 done, 2 bad input (missing/corrupt checkpoint, mismatched config, bad --name or
--parity-scans, unwritable or non-empty --out), 3 a check failed (allowlist, parity below threshold,
parity skipped with --strict, engine build).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import onnx
import torch

from export.allowlist import AllowlistViolation, check_graph
from export.calibrate import (
    CALIBRATION_METHODS,
    calibrate,
    calibration_clouds,
    graph_feeds,
    select_int8_layers,
)
from export.manifest import build_manifest, graph_info
from export.onnx_graph import build_encoder_graph
from export.parity import engine_session, ort_runtime, ort_session, run_parity
from export.profiles import (
    check_max_points,
    default_workspace_bytes,
    max_points_limit,
    memory_estimate,
    profile_shapes,
)
from export.tensorrt_build import TensorRTUnavailable, build_engine, tensorrt_status
from seg3d.checkpoint import (
    ENCODER_PREFIX,
    Checkpoint,
    CheckpointError,
    Mode,
    load_checkpoint,
    load_encoder,
    save_checkpoint,
)
from seg3d.config import ModelConfig, bundled_configs, load_config
from seg3d.io import file_sha256
from seg3d.manifest import (
    GRAPH_FORMS,
    EngineInfo,
    FileRecord,
    GraphForm,
    GraphVariant,
    ManifestError,
    ParityReport,
    Precision,
    QuantizationInfo,
    RefusedVariant,
    check_model_name,
    file_record,
    graph_name,
    load_manifest,
    write_manifest,
)
from seg3d.model import Encoder3D, spconv_available
from seg3d.model.folding import fold_state_dict
from seg3d.points import PointFormat, read_points
from seg3d.preprocess import crop_mask
from seg3d.scans import RealScan, real_data_dir, real_scans, synthetic_sweep

#: Minimum argmax agreement with the spconv reference, per precision.
PARITY_THRESHOLD = {"fp32": 0.999, "fp16": 0.995, "int8": 0.99}
#: Graph form of ``--graph`` when not given. ``dense``: with ONNX Runtime on 2 CPU cores the sparse
#: form ran a real nuScenes sweep 3x faster at nuscenes_full but gained nothing end to end at tiny
#: (10 ms less in the graph, 12-15 ms more to build its tables), and the TensorRT serving backend
#: feeds the dense form only.
DEFAULT_GRAPH: GraphForm = "dense"
#: Seeds of the synthetic sweeps parity falls back to when no real scan is at hand.
SYNTHETIC_PARITY_SEEDS = (0, 1, 2)


class CheckFailed(RuntimeError):
    """A verification step failed: nothing is written to --out."""


def _variant(text: str) -> tuple[GraphForm, Precision]:
    """``FORM:PRECISION`` of ``--also`` (argparse type)."""
    form, _, precision = text.partition(":")
    if form not in GRAPH_FORMS or precision not in PARITY_THRESHOLD:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected FORM:PRECISION with FORM in {', '.join(GRAPH_FORMS)} and PRECISION in "
            f"{', '.join(PARITY_THRESHOLD)} (e.g. sparse:int8)"
        )
    return form, cast(Precision, precision)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python export/to_trt.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="training checkpoint (any mode) to export")
    source.add_argument("--random-init", action="store_true", help="export an untrained model of --config")
    source.add_argument("--onnx", type=Path, help="existing export: build only its TensorRT engine")
    p.add_argument(
        "--config",
        help=f"bundled config ({', '.join(bundled_configs())}) or YAML path; with "
        "--checkpoint it must match the checkpoint's own config",
    )
    p.add_argument("--out", type=Path, help="output folder (created); required unless --onnx")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the export in --out if it exists and is not empty (else refused)",
    )
    p.add_argument(
        "--name",
        help="the model's name in its manifest and the service's URLs (/v2/models/NAME): 1 to 64 "
        "letters, digits, '-', '_' or '.' (default: the --out folder's name)",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        default="fp32",
        help="fp16 stores weights and runs convs/linears in float16; int8 quantizes the convs/linears' "
        "weights (per output channel) and inputs (per tensor, calibrated); reductions stay float32",
    )
    p.add_argument(
        "--calibrate",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="int8 (required): clouds to calibrate on, from the sensor the model will see: point "
        "files, folders of *.bin files, a nuScenes-layout root (its samples/LIDAR_TOP sweeps) or a "
        "SemanticKITTI root",
    )
    p.add_argument(
        "--calibrate-format",
        choices=[f.value for f in PointFormat],
        default=PointFormat.NUSCENES.value,
        help="format of --calibrate files and plain folders (default nuscenes; dataset roots know theirs)",
    )
    p.add_argument(
        "--calibrate-clouds",
        type=int,
        default=16,
        help="int8: clouds to calibrate on, evenly spaced (default 16)",
    )
    p.add_argument(
        "--calibrate-method",
        choices=list(CALIBRATION_METHODS),
        default="percentile",
        help="int8: how each layer's input range is chosen: minmax, the --calibrate-percentile of the "
        "magnitudes, or entropy (least KL divergence) (default percentile)",
    )
    p.add_argument(
        "--calibrate-percentile",
        type=float,
        default=99.99,
        help="int8 with --calibrate-method percentile: the percentile of |x| kept (default 99.99)",
    )
    p.add_argument(
        "--int8-target",
        type=float,
        default=0.995,
        help="int8: label agreement with the float graph on the calibration clouds that the int8 layer "
        "mix must reach; the most sensitive layers return to float32 until it does (default 0.995)",
    )
    p.add_argument(
        "--graph",
        choices=list(GRAPH_FORMS),
        default=DEFAULT_GRAPH,
        help="how the graph computes its 3x3x3 convolutions: 'dense' gathers all 27 taps of every "
        "voxel into one MatMul; 'sparse' multiplies only the neighbours present and sums them per "
        f"voxel (other graph inputs; recorded in the manifest). Default {DEFAULT_GRAPH}",
    )
    p.add_argument(
        "--also",
        action="append",
        default=[],
        type=_variant,
        metavar="FORM:PRECISION",
        help="also write this graph of the same weights (repeatable, e.g. --also sparse:fp32 --also "
        "sparse:int8), each through the allowlist and its own parity gate, as model.FORM-PRECISION.onnx; "
        "one the gate refuses is not written and the manifest says why (refused_variants). The service "
        "serves any of them (--onnx-graph) and 'auto' times them all. The engine is built from the "
        "primary graph (--graph, --precision) only",
    )
    p.add_argument(
        "--onnx-only", action="store_true", help="skip the TensorRT engine even if TensorRT is present"
    )
    p.add_argument(
        "--max-points",
        type=int,
        default=300_000,
        help="engine profile max points (default 300k; the largest tensor must stay under 2^31 elements: "
        f"at most {max_points_limit(load_config('nuscenes_full')):,} for nuscenes_full)",
    )
    p.add_argument("--opt-points", type=int, default=35_000, help="engine profile opt points (default 35k)")
    p.add_argument(
        "--min-points", type=int, default=1, help="engine profile min points (default 1: any cloud)"
    )
    p.add_argument(
        "--skip-parity", action="store_true", help="do not run the ONNX Runtime vs spconv check (warns)"
    )
    p.add_argument(
        "--parity-scans",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="point files to run the parity check on (default: the real scans of $SEG3D_REAL_DATA or "
        "../shared/data/real, else synthetic sweeps)",
    )
    p.add_argument(
        "--parity-format",
        choices=[f.value for f in PointFormat],
        default=PointFormat.NUSCENES.value,
        help="format of the --parity-scans files (default nuscenes)",
    )
    p.add_argument(
        "--strict", action="store_true", help="fail (exit 3) when the parity check would be skipped"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init weights (default 0)")
    p.add_argument(
        "--workspace-gib",
        type=float,
        help="TensorRT builder workspace (default: what the GPU has beyond the estimated activations "
        "and 2 GiB, between 1 and 8 GiB)",
    )
    return p


def _load_model(args: argparse.Namespace) -> tuple[Encoder3D, ModelConfig, Mode, str, str | None]:
    """The 3D encoder to export, its config, mode, a source description and the checkpoint's hash."""
    if args.random_init:
        if not args.config:
            raise ValueError("--random-init needs --config")
        config = load_config(args.config)
        torch.manual_seed(args.seed)
        return Encoder3D(config, "table").eval(), config, "3d", f"random init, seed {args.seed}", None
    checkpoint = load_checkpoint(args.checkpoint)
    config = checkpoint.model_config
    if args.config:
        wanted = load_config(args.config)
        if wanted != config:
            raise CheckpointError(
                f"{args.checkpoint}: its config {config.name!r} does not match --config {wanted.name!r} "
                "(omit --config to use the checkpoint's own)"
            )
    model = load_encoder(checkpoint)
    return model, config, checkpoint.mode, f"checkpoint {args.checkpoint.name}", file_sha256(args.checkpoint)


def _model_name(args: argparse.Namespace) -> str:
    """--name, else the --out folder's name; one URL path segment."""
    name: str = args.name if args.name is not None else Path(args.out).resolve().name
    try:
        return check_model_name(name)
    except ValueError as exc:
        given = "--name" if args.name is not None else "the --out folder's name (default of --name)"
        raise ValueError(f"{given} {exc}" + ("" if args.name is not None else "; pass --name")) from None


def _parity_skip_reason(args: argparse.Namespace) -> str | None:
    if args.skip_parity:
        return "--skip-parity"
    if not spconv_available():
        return "spconv is not installed"
    return None


def _user_scans(paths: list[Path], fmt: str, config: ModelConfig) -> list[RealScan]:
    """The --parity-scans clouds, in the model's intensity scale; each must have points in the crop."""
    scans = []
    for path in paths:
        points = torch.from_numpy(read_points(path, fmt, config.input.intensity_max))
        if not bool(crop_mask(points[:, :3], config.grid).any()):
            raise ValueError(f"--parity-scans {path}: no point inside the model's crop range")
        scans.append(RealScan(f"{fmt}/{path.name}", fmt, path, points))
    return scans


def _parity_scans(user: list[RealScan] | None, config: ModelConfig) -> tuple[list[RealScan], str]:
    """The clouds parity runs on and their source: the user's, the real scans, else synthetic.
    Resolved once per export: the graph's gate and the engine's read the same clouds."""
    if user:
        return user, "user"
    real = real_scans(("nuscenes", "kitti"), config.input.intensity_max)
    if real:
        print(f"parity on the real scans of {real_data_dir()}")
        return real, "real"
    print(
        "parity on synthetic sweeps: no real scans found ($SEG3D_REAL_DATA or ../shared/data/real); "
        "pass --parity-scans FILE ... to check on your own"
    )
    synthetic = [
        RealScan(
            f"synthetic/seed{seed}",
            "synthetic",
            Path(f"synthetic-seed{seed}"),
            synthetic_sweep(seed=seed, intensity_max=config.input.intensity_max),
        )
        for seed in SYNTHETIC_PARITY_SEEDS
    ]
    return synthetic, "synthetic"


def _parity_gate(
    session: Any,  # onnxruntime.InferenceSession or export.parity.EngineSession
    runtime: str,
    model: Encoder3D,
    config: ModelConfig,
    precision: Precision,
    scans: tuple[list[RealScan], str],
    what: str = "",
    graph: GraphForm = "dense",
    reference_logits: dict[str, npt.NDArray[np.float32]] | None = None,
) -> ParityReport:
    """Run ``session`` (ONNX Runtime, or the engine behind the same ``run`` interface) against the
    spconv reference on ``scans`` (the clouds and their source, `_parity_scans`); `CheckFailed`
    below the precision's threshold. ``what`` prefixes the printed lines and the error ("engine ")."""
    clouds, source = scans
    reference = Encoder3D(config, "spconv")
    reference.load_state_dict(model.state_dict())
    results = run_parity(
        session, reference.eval(), config, clouds, graph=graph, reference_logits=reference_logits
    )
    worst = min(r.argmax_agreement for r in results)
    threshold = PARITY_THRESHOLD[precision]
    for r in results:
        agreement, diff = r.argmax_agreement, r.max_abs_diff
        print(f"  {what}{r.scan}: {r.points:,} points, agreement {agreement:.4%}, max |Δ| {diff:.2e}")
    if worst < threshold:
        raise CheckFailed(
            f"{what}parity {worst:.4%} below {threshold:.1%} for {precision} ({source} scans, {runtime})"
        )
    return ParityReport(
        status="passed",
        source=source,
        reference="spconv PyTorch model, unfolded BatchNorm, CPU fp32, one thread for the sparse convs",
        runtime=runtime,
        precision=precision,
        threshold_argmax_agreement=threshold,
        min_argmax_agreement=worst,
        max_abs_diff=max(r.max_abs_diff for r in results),
        scans=results,
    )


def _check_parity(
    model: Encoder3D,
    config: ModelConfig,
    onnx_bytes: bytes,
    precision: Precision,
    scans: tuple[list[RealScan], str],
    graph: GraphForm = "dense",
    reference_logits: dict[str, npt.NDArray[np.float32]] | None = None,
) -> ParityReport:
    session = ort_session(onnx_bytes, precision=precision)
    runtime = ort_runtime(precision)
    return _parity_gate(
        session, runtime, model, config, precision, scans, graph=graph, reference_logits=reference_logits
    )


def _check_engine_parity(
    folder: Path,
    engine: EngineInfo,
    model: Encoder3D,
    config: ModelConfig,
    precision: Precision,
    scans: tuple[list[RealScan], str],
    graph: GraphForm = "dense",
    reference_logits: dict[str, npt.NDArray[np.float32]] | None = None,
) -> EngineInfo:
    """The ONNX parity gate, same scans and thresholds, on the built engine: TensorRT may pick
    other kernels (and TF32 or fp16 accumulation) than ONNX Runtime on CPU. A failing engine is
    deleted."""
    session = engine_session(folder, config)
    runtime = session.description + (" (TF32 off)" if precision == "fp32" else "")
    try:
        report = _parity_gate(
            session, runtime, model, config, precision, scans, "engine ", graph, reference_logits
        )
    except CheckFailed:
        (folder / engine.file).unlink(missing_ok=True)
        raise
    return engine.model_copy(update={"parity": report})


def _reference_points(config: ModelConfig) -> torch.Tensor:
    """A cloud to size the engine's optimization profile: a real nuScenes sweep, else a synthetic one."""
    sweeps = real_scans(("nuscenes",), config.input.intensity_max)
    return sweeps[0].points if sweeps else synthetic_sweep(intensity_max=config.input.intensity_max)


def _engine(
    onnx_path: Path,
    engine_path: Path,
    model: onnx.ModelProto,
    config: ModelConfig,
    args: argparse.Namespace,
    precision: Precision,
) -> EngineInfo:
    shapes = profile_shapes(
        model, config, _reference_points(config), args.min_points, args.opt_points, args.max_points
    )
    points = {"min": args.min_points, "opt": args.opt_points, "max": args.max_points}
    cache = engine_path.with_name("timing.cache")
    estimate = memory_estimate(config, args.max_points, precision)
    device_bytes = int(torch.cuda.get_device_properties(0).total_memory)
    print(f"engine memory [estimate]: {estimate.describe()}; this GPU has {device_bytes / 1e9:.1f} GB")
    if estimate.activation_bytes > device_bytes:
        print(
            f"WARNING: the activations at --max-points {args.max_points:,} may not fit this GPU; "
            "lower --max-points if the build or the service runs out of memory",
            file=sys.stderr,
        )
    workspace = (
        int(args.workspace_gib * (1 << 30))
        if args.workspace_gib is not None
        else default_workspace_bytes(estimate, device_bytes)
    )
    print(f"builder workspace {workspace / 2**30:.1f} GiB")
    return build_engine(onnx_path, engine_path, shapes, cache, points, workspace, precision)


def _int8_graph(
    folded: dict[str, torch.Tensor], config: ModelConfig, form: GraphForm, args: argparse.Namespace
) -> tuple[onnx.ModelProto, QuantizationInfo]:
    """Calibrate, choose the int8 layers, and build the int8 graph (export/calibrate.py)."""
    if not 0 < args.int8_target <= 1:
        raise ValueError(f"--int8-target must be in (0, 1], got {args.int8_target}")
    if not args.calibrate:
        raise ValueError(
            "--precision int8 needs --calibrate: sweeps of the sensor the model will see (point files, "
            "folders, a nuScenes-layout or SemanticKITTI root); ranges from other data clip real ones"
        )
    clouds, described = calibration_clouds(
        args.calibrate, args.calibrate_format, config, args.calibrate_clouds
    )
    print(f"int8: calibrating on {described}")
    feeds = graph_feeds([c.points for c in clouds], config, form)
    calibration = calibrate(
        folded, config, feeds, args.calibrate_method, form, args.calibrate_percentile, described
    )
    chosen = select_int8_layers(folded, config, calibration, feeds, args.int8_target, form)
    graph = build_encoder_graph(folded, config, "int8", form, chosen.scales)
    print(
        f"int8: {len(chosen.scales)} layers in int8, {len(chosen.float_layers)} returned to float32; "
        f"{chosen.agreement:.4%} label agreement with the float graph on the calibration clouds"
    )
    return graph, QuantizationInfo(
        scheme="int8, symmetric (zero point 0): weights per output channel, layer inputs per tensor",
        method=calibration.method,
        percentile=calibration.percentile,
        calibration=described,
        clouds=calibration.clouds,
        target_agreement=args.int8_target,
        calibration_agreement=chosen.agreement,
        float_layers=chosen.float_layers,
        activation_ranges={layer: calibration.ranges[layer] for layer in chosen.scales},
    )


def _also(args: argparse.Namespace) -> list[tuple[GraphForm, Precision]]:
    """The distinct ``--also`` graphs, checked before any work: not the primary, int8 calibrated."""
    also: list[tuple[GraphForm, Precision]] = list(dict.fromkeys(args.also))
    if (args.graph, args.precision) in also:
        raise ValueError(f"--also {args.graph}:{args.precision} is the primary graph (--graph, --precision)")
    if any(p == "int8" for _, p in also) and not args.calibrate:
        raise ValueError("--also …:int8 needs --calibrate, as --precision int8 does")
    return also


def _checked_graph(
    folded: dict[str, torch.Tensor],
    config: ModelConfig,
    form: GraphForm,
    precision: Precision,
    args: argparse.Namespace,
) -> tuple[onnx.ModelProto, QuantizationInfo | None, list[str]]:
    """One graph built (calibrated for int8) and through the ONNX checker and the allowlist."""
    quantization = None
    if precision == "int8":
        graph, quantization = _int8_graph(folded, config, form, args)
    else:
        graph = build_encoder_graph(folded, config, precision, form)
    onnx.checker.check_model(graph, full_check=True)
    try:
        op_types = check_graph(graph)
    except AllowlistViolation as exc:
        raise CheckFailed(str(exc)) from exc
    return graph, quantization, op_types


def _variants(
    also: list[tuple[GraphForm, Precision]],
    folded: dict[str, torch.Tensor],
    model: Encoder3D,
    config: ModelConfig,
    args: argparse.Namespace,
    scans: tuple[list[RealScan], str] | None,
    staging: Path,
    reference_logits: dict[str, npt.NDArray[np.float32]],
) -> tuple[list[GraphVariant], list[RefusedVariant]]:
    """The ``--also`` graphs, each written to ``staging`` only when its parity gate passes (or is
    skipped, as the primary's is); the refused ones with the gate's reason."""
    written: list[GraphVariant] = []
    refused: list[RefusedVariant] = []
    for form, precision in also:
        name = graph_name(form, precision)
        print(f"also: {name}")
        graph, quantization, op_types = _checked_graph(folded, config, form, precision, args)
        data = graph.SerializeToString()
        try:
            parity = (
                _check_parity(model, config, data, precision, scans, form, reference_logits)
                if scans is not None
                else ParityReport(status="skipped", reason=_parity_skip_reason(args))
            )
        except CheckFailed as exc:
            print(f"also: {name} refused, not written: {exc}", file=sys.stderr)
            refused.append(RefusedVariant(name=name, reason=str(exc)))
            continue
        file = f"model.{name}.onnx"
        (staging / file).write_bytes(data)
        info = graph_info(graph, op_types, file, quantization)
        written.append(GraphVariant(name=name, precision=precision, graph=info, parity=parity))
    return written, refused


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} exists and is not empty; pass --overwrite to replace its export")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise PermissionError(f"--out {out} is not writable: {exc.strerror or exc}") from exc


def export(args: argparse.Namespace) -> Path:
    if args.out is None:
        raise ValueError("--out is required")
    if args.parity_scans and args.skip_parity:
        raise ValueError("--parity-scans and --skip-parity contradict each other: pass one")
    name = _model_name(args)
    skip_reason = _parity_skip_reason(args)
    if skip_reason is not None:
        print(f"WARNING: parity check skipped: {skip_reason}", file=sys.stderr)
        if args.strict:
            raise CheckFailed(f"parity check skipped ({skip_reason}) and --strict: nothing exported")
    if skip_reason is None and not args.parity_scans:
        real_data_dir()  # a mistyped $SEG3D_REAL_DATA fails now, not after the graph is built
    _check_out_dir(args.out, args.overwrite)
    model, config, mode, source, checkpoint_sha256 = _load_model(args)
    if not args.onnx_only:
        check_max_points(config, args.max_points)
    scans = None  # the parity clouds, read once for the graph's gate and the engine's
    if skip_reason is None:
        user = _user_scans(args.parity_scans, args.parity_format, config) if args.parity_scans else None
        scans = _parity_scans(user, config)
    form: GraphForm = args.graph
    also = _also(args)
    print(f"exporting {name}: {config.name} ({mode}, {source}) as {args.precision}, {form} graph")
    folded = fold_state_dict(model.state_dict(), model)
    graph, quantization, op_types = _checked_graph(folded, config, form, args.precision, args)
    onnx_bytes = graph.SerializeToString()

    staging = Path(tempfile.mkdtemp(dir=args.out, prefix=".export-"))
    files: dict[str, FileRecord] = {}
    try:
        onnx_path = staging / "model.onnx"
        onnx_path.write_bytes(onnx_bytes)
        # The encoder's own weights (unfolded), for the torch and spconv serving backends.
        weights = {ENCODER_PREFIX + k: v for k, v in model.state_dict().items()}
        save_checkpoint(
            staging / "encoder3d.pt", Checkpoint(mode=mode, model_config=config, state_dict=weights)
        )
        print(f"wrote graph: {len(graph.graph.node)} nodes, ops {', '.join(op_types)}")
        reference_logits: dict[str, npt.NDArray[np.float32]] = {}  # the spconv reference runs once per scan
        parity = (
            _check_parity(model, config, onnx_bytes, args.precision, scans, form, reference_logits)
            if scans is not None
            else ParityReport(status="skipped", reason=skip_reason)
        )
        variants, refused = _variants(also, folded, model, config, args, scans, staging, reference_logits)
        engine = None
        ok, why = tensorrt_status()
        if args.onnx_only:
            print("--onnx-only: no TensorRT engine built")
        elif ok:
            engine = _engine(onnx_path, staging / "model.engine", graph, config, args, args.precision)
            if scans is not None:
                engine = _check_engine_parity(
                    staging, engine, model, config, args.precision, scans, form, reference_logits
                )
        else:
            print(
                f"no TensorRT engine: {why}. On a GPU host with TensorRT run:\n"
                f"  python export/to_trt.py --onnx {args.out / 'model.onnx'}"
            )
        artifacts = ["model.onnx", "encoder3d.pt", *(v.graph.file for v in variants)]
        artifacts += ["model.engine"] if engine is not None else []
        files = {file: file_record(staging / file) for file in artifacts}
        manifest = build_manifest(
            config=config,
            mode=mode,
            random_init=bool(args.random_init),
            precision=args.precision,
            onnx_model=graph,
            op_types=op_types,
            files=files,
            parity=parity,
            engine=engine,
            source=source,
            checkpoint_sha256=checkpoint_sha256,
            name=name,
            quantization=quantization,
            variants=variants,
            refused_variants=refused,
        )
        write_manifest(staging, manifest)
        for file in [*artifacts, "timing.cache", "manifest.json"]:  # manifest last
            if (staging / file).exists():
                os.replace(staging / file, args.out / file)
        if engine is None and (args.out / "model.engine").exists():
            (args.out / "model.engine").unlink()  # a stale engine would not match the new graph
        for stale in args.out.glob("model.*-*.onnx"):  # variants of an export this one replaced
            if stale.name not in files:
                stale.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"done: {args.out}: {', '.join(files)}, manifest.json (model {name})")
    if skip_reason is not None:
        print(f"WARNING: parity check skipped: {skip_reason}", file=sys.stderr)
    return Path(args.out)


def build_from_onnx(args: argparse.Namespace) -> Path:
    """Build the engine of an existing export folder (on a GPU host) and record it in its manifest."""
    onnx_path: Path = args.onnx
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX graph not found: {onnx_path}")
    folder = onnx_path.parent
    manifest = load_manifest(folder)  # verifies the graph the engine is built from
    if manifest.graph.file != onnx_path.name:
        raise ManifestError(f"{folder}/manifest.json describes {manifest.graph.file}, not {onnx_path.name}")
    ok, why = tensorrt_status()
    if not ok:
        raise TensorRTUnavailable(f"cannot build an engine here: {why}")
    check_max_points(manifest.config, args.max_points)
    model = onnx.load(str(onnx_path))
    engine_path = onnx_path.with_name("model.engine")
    precision = manifest.model.precision
    engine = _engine(onnx_path, engine_path, model, manifest.config, args, precision)
    skip_reason = _parity_skip_reason(args)
    if skip_reason is None:
        encoder = load_encoder(folder / "encoder3d.pt")
        scans = _parity_scans(None, manifest.config)
        engine = _check_engine_parity(
            folder, engine, encoder, manifest.config, precision, scans, manifest.graph.form
        )
    else:
        print(f"WARNING: engine parity check skipped: {skip_reason}", file=sys.stderr)
        if args.strict:
            engine_path.unlink(missing_ok=True)
            raise CheckFailed(f"engine parity check skipped ({skip_reason}) and --strict")
    write_manifest(
        folder,
        manifest.model_copy(
            update={
                "engine": engine,
                "files": {**manifest.files, engine.file: file_record(engine_path)},
                "versions": {**manifest.versions, "tensorrt": engine.tensorrt},
            }
        ),
    )
    print(f"done: {engine_path}")
    return engine_path


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.onnx is not None:
            build_from_onnx(args)
        else:
            export(args)
    except (FileNotFoundError, PermissionError, ValueError) as exc:  # CheckpointError, ManifestError too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CheckFailed, TensorRTUnavailable, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
