"""The `result` object of a finished job (docs/api.md), shared by worker, API and CLI."""

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


class Quality(BaseModel):
    """Faithfulness (RISE's deletion/insertion): area under the class score as superpixels
    are hidden from the image (deletion) or shown on the background (insertion) in order of
    attribution; x = fraction of superpixels (0..1), trapezoid, in the output space."""

    deletion_auc: float = Field(description="lower is more faithful")
    insertion_auc: float = Field(description="higher is more faithful")
    steps: int = Field(description="points on each curve after the start")


class Completeness(BaseModel):
    """Integrated Gradients' completeness: Σ attributions = f(image) − f(baseline) for the
    exact integral. The gap is what the `steps`-point quadrature (and SmoothGrad's noise)
    leaves; raise params.integrated_gradients.steps when it is large."""

    attribution_sum: float = Field(description="Σ of every input value's attribution")
    score_difference: float = Field(description="f(image) − f(baseline), in the output space")
    gap: float = Field(description="attribution_sum − score_difference")
    relative_gap: float = Field(description="|gap| / |score_difference| (0 when both are 0)")


class XraiRegion(BaseModel):
    """An XRAI region: the pixels it added when the greedy search chose it."""

    area: float = Field(description="fraction of the model's input grid")
    density: float = Field(description="mean attribution per input pixel (XRAI's gain)")
    attribution: float = Field(description="Σ attribution over its pixels")


class ClassExplanation(BaseModel):
    class_index: int
    label: str
    probability: float
    weights: list[float] = Field(description="one per superpixel, in superpixel-id order")
    base_value: float = Field(description="LIME's intercept, or SHAP's f(fully hidden image)")
    score: float | None = Field(description="LIME's weighted R²; null where a method has none")
    weights_se: list[float] | None = Field(
        default=None, description="standard error of each weight (clustered sandwich)"
    )
    quality: Quality | None = Field(default=None, description="null when params.quality is off")
    top_separated: bool | None = Field(
        default=None,
        description="the top min(5, M-1) weights exceed the next by 1.96 standard errors",
    )
    top_settled: bool | None = Field(
        default=None,
        description="the top min(5, M-1) superpixels are settled: no superpixel outside them "
        "exceeds one inside by more than params.tolerance (1 % by default) of Σ|weights|, at "
        "95 % (top_resolution <= params.tolerance). False: the budget was too small for this "
        "many superpixels (see `warnings`)",
    )
    top_resolution: float | None = Field(
        default=None,
        description="the share of Σ|weights| up to which the top min(5, M-1) superpixels are "
        "settled: a superpixel left out that truly exceeds one inside by more than this share "
        "would have shown at 95 % (0: every pair 1.96 standard errors apart); null when the "
        "weights are all zero but not exact",
    )
    completeness: Completeness | None = Field(
        default=None, description="integrated_gradients, xrai: how well the integral closed"
    )
    regions: list[XraiRegion] | None = Field(
        default=None,
        description="xrai: the regions, highest density first (the map attribution.npy paints "
        "each pixel with its region's density)",
    )


class Stats(BaseModel):
    model_evaluations: int
    seconds: float
    batch_size: int | None = None
    segmentation_seconds: float | None = None
    evaluation_seconds: float | None = None
    converged: bool | None = Field(
        default=None, description='num_samples "auto": the top superpixels settled'
    )
    rounds: int | None = Field(default=None, description='num_samples "auto": rounds run')
    backward_passes: int | None = Field(
        default=None,
        description="integrated_gradients, xrai: forward+backward passes (each one of "
        "model_evaluations)",
    )
    quality_evaluations: int | None = Field(
        default=None, description="model evaluations of the quality curves (not counted above)"
    )


class ComparedClass(BaseModel):
    class_index: int
    importance: list[float] = Field(
        description="one per superpixel (of `segments`): the method's weight where it explains "
        "the superpixels, else the mean of its per-pixel map over each (gradcam, occlusion)"
    )
    quality: Quality | None = Field(
        default=None, description="deletion/insertion on the shared superpixels, by importance"
    )


class ComparedMethod(BaseModel):
    method: str
    seconds: float = Field(description="its own run, quality not included")
    model_evaluations: int = Field(description="its own, f(image) included")
    backward_passes: int | None = None
    explanations: list[ComparedClass] = Field(description="one per explained class, in order")


class MethodAgreement(BaseModel):
    """Two methods on one class: how alike their superpixel importances rank."""

    methods: tuple[str, str]
    class_index: int
    spearman: float = Field(description="rank correlation of the importances (-1..1)")
    top_k_overlap: float = Field(description="shared fraction of the k most important (0..1)")
    k: int


class Comparison(BaseModel):
    """params.methods: every method on the same superpixels and targets."""

    methods: list[ComparedMethod] = Field(description="in params.methods order")
    agreement: list[MethodAgreement] = Field(description="every pair of methods, per class")


class ExplanationResult(BaseModel):
    model: ModelRef
    method: str
    image: ImageInfo
    predictions: list[Prediction]
    segments: SegmentsInfo
    explanations: list[ClassExplanation]
    stats: Stats
    hierarchy: list[tuple[int, int]] | None = Field(
        default=None,
        description="partition_shap: the split tree over the m superpixels; row i holds the "
        "two children of node m + i (ids < m are superpixels, the root is node m). "
        "GET /v1/explanations/{id}/hierarchy.npy paints its levels",
    )
    layer: str | None = Field(default=None, description="gradcam: the feature map explained")
    comparison: Comparison | None = Field(
        default=None,
        description="params.methods: each method's importances, cost and quality on the "
        "shared superpixels, and their agreement; figure.png?compare=true draws them",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="what the reader must know before acting on the weights: a budget too "
        "small for the superpixel count (top superpixels not settled), an `auto` run that "
        "reached max_samples",
    )
