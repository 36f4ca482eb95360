"""What one request may ask and cost beyond its bytes and pixels, each cost limit a setting.

Every rule here depends only on the params, the model's card and the image's size, so the
API checks it before a job is queued (a 413/422 that says why, with `errors[].loc`); the
worker runs the same `check_request` again before it spends anything (a queued job may
predate a lowered limit), and `glimpse explain` runs it before loading the model. Only what
the superpixels decide (their count for quickshift, slic and felzenszwalb) is left to the
worker, which ends the job `failed` with the reason.

- image: each side at least MIN_IMAGE_SIDE pixels (below it there is nothing to segment);
- targets: class indices below the model's num_classes;
- budget: num_samples, or max_samples with "auto", at most `max_num_samples`;
- grid: 2..MAX_SEGMENTS cells on this image (computed at full size, so known in advance);
- occlusion: more than one window, and windows + 1 evaluations within the budget;
- gradients (integrated_gradients, xrai): steps × noisy copies × targets forward+backward
  passes at most `max_num_samples`, from a fixed baseline (not inpainting);
- design: budget × superpixels of LIME and Kernel SHAP at most `max_design_size`, since
  their regression holds that design (and a few float64 copies of it) in memory; occlusion's
  windows × cells matrix counts at OCCLUSION_DESIGN_SHARE entries per design cell;
- composed pixels: evaluations × image pixels at most `max_composed_pixels` where every
  sample is composed at the original size (inpainting backgrounds);
- model scale: the image as resized for the model (a shorter_side card scales the shorter
  side up or down, so a 40000×1 strip becomes 10240000×256) at most `max_image_pixels`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from glimpse.errors import InvalidParams, PayloadTooLarge
from glimpse.params import GRADIENT_METHODS, Classes, ExplainParams, Grid, InpaintBackground

if TYPE_CHECKING:
    from glimpse.cards import ModelCard
    from glimpse.settings import Settings

#: The shortest side of an image that can be explained: smaller ones are refused (422 at
#: `image`) by the API, the worker and `glimpse explain` alike. Quickshift's default window
#: alone is 25 pixels wide, and occlusion's default window 32.
MIN_IMAGE_SIDE = 32
#: Superpixels at most (worker/engine/segment.py refuses more once it has counted them).
MAX_SEGMENTS = 4000
#: Methods whose fit holds a (budget, superpixels) design.
DESIGN_METHODS = frozenset({"lime", "kernel_shap"})
#: Methods that explain the superpixels of params.segmentation (gradcam and occlusion make
#: their own regions).
SEGMENTED_METHODS = frozenset(
    {"lime", "kernel_shap", "partition_shap", "integrated_gradients", "xrai"}
)
#: Occlusion holds a (windows, cells) bool matrix and one float64 copy: 9 bytes an entry,
#: about an eighth of the ~70 bytes of a LIME design cell; so 8 entries count as one cell.
OCCLUSION_DESIGN_SHARE = 8
#: Quality's evaluations per explained class at most: 2·(STEPS − 1) points on the deletion
#: and insertion curves, plus f(background) (worker/engine/quality.py, STEPS = 20).
QUALITY_EVALUATIONS_PER_CLASS = 39


def check_request(
    params: ExplainParams, card: ModelCard, height: int, width: int, settings: Settings
) -> None:
    """Every rule that the params, the model's card and the image size decide; each method
    of a comparison (params.methods) is checked as if asked alone, and their sum of work
    against max_composed_pixels."""
    check_budget(params, settings.max_num_samples)
    check_classes(params, card.num_classes)
    check_scale(card, height, width, settings.max_image_pixels)
    check_image_size(height, width)
    check_composed(params, height * width, settings.max_composed_pixels)
    for one in params.each_method():
        if isinstance(one.segmentation, Grid) and one.method in SEGMENTED_METHODS:
            segments = check_grid(one.segmentation, height, width)
            check_design(one, segments, settings.max_design_size)
        if one.method == "occlusion":
            check_occlusion(one, height, width, settings.max_design_size)
        if one.method in GRADIENT_METHODS:
            check_gradients(one, settings.max_num_samples)


def _targets(params: ExplainParams) -> int:
    targets = params.targets
    return len(targets.classes) if isinstance(targets, Classes) else targets.top_k


def gradient_passes(params: ExplainParams) -> int:
    """Forward+backward passes of integrated_gradients and xrai: steps × copies × targets."""
    options = params.integrated_gradients
    return options.steps * max(1, options.noise_samples) * _targets(params)


def check_gradients(params: ExplainParams, max_num_samples: int) -> None:
    if isinstance(params.background, InpaintBackground):
        raise InvalidParams(
            f"params.background: {params.method} integrates from one fixed baseline; "
            f"{params.background.kind} has none (it depends on what is hidden): use a "
            "constant, mean, blur or noise background",
            errors=[{"loc": ["params", "background"], "msg": "must be a fixed baseline"}],
        )
    passes = gradient_passes(params)
    if passes <= max_num_samples:
        return
    raise InvalidParams(
        f"params.integrated_gradients: steps × max(1, noise_samples) × targets = {passes} "
        f"forward+backward passes, more than the {max_num_samples} this server allows "
        "(GLIMPSE_MAX_NUM_SAMPLES); ask fewer steps, noisy copies or targets",
        errors=[
            {
                "loc": ["params", "integrated_gradients"],
                "msg": f"steps × noise copies × targets must be at most {max_num_samples}",
            }
        ],
    )


def _budget_key(params: ExplainParams) -> str:
    return "max_samples" if params.num_samples == "auto" else "num_samples"


def check_budget(params: ExplainParams, max_num_samples: int) -> None:
    if params.budget <= max_num_samples:
        return
    key = _budget_key(params)
    raise InvalidParams(
        f"params.{key}: {params.budget} model evaluations asked; this server allows at most "
        f"{max_num_samples} (GLIMPSE_MAX_NUM_SAMPLES)",
        errors=[{"loc": ["params", key], "msg": f"must be at most {max_num_samples}"}],
    )


def check_classes(params: ExplainParams, num_classes: int) -> None:
    """targets.classes must be class indices of the model: 0..num_classes − 1."""
    if not isinstance(params.targets, Classes):
        return
    bad = [c for c in params.targets.classes if c >= num_classes]
    if not bad:
        return
    model = f"model {params.model!r}" if params.model else "the model"
    raise InvalidParams(
        f"params.targets.classes: {bad} out of range; {model} has {num_classes} classes "
        f"(0..{num_classes - 1})",
        errors=[{"loc": ["params", "targets", "classes"], "msg": f"must be < {num_classes}"}],
    )


def check_image_size(height: int, width: int) -> None:
    """Each side at least MIN_IMAGE_SIDE pixels."""
    if min(height, width) >= MIN_IMAGE_SIDE:
        return
    raise InvalidParams(
        f"image: the image is {width}x{height} pixels, too small to segment and explain; "
        f"each side must be at least {MIN_IMAGE_SIDE} pixels",
        errors=[
            {
                "loc": ["image"],
                "msg": f"{width}x{height} pixels: each side must be at least {MIN_IMAGE_SIDE}",
            }
        ],
    )


def grid_cells(height: int, width: int, cell_size: int) -> int:
    """The superpixels of a grid segmentation (computed at full size: worker/engine/segment)."""
    return math.ceil(height / cell_size) * math.ceil(width / cell_size)


def check_grid(grid: Grid, height: int, width: int) -> int:
    """The grid's cell count on this image, refused unless 2..MAX_SEGMENTS."""
    cell = grid.cell_size
    count = grid_cells(height, width, cell)
    loc = ["params", "segmentation", "cell_size"]
    if count < 2:
        raise InvalidParams(
            f"params.segmentation.cell_size: a grid of {cell}-pixel cells is one cell on this "
            f"{width}x{height} image, and one superpixel explains nothing; use a cell_size "
            f"below {max(height, width)}",
            errors=[{"loc": loc, "msg": f"must be below {max(height, width)} on this image"}],
        )
    if count > MAX_SEGMENTS:
        fits = next(
            c
            for c in range(cell, max(height, width) + 1)
            if grid_cells(height, width, c) <= MAX_SEGMENTS
        )
        raise InvalidParams(
            f"params.segmentation.cell_size: a grid of {cell}-pixel cells has {count} cells on "
            f"this {width}x{height} image; at most {MAX_SEGMENTS} superpixels can be explained: "
            f"use a cell_size of at least {fits}",
            errors=[{"loc": loc, "msg": f"must be at least {fits} on this image"}],
        )
    return count


def check_design(params: ExplainParams, n_segments: int, limit: int) -> None:
    """budget × n_segments of a LIME or Kernel SHAP job against max_design_size."""
    cells = params.budget * n_segments
    if params.method not in DESIGN_METHODS or cells <= limit:
        return
    key = _budget_key(params)
    raise InvalidParams(
        f"params.{key}: {params.budget} samples × {n_segments} superpixels = {cells} cells, "
        f"more than the {limit} this server allows (GLIMPSE_MAX_DESIGN_SIZE); ask fewer "
        "samples or fewer superpixels (a larger grid cell_size, fewer slic n_segments)",
        errors=[{"loc": ["params", key], "msg": f"budget × superpixels must be at most {limit}"}],
    )


def evaluations(params: ExplainParams) -> int:
    """The model evaluations a job may spend at most, quality's included (every method's,
    for a comparison)."""
    spent = sum(method_evaluations(one) for one in params.each_method())
    if params.quality:
        spent += QUALITY_EVALUATIONS_PER_CLASS * _targets(params) * len(params.each_method())
    return spent


def method_evaluations(params: ExplainParams) -> int:
    """The model evaluations one method (params.method) may spend at most, quality's not
    included."""
    if params.method == "gradcam":
        return 1
    if params.method in GRADIENT_METHODS:
        return gradient_passes(params) + 2  # and f(image), f(baseline)
    return params.budget


def planned_evaluations(params: ExplainParams) -> int:
    """The job's progress total at submit: its budget, or for a comparison the sum of its
    methods' (quality's not included; the worker reports what each really spends)."""
    if params.methods is None:
        return params.budget
    return sum(method_evaluations(one) for one in params.each_method())


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


# --- occlusion: the count of worker/engine/occlusion.py, in arithmetic ----------------------
def occlusion_windows(length: int, window: int, stride: int) -> int:
    """Windows along an axis of `length` pixels: Captum's ⌈(D − w) / s⌉ + 1, or 1 where the
    window covers the axis (it is clipped to it)."""
    return math.ceil((length - window) / stride) + 1 if length > window else 1


def occlusion_cells(length: int, window: int, stride: int) -> int:
    """The elementary intervals the window edges cut an axis into (the engine's cells)."""
    starts = range(0, occlusion_windows(length, window, stride) * stride, stride)
    bounds = {0, length, *starts, *(min(s + window, length) for s in starts)}
    return len(bounds) - 1


def check_occlusion(params: ExplainParams, height: int, width: int, max_design_size: int) -> None:
    """More than one window; windows + 1 evaluations within the budget; the (windows, cells)
    matrix within max_design_size × OCCLUSION_DESIGN_SHARE."""
    window, stride = params.occlusion.window, params.occlusion.stride
    windows = occlusion_windows(height, window, stride) * occlusion_windows(width, window, stride)
    where = f"window {window} and stride {stride} on this {width}x{height} image"
    if windows == 1:
        side = max(height, width)
        raise InvalidParams(
            f"params.occlusion.window: one window of {window} pixels covers the whole "
            f"{width}x{height} image, and occluding all of it explains nothing; use a window "
            f"below {side}",
            errors=[
                {"loc": ["params", "occlusion", "window"], "msg": f"must be below {side} here"}
            ],
        )
    check_occlusion_budget(params, windows, height, width)
    cells = occlusion_cells(height, window, stride) * occlusion_cells(width, window, stride)
    limit = max_design_size * OCCLUSION_DESIGN_SHARE
    if windows * cells > limit:
        raise InvalidParams(
            f"params.occlusion.stride: occlusion with {where} holds {windows} windows × "
            f"{cells} cells = {windows * cells} entries, more than the {limit} this server "
            f"allows ({OCCLUSION_DESIGN_SHARE} × GLIMPSE_MAX_DESIGN_SIZE); use a larger "
            "stride, or a window that is a multiple of it (fewer cells)",
            errors=[
                {
                    "loc": ["params", "occlusion", "stride"],
                    "msg": f"windows × cells must be at most {limit}",
                }
            ],
        )


def check_occlusion_budget(params: ExplainParams, windows: int, height: int, width: int) -> None:
    """`windows` windows and the unoccluded image within the budget (the API, and the engine,
    which counts the windows it will slide)."""
    if windows + 1 <= params.budget:
        return
    window, stride, key = params.occlusion.window, params.occlusion.stride, _budget_key(params)
    fits = _smallest_stride(height, width, window, stride, params.budget)
    raise InvalidParams(
        f"params.occlusion.stride: occlusion with window {window} and stride {stride} on this "
        f"{width}x{height} image needs {windows + 1} evaluations ({windows} windows and the "
        f"image); {key} is {params.budget}: use a larger stride (at least {fits}), or raise "
        f"{key} to {windows + 1}",
        errors=[
            {
                "loc": ["params", "occlusion", "stride"],
                "msg": f"{windows} windows exceed the budget of {params.budget}",
            }
        ],
    )


def _smallest_stride(height: int, width: int, window: int, stride: int, budget: int) -> int:
    """The smallest stride above `stride` whose windows + 1 fit in `budget` (≥ 10). The count
    falls as the stride grows, to at most 2 windows an axis once it reaches the side."""
    for s in range(stride + 1, max(height, width)):
        if occlusion_windows(height, window, s) * occlusion_windows(width, window, s) < budget:
            return s
    return max(height, width)
