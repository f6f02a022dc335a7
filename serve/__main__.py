"""python -m serve: run the segmentation service with uvicorn.

    python -m serve                                   # models/demo on the fastest backend here
    python -m serve --model exports/full --backend onnxruntime --port 8080 --name full

Every flag also reads from the environment (SEG_MODEL, SEG_MODEL_NAME for --name, SEG_BACKEND,
SEG_TORCH_PRECISION, SEG_HOST, SEG_PORT, SEG_GRPC_PORT, SEG_MAX_POINTS, SEG_MAX_QUEUE, SEG_MAX_BATCH,
SEG_THREADS, SEG_AUTH_TOKEN, SEG_KEEP_UP ...); flags win.

The model loads on a background thread while the server already answers /v2/health/live. If it
fails to load or warm up (missing or corrupt file, foreign manifest, a graph that does not parse, a
backend that cannot run, a warm-up inference that raises), one line naming the file and the cause
is logged and the process exits with code 3, unless --keep-up (SEG_KEEP_UP=1): then it stays up
and every route answers 503 model_unavailable with the cause.

Exit codes:
    0  stopped normally (SIGINT/SIGTERM);
    1  uvicorn could not start (e.g. the port or the --grpc-port is taken);
    2  bad arguments or settings (flags, SEG_* environment), no manifest.json in --model, or
       --grpc-port without the grpc extra installed;
    3  the model failed to load or warm up.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import get_args

import uvicorn
from pydantic import ValidationError

from seg3d.model import TorchPrecision
from serve.app import create_app
from serve.backends import DESCRIPTIONS, ORDER
from serve.settings import BackendChoice, ServeSettings

EXIT_BAD_SETTINGS = 2
EXIT_MODEL_FAILED = 3


#: Settings whose flag is not ``--`` plus the setting's name with dashes.
_FLAGS = {"model_name": "--name"}


def _settings_error(exc: ValidationError) -> str:
    """One line: each invalid setting with its flag, its environment variable and what is wrong."""
    parts = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"])
        value = error.get("input")
        given = f" = {value!r}" if isinstance(value, str | int | float) else ""
        flag = _FLAGS.get(name, f"--{name.replace('_', '-')}")
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{name}{given} ({flag} / SEG_{name.upper()}): {message}")
    return "; ".join(parts)


def _backend_help() -> str:
    """The ``--backend`` help: what each choice means, from `serve.backends.ORDER`."""
    each = "; ".join(f"{name}: {DESCRIPTIONS[name]}" for name in ORDER)
    return (
        f"inference backend. auto (the default): time every backend that can run here "
        f"({', '.join(ORDER)}) on a warm-up cloud and keep the fastest; {each}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="export folder (manifest.json, model.onnx, ...)")
    parser.add_argument(
        "--name",
        dest="model_name",
        metavar="NAME",
        help="the model name the service reports and answers to at /v2/models/NAME "
        "(default: the manifest's model.name); 1 to 64 letters, digits, '-', '_' or '.'",
    )
    parser.add_argument("--backend", choices=get_args(BackendChoice), help=_backend_help())
    parser.add_argument(
        "--torch-precision",
        choices=get_args(TorchPrecision),
        help="precision of the torch backend: fp32 (default), bf16 (weights converted to bf16 once "
        "at load; float32 input embedding, pool sums and logits; fastest on CPUs with AVX512-BF16/AMX), "
        "or fp16 (likewise in float16; CUDA only)",
    )
    parser.add_argument(
        "--onnx-graph",
        metavar="NAME",
        help="the exported graph the onnxruntime backend runs: a graph name of the export's manifest "
        "(dense-fp32, sparse-int8, …; export/to_trt.py --also writes more than one). Default: the "
        "primary graph; with --backend auto every graph is timed and the fastest kept",
    )
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--grpc-port",
        type=int,
        metavar="P",
        help="also serve the Open Inference Protocol (KServe v2) over gRPC on port P of --host "
        "(tritonclient.grpc and other Triton/KServe gRPC clients; needs the grpc extra: "
        "pip install '.[grpc]'). Default: HTTP only",
    )
    parser.add_argument("--max-points", type=int, help="larger clouds get 413 (default 2,000,000)")
    parser.add_argument("--max-queue", type=int, help="requests admitted at once; more get 503 (default 8)")
    parser.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        help="micro-batching: segment up to N of the requests waiting for the inference thread in "
        "one backend call (their labels are those of each alone); 1 = off, the default: on a 2-core "
        "CPU it gave 0.91-1.05x the throughput at 1-32 clients and 6x the server memory at "
        "nuscenes_full (bench/results/batching-cpu2-amd-epyc.md). On a GPU host try 8 (torch or "
        "ONNX Runtime CUDA; not measured here): a batch fills the GPU and pays its kernel launches once",
    )
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        metavar="MS",
        help="with --max-batch > 1: how long after the first waiting request more may join its "
        "batch (default 2)",
    )
    parser.add_argument(
        "--max-batch-points",
        type=int,
        metavar="N",
        help="with --max-batch > 1: points per batch (all the clouds' decoded points; bounds its "
        "memory); a larger cloud runs alone (default 300,000: about 8 nuScenes sweeps)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for inference (default: all)")
    parser.add_argument("--log-level", help="uvicorn/service log level (default info)")
    parser.add_argument(
        "--keep-up",
        action="store_true",
        default=None,
        help="if the model fails to load, stay up answering 503 model_unavailable instead of exiting 3",
    )
    args = parser.parse_args(argv)  # exits 2 on bad flags
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = ServeSettings(**overrides)
    except ValidationError as exc:
        print(f"error: invalid settings: {_settings_error(exc)}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not settings.keep_up and not (settings.model / "manifest.json").is_file():
        print(
            f"error: {settings.model} has no manifest.json; export a model first, e.g.\n"
            f"  python export/to_trt.py --config tiny --random-init --out {settings.model}",
            file=sys.stderr,
        )
        return EXIT_BAD_SETTINGS

    if settings.grpc_port is not None:
        try:  # the app imports it at start-up; a missing extra is a setup error, said here
            import serve.grpc_service  # noqa: F401
        except ImportError as exc:
            print(
                f"error: --grpc-port needs the grpc extra ({exc}); install it with pip install '.[grpc]'",
                file=sys.stderr,
            )
            return EXIT_BAD_SETTINGS

    failures: list[str] = []
    server: uvicorn.Server | None = None

    def stop(cause: str) -> None:  # on the loader thread; the cause is already logged
        failures.append(cause)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_failure=None if settings.keep_up else stop)
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    )
    try:
        server.run()
    except SystemExit:
        # uvicorn exits before serving: 1 when its port is taken, 3 when the app's start-up fails
        # (the gRPC port cannot be bound). 3 is this command's code for a failed model: say 1 for both.
        if server.started:
            raise
        return 1
    if failures:
        return EXIT_MODEL_FAILED
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
