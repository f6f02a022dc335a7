"""The segmentation service (FastAPI + uvicorn): ``POST /segment`` and the Open Inference Protocol
(KServe v2) over HTTP and gRPC.

Imports `seg3d` (the same preprocessing export used), never `training` (a test enforces it).

- `serve.__main__`: ``python -m serve`` (flags, ``SEG_*`` settings, exit codes);
- `serve.settings`: `ServeSettings`;
- `serve.app`: `create_app` — the error handlers, the docs and the routers;
- `serve.docs`: ``/docs`` (Swagger UI) from the vendored files in ``serve/static/swagger-ui/``;
- `serve.routes.health`: ``/v2/health/live``, ``/v2/health/ready``, ``/metrics``;
- `serve.routes.segment`: ``POST /segment``;
- `serve.routes.v2`: the Open Inference Protocol over HTTP (``/v2``, model metadata, ready, infer);
- `serve.protocol`: the protocol without a transport (tensors, formats, the REST body codec);
- `serve.grpc_service`: the protocol over gRPC, started beside uvicorn with ``--grpc-port``;
- `serve.inference`: what every protocol shares: admission and the inference thread;
- `serve.dependencies`: bearer auth, readiness, admission (FastAPI ``Depends``);
- `serve.errors`: the JSON error shape and its handlers;
- `serve.schemas`: the response models the OpenAPI schema documents (`SegmentResponse`, errors);
- `serve.metrics`: the Prometheus instruments, recorded by the segment route class;
- `serve.model`: loading and warm-up on a background thread, and the state (loading/ready/failed);
- `serve.segmenter`: one request's work, bytes in, labels out;
- `serve.backends`: TensorRT, ONNX Runtime, torch and spconv behind one interface;
- `serve.local`: run the service as a process on a free loopback port (tests, benchmarks).
"""
