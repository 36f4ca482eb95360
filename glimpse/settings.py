"""One settings object for the API, the workers and the CLI (environment, `GLIMPSE_` prefix)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLIMPSE_", extra="ignore")

    # Where things are.
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GLIMPSE_REDIS_URL", "REDIS_URL"),
        description="Redis to queue jobs in; unset means `glimpse up` starts its own.",
    )
    models_dir: Path = Field(default=Path("models"), description="Folder of model folders.")
    default_model: str = Field(
        default="resnet50", description="Model used when a request names none."
    )
    queue_name: str = "glimpse"
    key_prefix: str = Field(
        default="glimpse", description="Prefix of every Redis key Glimpse writes."
    )

    # Limits on what a client may send.
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_queue_length: int = Field(default=200, gt=0, description="Queued jobs before 503.")
    retry_after_s: int = Field(default=5, gt=0)

    # Jobs and their data.
    result_ttl_s: int = Field(
        default=24 * 3600, gt=0, description="How long jobs and results live."
    )
    job_timeout_s: int = Field(default=600, gt=0)
    sync_timeout_s: float = Field(
        default=60, gt=0, description="Time limit of the synchronous KServe :predict / :explain."
    )

    # The engine.
    batch_size: int = Field(default=64, ge=1, le=4096, description="Evaluations per model call.")
    segment_max_side: int = Field(
        default=640, ge=64, description="Images larger than this are segmented downscaled."
    )
    runtime: Literal["onnxruntime", "torch"] = Field(
        default="onnxruntime",
        description="onnxruntime, or torch (the ONNX graph run by PyTorch: glimpse[torch]).",
    )
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        default="fp32",
        description="Floating precision of the model's weights and activations (torch runtime; "
        "fp16 needs CUDA).",
    )
    torch_device: str = Field(
        default="auto", description="torch runtime: auto (CUDA if available), cpu, cuda, cuda:N."
    )
    channels_last: bool = Field(
        default=False, description="torch runtime: NHWC memory format for 4-D tensors."
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers, in order of preference.",
    )
    intra_op_threads: int = Field(default=0, ge=0, description="0 lets ONNX Runtime choose.")
    worker_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Workers lower their CPU priority by this much, so the API answers "
        "promptly on a machine whose cores the model keeps busy.",
    )
    fused_perturbation: bool = Field(
        default=True,
        description="Compose perturbed images inside the model graph (only z crosses per batch).",
    )

    @property
    def runtime_providers(self) -> list[str]:
        """Where the workers' runtime runs, as /v1/models reports it: the ONNX Runtime
        providers asked for, or the torch device (as configured), precision and layout."""
        if self.runtime == "torch":
            return [self.torch_device, self.precision] + (
                ["channels_last"] if self.channels_last else []
            )
        return list(self.providers)


@lru_cache
def get_settings() -> Settings:
    return Settings()
