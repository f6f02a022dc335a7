"""Service settings: command-line flags override ``SEG_*`` environment variables override defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from seg3d.manifest import check_model_name
from seg3d.model import TorchPrecision
from serve.backends import BackendName

__all__ = ["DEFAULT_MODEL_DIR", "BackendChoice", "ServeSettings"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "demo"
#: ``auto`` or one backend of `serve.backends.BackendName`.
BackendChoice = Literal["auto", BackendName]


class ServeSettings(BaseSettings):
    """Everything the service reads at start-up (``SEG_MODEL``, ``SEG_BACKEND``, ``SEG_PORT`` …)."""

    model_config = SettingsConfigDict(env_prefix="SEG_", extra="ignore", protected_namespaces=())

    model: Path = Field(DEFAULT_MODEL_DIR, description="export folder with manifest.json and model.onnx")
    model_name: str | None = Field(
        None,
        description="the name the service reports and answers to (default: the manifest's model.name)",
    )
    backend: BackendChoice = "auto"
    torch_precision: TorchPrecision = Field(
        "fp32",
        description="precision of the torch backend (also as an auto candidate): fp32, bf16 "
        "(weights stored in bf16 at load; float32 input embedding, pool sums and logits), or fp16 "
        "(likewise in float16; CUDA only)",
    )
    onnx_graph: str | None = Field(
        None,
        description="the exported graph the onnxruntime backend runs, by its manifest name (dense-fp32, "
        "sparse-int8, …: the primary and export's --also variants); default the primary, and with "
        "backend auto every graph of the export is timed",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    grpc_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="if set, also serve the Open Inference Protocol over gRPC on this port (same host; "
        "needs the grpc extra)",
    )
    max_points: int = Field(2_000_000, ge=1, description="larger clouds get 413")
    max_queue: int = Field(8, ge=1, description="requests admitted at once (running + waiting); more get 503")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503")
    max_batch: int = Field(
        1,
        ge=1,
        description="clouds segmented in one backend call when requests wait for the inference "
        "thread (micro-batching; serve.batching); 1 = off, each request alone. Off by default: on "
        "a 2-core CPU it did not raise throughput and took 6x the memory at nuscenes_full "
        "(bench/results/batching-cpu2-amd-epyc.md); a GPU host should try 8",
    )
    batch_window_ms: float = Field(
        2.0,
        ge=0,
        description="with max_batch > 1: how long after the first waiting request more may join its batch",
    )
    max_batch_points: int = Field(
        300_000,
        ge=1,
        description="with max_batch > 1: points (decoded) per batch; a larger cloud runs alone",
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for inference (default: all)")
    auth_token: str | None = Field(None, description="if set, requests need 'Authorization: Bearer <token>'")
    warmup_points: int = Field(20_000, ge=1, description="size of the synthetic warm-up cloud")
    keep_up: bool = Field(
        False,
        description="if the model fails to load, stay up answering 503 model_unavailable (else exit 3)",
    )
    log_level: str = "info"

    @field_validator("model_name")
    @classmethod
    def _path_segment(cls, name: str | None) -> str | None:
        return None if name is None else check_model_name(name)  # one URL path segment

    @field_validator("grpc_port")
    @classmethod
    def _other_port(cls, grpc_port: int | None, info: ValidationInfo) -> int | None:
        # one port cannot take both servers: the second to bind would fail after the first started
        port = info.data.get("port")
        if grpc_port is not None and grpc_port == port:
            raise ValueError(f"must differ from the HTTP port ({port})")
        return grpc_port
