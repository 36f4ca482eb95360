"""Explainer parameters: the `params` object of docs/api.md, validated and normalised.

Unknown keys are rejected (`extra="forbid"`); every default is filled in, so the normalised
params of a job say exactly what ran.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from glimpse.errors import InvalidParams


class _Strict(BaseModel):
    # No NaN or ±inf anywhere: a client's `1e400` is inf once parsed, and neither survives a
    # round trip through the job store's JSON nor means anything to the engine.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- segmentation -------------------------------------------------------------------------
class Quickshift(_Strict):
    algorithm: Literal["quickshift"] = "quickshift"
    # At least 1, as scikit-image's quickshift requires (and Glimpse's, which raises below it).
    kernel_size: float = Field(default=4, ge=1, le=64)
    max_dist: float = Field(default=200, gt=0)
    ratio: float = Field(default=0.2, ge=0, le=1)


class Slic(_Strict):
    algorithm: Literal["slic"] = "slic"
    n_segments: int = Field(default=50, ge=2, le=5000)
    compactness: float = Field(default=10, gt=0)


class Felzenszwalb(_Strict):
    algorithm: Literal["felzenszwalb"] = "felzenszwalb"
    scale: float = Field(default=100, gt=0)
    # Gaussian pre-smoothing: its kernel grows with sigma (1e6 runs for hours).
    sigma: float = Field(default=0.5, ge=0, le=100)
    min_size: int = Field(default=50, ge=1)


class Grid(_Strict):
    algorithm: Literal["grid"] = "grid"
    cell_size: int = Field(default=32, ge=2, le=4096)


Segmentation = Annotated[Quickshift | Slic | Felzenszwalb | Grid, Field(discriminator="algorithm")]


# --- background (what a hidden superpixel shows) --------------------------------------------
class ConstantBackground(_Strict):
    kind: Literal["constant"] = "constant"
    rgb: tuple[
        Annotated[int, Field(ge=0, le=255)],
        Annotated[int, Field(ge=0, le=255)],
        Annotated[int, Field(ge=0, le=255)],
    ] = (0, 0, 0)


class MeanBackground(_Strict):
    kind: Literal["mean"] = "mean"


class BlurBackground(_Strict):
    """Gaussian blur with `sigma` (pixels), or, with `kernel_size`, the box blur of that size
    that shap's Image masker calls `blur(k, k)` (then `sigma` is ignored)."""

    kind: Literal["blur"] = "blur"
    sigma: float = Field(default=10.0, gt=0, le=200)
    kernel_size: int | None = Field(default=None, ge=1, le=1024)


class NoiseBackground(_Strict):
    """Uniform noise in [low, high] per pixel and channel, drawn with the job's seed (a
    baseline of Integrated Gradients and XRAI, as Vertex's and Captum's noise baselines)."""

    kind: Literal["noise"] = "noise"
    low: int = Field(default=0, ge=0, le=255)
    high: int = Field(default=255, ge=0, le=255)

    @model_validator(mode="after")
    def _ordered(self) -> NoiseBackground:
        if self.low > self.high:
            raise ValueError("low must be at most high")
        return self


class InpaintBackground(_Strict):
    """OpenCV inpainting of the hidden superpixels from the shown ones, as shap's
    `inpaint_telea` / `inpaint_ns` maskers do."""

    kind: Literal["inpaint_telea", "inpaint_ns"]
    radius: float = Field(default=3.0, gt=0, le=64)


Background = Annotated[
    ConstantBackground | MeanBackground | BlurBackground | NoiseBackground | InpaintBackground,
    Field(discriminator="kind"),
]


# --- targets --------------------------------------------------------------------------------
class TopK(_Strict):
    top_k: int = Field(default=1, ge=1, le=20)


class Classes(_Strict):
    classes: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=20)


def _targets_kind(value: Any) -> str:
    """Which of the two a `targets` object means, read from its key, so that an error is
    reported against the one the client wrote ({"classes": [-1]}: classes.0 must be >= 0)."""
    if isinstance(value, Classes) or (isinstance(value, dict) and "classes" in value):
        return "classes"
    return "top_k"


Targets = Annotated[
    Annotated[TopK, Tag("top_k")] | Annotated[Classes, Tag("classes")],
    Discriminator(_targets_kind),
]


class LimeOptions(_Strict):
    # lime's kernel is sqrt(exp(-d² / width²)) over cosine distances d in [0, 1]: the width's
    # square must be a positive finite float (1e-300 squares to 0, 1e300 overflows).
    kernel_width: float = Field(default=0.25, ge=1e-6, le=1e6)
    alpha: float = Field(default=1.0, ge=0)
    keep_probability: float = Field(default=0.5, gt=0, lt=1)
    surrogate: Literal["logistic", "none"] = Field(
        default="logistic",
        description=(
            "logistic: lime's regression adjusted with a logistic surrogate of the class "
            "probability (same estimand, far less noise per sample; output_space probability "
            "only); none: lime_image's fit exactly"
        ),
    )


class OcclusionOptions(_Strict):
    """Captum's Occlusion: a window (pixels of the original image) slid with a stride."""

    window: int = Field(default=32, ge=1, le=4096)
    stride: int = Field(default=16, ge=1, le=4096)


class GradcamOptions(_Strict):
    layer: str | None = Field(
        default=None, description="the convolution output to use; chosen automatically if null"
    )


class IntegratedGradientsOptions(_Strict):
    """Integrated Gradients (Sundararajan et al. 2017) from `background` (the baseline) to
    the image: `steps` points of the path integral, by the midpoint Riemann rule or
    Gauss–Legendre quadrature; with `noise_samples` > 0, SmoothGrad: each point's gradient
    averaged over that many copies with Gaussian noise of `noise_sigma` × the input's range."""

    steps: int = Field(default=50, ge=1, le=300)
    rule: Literal["riemann", "gauss_legendre"] = "riemann"
    noise_samples: int = Field(default=0, ge=0, le=64)
    noise_sigma: float = Field(default=0.1, gt=0, le=1)


class XraiOptions(_Strict):
    """XRAI (Kapishnikov et al. 2019): Felzenszwalb segments of the input at each of
    `scales`, each dilated by `dilation` pixels, merged greedily into regions by their
    Integrated Gradients density."""

    scales: list[Annotated[float, Field(gt=0, le=10_000)]] = Field(
        default=[50, 100, 150, 250, 500, 1200], min_length=1, max_length=8
    )
    dilation: int = Field(default=5, ge=0, le=32)


Method = Literal[
    "lime", "kernel_shap", "partition_shap", "gradcam", "occlusion", "integrated_gradients", "xrai"
]
#: Methods that differentiate the model: they need a worker with PyTorch (glimpse[torch]).
GRADIENT_METHODS = frozenset({"integrated_gradients", "xrai"})


#: The most methods one comparison job runs.
MAX_COMPARED_METHODS = 7
#: The default indifference zone of top_settled and of "auto"'s stop, a share of Σ|weights|.
TOLERANCE = 0.01


class ExplainParams(_Strict):
    model: str | None = Field(default=None, min_length=1, max_length=100)
    method: Method = "lime"
    methods: list[Method] | None = Field(
        default=None,
        min_length=2,
        max_length=MAX_COMPARED_METHODS,
        description="compare these methods in one job, on the same superpixels and targets "
        "(result.comparison); the first is `method`, whose explanation the result holds",
    )
    targets: Targets = TopK()
    num_samples: int | Literal["auto"] = Field(
        default=1000, description='model evaluations to spend (10..100000), or "auto"'
    )
    max_samples: int = Field(default=20_000, ge=10, le=100_000, description='cap of "auto"')
    tolerance: float = Field(
        default=TOLERANCE,
        gt=0,
        le=0.5,
        description="the indifference zone, a share of Σ|weights|: the top 5 superpixels are "
        'settled (top_settled; "auto" stops) once none outside them can exceed one inside '
        "by more than this at 95 %",
    )
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    segmentation: Segmentation = Quickshift()
    background: Background = ConstantBackground()
    lime: LimeOptions = LimeOptions()
    occlusion: OcclusionOptions = OcclusionOptions()
    gradcam: GradcamOptions = GradcamOptions()
    integrated_gradients: IntegratedGradientsOptions = IntegratedGradientsOptions()
    xrai: XraiOptions = XraiOptions()
    quality: bool = Field(
        default=True, description="measure deletion/insertion faithfulness (a small extra budget)"
    )
    output_space: Literal["probability", "logit"] = "probability"
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    cache: bool = True

    @model_validator(mode="before")
    @classmethod
    def _method_leads(cls, data: Any) -> Any:
        """`methods` without `method`: the first of them is the method."""
        if isinstance(data, dict) and "method" not in data:
            methods = data.get("methods")
            if isinstance(methods, list) and methods and isinstance(methods[0], str):
                return {**data, "method": methods[0]}
        return data

    @field_validator("methods")
    @classmethod
    def _methods_distinct(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return value
        if len(set(value)) != len(value):
            raise ValueError("each method at most once")
        method = info.data.get("method")
        if method is not None and method != value[0]:
            raise ValueError(f"the first of methods must be method ({method!r}); or leave it out")
        return value

    @field_validator("num_samples")
    @classmethod
    def _budget_in_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 10 <= value <= 100_000:
            raise ValueError('num_samples must be between 10 and 100000, or "auto"')
        return value

    @property
    def budget(self) -> int:
        """The evaluations a run may spend: num_samples, or max_samples when it is "auto"."""
        return self.max_samples if self.num_samples == "auto" else int(self.num_samples)

    def each_method(self) -> list[ExplainParams]:
        """The params of each method a job runs: itself, or one per `methods` entry (each
        checked and run as if asked alone, on the same superpixels and targets)."""
        if self.methods is None:
            return [self]
        return [self.model_copy(update={"method": m, "methods": None}) for m in self.methods]

    def cache_key(self, image_sha256: str) -> str:
        """Identity of the computation: image, model and every param that changes numbers."""
        unused = {"methods"} if self.methods is None else set()  # keys as before they existed
        if self.tolerance == TOLERANCE:
            unused.add("tolerance")
        body = self.model_dump(mode="json", exclude={"cache", "batch_size", *unused})
        text = json.dumps({"image": image_sha256, "params": body}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _field_path(loc: tuple[int | str, ...]) -> list[str]:
    """pydantic's error location as the client's field path: the tag of the `targets` variant
    (top_k, classes) that pydantic puts after `targets` is not a field."""
    path = [str(p) for p in loc]
    if path[:1] == ["targets"] and path[1:2] in (["top_k"], ["classes"]) and len(path) > 2:
        del path[1]
    return path


def parse_params(raw: Any, *, loc_prefix: tuple[str, ...] = ("params",)) -> ExplainParams:
    """Validate a `params` object (dict or None); raise InvalidParams with `errors[].loc`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidParams(
            "params must be a JSON object",
            errors=[{"loc": list(loc_prefix), "msg": "must be a JSON object"}],
        )
    try:
        return ExplainParams.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"loc": [*loc_prefix, *_field_path(e["loc"])], "msg": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        first = errors[0]
        raise InvalidParams(f"{'.'.join(first['loc'])}: {first['msg']}", errors=errors) from None
