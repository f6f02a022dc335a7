"""``python -m serve``: run the segmentation service with uvicorn.

    python -m serve                                   # models/demo on the fastest backend here
    python -m serve --model exports/full --backend onnxruntime --port 8080

Every flag also reads from the environment (``SEG_MODEL``, ``SEG_BACKEND``, ``SEG_HOST``, ``SEG_PORT``,
``SEG_MAX_POINTS``, ``SEG_MAX_QUEUE``, ``SEG_THREADS``, ``SEG_AUTH_TOKEN`` …); flags win.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from serve.app import create_app
from serve.settings import ServeSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="export folder (manifest.json, model.onnx, ...)")
    parser.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime", "torch", "spconv"])
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--max-points", type=int, help="larger clouds get 413 (default 2,000,000)")
    parser.add_argument("--max-queue", type=int, help="requests admitted at once; more get 503 (default 8)")
    parser.add_argument("--threads", type=int, help="CPU threads for inference (default: all)")
    parser.add_argument("--log-level", help="uvicorn/service log level (default info)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = ServeSettings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not (settings.model / "manifest.json").is_file():
        print(
            f"error: {settings.model} has no manifest.json; export a model first, e.g.\n"
            f"  python export/to_trt.py --config tiny --random-init --out {settings.model}",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
