"""Response bodies of the API (the request body is read by app/uploads.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from glimpse.result import ExplanationResult

JobStatus = Literal["queued", "running", "finished", "failed", "canceled"]


class Progress(BaseModel):
    done: int = Field(description="model evaluations done")
    total: int = Field(description="model evaluations planned")


class JobError(BaseModel):
    title: str
    detail: str


class Job(BaseModel):
    """An explanation job: its state, normalized params, and the result once finished."""

    id: str = Field(description="128 random bits, hex")
    status: JobStatus
    created_at: str = Field(description="ISO-8601 UTC")
    started_at: str | None = None
    finished_at: str | None = None
    progress: Progress
    params: dict[str, Any] = Field(description="the normalized params, defaults filled in")
    error: JobError | None = None
    result: ExplanationResult | None = None


BatchStatus = Literal["queued", "running", "finished", "partial", "failed", "canceled"]


class BatchCounts(BaseModel):
    """The batch's images by the status of their jobs."""

    queued: int
    running: int
    finished: int
    failed: int
    canceled: int = Field(description="canceled, deleted or expired jobs")


class BatchJob(BaseModel):
    id: str = Field(description="the job's id: GET /v1/explanations/{id} for all of it")
    status: JobStatus = Field(description="canceled also for a job deleted or expired since")
    progress: Progress


class Batch(BaseModel):
    """Several images submitted together: one explanation job per image, in submission order."""

    id: str = Field(description="128 random bits, hex")
    created_at: str = Field(description="ISO-8601 UTC")
    status: BatchStatus = Field(
        description="queued: every job queued; running: some job queued or running, not all "
        "queued; then, once every job has ended: finished (all finished), partial (some "
        "finished, the others failed or canceled), failed (none finished, some failed), "
        "canceled (all canceled)"
    )
    counts: BatchCounts
    progress: Progress = Field(description="the jobs' progress summed")
    jobs: list[BatchJob] = Field(description="one per image, in submission order")


class ModelInfo(BaseModel):
    name: str
    input_size: tuple[int, int] = Field(description="[height, width] of the model input")
    num_classes: int
    default: bool
    runtime: str = Field(description="the workers' runtime, e.g. onnxruntime")
    providers: list[str] = Field(
        description="execution providers (or torch device and precision) the live workers run "
        "on, in order; the settings' choice while no worker has reported"
    )
    devices: list[str] = Field(
        default_factory=list, description='where the live workers run: "cuda", "cpu"'
    )
    notes: list[str] = Field(
        default_factory=list,
        description="what differs from what the workers were configured for (a GPU worker "
        "started on a machine without a usable GPU runs on the CPU and says so here)",
    )
    methods: list[str] = Field(
        default_factory=list,
        description="the methods the live workers offer: integrated_gradients and xrai need "
        "a worker with PyTorch; every method while no worker has reported",
    )


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details, sent as application/problem+json."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
