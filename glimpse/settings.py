"""One settings object for the API, the workers and the CLI (environment, `GLIMPSE_` prefix)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from glimpse import sources
from glimpse.cards import FALLBACK_DEFAULT, read_default
from glimpse.keys import parse_digests


def default_models_dir() -> Path:
    """$XDG_DATA_HOME/glimpse/models, or ~/.local/share/glimpse/models: absolute, so the CLI,
    `glimpse up` and scripts/serve.sh find the same folder from any directory."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "glimpse" / "models"


class Settings(BaseSettings):
    # hide_input_in_errors: a bad setting's error must not echo secrets (an API key pasted
    # instead of its digest, a password in REDIS_URL) into logs.
    model_config = SettingsConfigDict(
        env_prefix="GLIMPSE_", extra="ignore", hide_input_in_errors=True
    )

    # Where things are.
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GLIMPSE_REDIS_URL", "REDIS_URL"),
        description="Redis to queue jobs in; unset means `glimpse up` starts its own.",
    )
    models_dir: Path = Field(
        default_factory=lambda: default_models_dir(),
        description="Folder of model folders; default $XDG_DATA_HOME/glimpse/models "
        "(~/.local/share/glimpse/models), whatever the current folder.",
    )
    default_model_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GLIMPSE_DEFAULT_MODEL", "default_model"),
        description="Model used when a request names none; unset or empty: the one the models "
        "folder names (`glimpse models default NAME`), else resnet50.",
    )
    resnet50_url: str = Field(
        default=sources.RESNET50_URL,
        description="Where `glimpse models fetch resnet50` downloads resnet50-v2-7.onnx (a "
        "mirror for sites that cannot reach GitHub; file:// works too).",
    )
    resnet50_sha256: str = Field(
        default=sources.RESNET50_SHA256, description="The sha256 that download must have."
    )
    resnet50_labels_url: str = Field(
        default=sources.RESNET50_LABELS_URL,
        description="Where its 1000 ImageNet labels are downloaded (the zoo's synset.txt).",
    )
    resnet50_labels_sha256: str = Field(
        default=sources.RESNET50_LABELS_SHA256, description="The sha256 that file must have."
    )
    queue_name: str = "glimpse"
    key_prefix: str = Field(
        default="glimpse", description="Prefix of every Redis key Glimpse writes."
    )

    # Limits on what a client may send.
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_num_samples: int = Field(
        default=100_000,
        ge=10,
        le=100_000,
        description="The largest budget a request may ask: num_samples, or max_samples with "
        '"auto" (the contract allows 10..100000; lower it to bound a job\'s model evaluations).',
    )
    max_design_size: int = Field(
        default=20_000_000,
        gt=0,
        description="The largest budget × superpixels of a LIME or Kernel SHAP job: the cells "
        "of the design its regression holds in memory (about 70 bytes each at the fit's peak, "
        "so 20M is about 1.4 GB).",
    )
    max_composed_pixels: int = Field(
        default=300_000_000,
        gt=0,
        description="The largest budget × image pixels of a job whose samples are composed at "
        "the original size (inpainting backgrounds: about 1 µs of OpenCV per pixel and sample).",
    )
    body_idle_timeout_s: float = Field(
        default=10,
        gt=0,
        description="A request body that sends nothing for this long mid-upload gets 408.",
    )
    body_timeout_s: float = Field(
        default=120,
        gt=0,
        description="A request body not all there after this long gets 408 (20 MiB at about "
        "1.4 Mbit/s).",
    )
    max_batch_images: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="The most images of one batch (POST /v1/batches), and instances of one "
        "KServe :predict / :explain.",
    )
    max_batch_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="The most image bytes of one batch or KServe request, its images together "
        "(each also within max_upload_bytes); the body may be that plus its envelope (4/3 of "
        "it and more as base64 JSON).",
    )
    max_queue_length: int = Field(
        default=200, gt=0, description="Queued jobs before 503 (a batch needs room for each image)."
    )
    redis_timeout_s: float = Field(
        default=1.5,
        gt=0,
        le=30,
        description="How long the API waits for one Redis reply (or connection) before it "
        "answers 503 with Retry-After: a stalled Redis bounds every request by this.",
    )
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
    precision: Literal["fp32", "tf32", "fp16", "bf16"] = Field(
        default="fp32",
        description="Floating precision of the model's weights and activations (torch runtime; "
        "fp32 is IEEE fp32 on CUDA too; tf32: fp32 values with TF32 tensor-core convolutions "
        "and matrix products; tf32 and fp16 need CUDA).",
    )
    torch_device: str = Field(
        default="auto", description="torch runtime: auto (CUDA if available), cpu, cuda, cuda:N."
    )
    channels_last: bool = Field(
        default=False, description="torch runtime: NHWC memory format for 4-D tensors."
    )
    torch_mode: Literal["eager", "cuda_graphs", "compile", "compile_cuda_graphs"] = Field(
        default="eager",
        description="torch runtime: eager (a PyTorch call per ONNX node), cuda_graphs (each "
        "batch shape captured once as a CUDA graph and replayed: one launch per batch; CUDA "
        "only), compile (torch.compile, once per batch shape: slow first batches), or "
        "compile_cuda_graphs (the compiled code, captured).",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers, in order of preference.",
    )
    intra_op_threads: int = Field(default=0, ge=0, description="0 lets ONNX Runtime choose.")
    worker_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description="Workers lower their CPU priority by this much, so the API answers "
        "promptly on a machine whose cores the model keeps busy.",
    )
    # Surviving worker death.
    worker_heartbeat_s: int = Field(
        default=2,
        ge=1,
        le=300,
        description="How often a worker proves it is alive, also while a job runs. A worker "
        "silent for 3 heartbeats is dead: /readyz stops counting it, and a live worker's next "
        "maintenance pass (every heartbeat while idle, after its job while busy) queues its "
        "job again.",
    )
    job_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Times a job whose worker died is queued again before it ends failed.",
    )
    fused_perturbation: bool = Field(
        default=True,
        description="Compose perturbed images inside the model graph (only z crosses per batch).",
    )

    # Access: API keys (their sha256 digests only, glimpse/keys.py) and a rate limit.
    api_key_hashes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hex sha256 digests of the accepted API keys (a JSON list, or separated by "
        "commas); empty: no authentication. `glimpse keys new` makes a key and its digest.",
    )
    rate_limit_per_minute: int = Field(
        default=120,
        ge=0,
        description="Images submitted (POST /v1/explanations, /v1/batches, KServe :predict / "
        ":explain: each image or instance counts one) per API key, or per client address "
        "without keys, in any 60 s; 0: no limit.",
    )

    @field_validator("api_key_hashes", mode="before")
    @classmethod
    def _digests(cls, value: object) -> list[str]:
        return parse_digests(value)

    @field_validator("models_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def default_model(self) -> str:
        """GLIMPSE_DEFAULT_MODEL, else the models folder's `.default`, else resnet50 (looked
        up on each call: `glimpse models default` takes effect without a restart)."""
        return self.default_model_name or read_default(self.models_dir) or FALLBACK_DEFAULT

    @property
    def worker_dead_after_s(self) -> int:
        """A worker (or its job's run) silent this long is dead: 3 missed heartbeats."""
        return 3 * self.worker_heartbeat_s

    @property
    def runtime_providers(self) -> list[str]:
        """Where the workers' runtime runs, as /v1/models reports it: the ONNX Runtime
        providers asked for, or the torch device (as configured), precision, layout and mode."""
        if self.runtime == "torch":
            return (
                [self.torch_device, self.precision]
                + (["channels_last"] if self.channels_last else [])
                + ([self.torch_mode] if self.torch_mode != "eager" else [])
            )
        return list(self.providers)


@lru_cache
def get_settings() -> Settings:
    return Settings()
