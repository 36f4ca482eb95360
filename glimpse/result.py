"""The `result` object of a finished job (CONTRACT §1), shared by worker, API and CLI."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    runtime: str | None = Field(default=None, description="e.g. onnxruntime")
    providers: list[str] | None = Field(default=None, description="execution providers used")
    perturbation: str | None = Field(
        default=None, description="`fused` (inside the model graph) or `host`"
    )


class ImageInfo(BaseModel):
    width: int
    height: int
    sha256: str


class Prediction(BaseModel):
    class_index: int
    label: str
    probability: float


class SegmentsInfo(BaseModel):
    count: int
    algorithm: str | None = None


class ClassExplanation(BaseModel):
    class_index: int
    label: str
    probability: float
    weights: list[float] = Field(description="one per superpixel, in superpixel-id order")
    base_value: float = Field(description="LIME's intercept, or SHAP's f(fully hidden image)")
    score: float | None = Field(description="LIME's weighted R²; null where a method has none")


class Stats(BaseModel):
    model_evaluations: int
    seconds: float
    batch_size: int | None = None
    segmentation_seconds: float | None = None
    evaluation_seconds: float | None = None


class ExplanationResult(BaseModel):
    model: ModelRef
    method: str
    image: ImageInfo
    predictions: list[Prediction]
    segments: SegmentsInfo
    explanations: list[ClassExplanation]
    stats: Stats
