#!/usr/bin/env bash
# Build the TensorRT engine for this GPU on first start (engines are tied to GPU and TensorRT
# version), then serve it. The model folder is mounted read-write so the engine is kept.
set -euo pipefail
if [[ ! -f "${SEG_MODEL}/model.engine" ]]; then
    echo "no engine in ${SEG_MODEL}: building it for this GPU (one time, minutes)"
    python export/to_trt.py --onnx "${SEG_MODEL}/model.onnx"
fi
exec python -m serve "$@"
