"""What one request may cost beyond its bytes and pixels, each limit a setting.

The API checks what it can before a job is queued (a 413/422 that says why); the worker
checks again before it spends anything, and the superpixel count once it knows it (the job
ends `failed` with the reason): a queued job may predate a lowered limit.

- budget: num_samples, or max_samples with "auto", at most `max_num_samples`;
- design: budget × superpixels of LIME and Kernel SHAP at most `max_design_size`, since
  their regression holds that design (and a few float64 copies of it) in memory;
- composed pixels: evaluations × image pixels at most `max_composed_pixels` where every
  sample is composed at the original size (inpainting backgrounds);
- model scale: the image as resized for the model (a shorter_side card scales the shorter
  side up or down, so a 40000×1 strip becomes 10240000×256) at most `max_image_pixels`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from glimpse.errors import InvalidParams, PayloadTooLarge
from glimpse.params import Classes, ExplainParams, Grid, InpaintBackground

if TYPE_CHECKING:
    from glimpse.cards import ModelCard
    from glimpse.settings import Settings

#: Methods whose fit holds a (budget, superpixels) design.
DESIGN_METHODS = frozenset({"lime", "kernel_shap"})
#: Quality's evaluations per explained class at most: 2·(STEPS − 1) points on the deletion
#: and insertion curves, plus f(background) (worker/engine/quality.py, STEPS = 20).
QUALITY_EVALUATIONS_PER_CLASS = 39


def check_request(
    params: ExplainParams, card: ModelCard, height: int, width: int, settings: Settings
) -> None:
    """Every limit that the params, the model's card and the image size decide."""
    check_budget(params, settings.max_num_samples)
    check_scale(card, height, width, settings.max_image_pixels)
    check_composed(params, height * width, settings.max_composed_pixels)
    if isinstance(params.segmentation, Grid) and params.method in DESIGN_METHODS:
        cell = params.segmentation.cell_size
        segments = math.ceil(height / cell) * math.ceil(width / cell)
        check_design(params, segments, settings.max_design_size)


def check_budget(params: ExplainParams, max_num_samples: int) -> None:
    if params.budget <= max_num_samples:
        return
    key = "max_samples" if params.num_samples == "auto" else "num_samples"
    raise InvalidParams(
        f"params.{key}: {params.budget} model evaluations asked; this server allows at most "
        f"{max_num_samples} (GLIMPSE_MAX_NUM_SAMPLES)",
        errors=[{"loc": ["params", key], "msg": f"must be at most {max_num_samples}"}],
    )


def check_design(params: ExplainParams, n_segments: int, limit: int) -> None:
    """budget × n_segments of a LIME or Kernel SHAP job against max_design_size."""
    cells = params.budget * n_segments
    if params.method not in DESIGN_METHODS or cells <= limit:
        return
    key = "max_samples" if params.num_samples == "auto" else "num_samples"
    raise InvalidParams(
        f"params.{key}: {params.budget} samples × {n_segments} superpixels = {cells} cells, "
        f"more than the {limit} this server allows (GLIMPSE_MAX_DESIGN_SIZE); ask fewer "
        "samples or fewer superpixels (a larger grid cell_size, fewer slic n_segments)",
        errors=[{"loc": ["params", key], "msg": f"budget × superpixels must be at most {limit}"}],
    )


def evaluations(params: ExplainParams) -> int:
    """The model evaluations a job may spend at most, quality's included."""
    spent = 1 if params.method == "gradcam" else params.budget
    if params.quality:
        targets = params.targets
        k = len(targets.classes) if isinstance(targets, Classes) else targets.top_k
        spent += QUALITY_EVALUATIONS_PER_CLASS * k
    return spent


def check_composed(params: ExplainParams, pixels: int, max_composed_pixels: int) -> None:
    if not isinstance(params.background, InpaintBackground):
        return
    composed = evaluations(params) * pixels
    if composed <= max_composed_pixels:
        return
    raise InvalidParams(
        f"params.num_samples: {params.background.kind} composes every sample at the image's "
        f"size: {evaluations(params)} evaluations × {pixels} pixels = {composed}, more than "
        f"the {max_composed_pixels} this server allows (GLIMPSE_MAX_COMPOSED_PIXELS); send a "
        "smaller image, ask fewer samples, or use a constant, mean or blur background",
        errors=[
            {
                "loc": ["params", "num_samples"],
                "msg": f"evaluations × image pixels must be at most {max_composed_pixels}",
            }
        ],
    )


def check_scale(card: ModelCard, height: int, width: int, max_pixels: int) -> None:
    new_w, new_h = card.resized_size(height, width)
    if new_w * new_h <= max_pixels:
        return
    raise PayloadTooLarge(
        f"resized for the model ({card.resize}), this {width}x{height} image would be "
        f"{new_w}x{new_h} = {new_w * new_h} pixels; the limit is "
        f"{max_pixels}: its sides differ too much, crop it"
    )
