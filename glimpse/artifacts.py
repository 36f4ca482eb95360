"""The artifacts of a finished explanation, drawn from what it keeps: the photo, its `result`,
its superpixels and, for a method with per-pixel maps of its own (gradcam), those maps.

The API (app/artifacts.py, from the job store, on request) and `glimpse explain` (from the
engine's arrays, into a folder) both draw through these functions, so both give the same
files. Shapes: image (H, W, 3) uint8; segments (H, W) int superpixel ids 0..m-1, or None
where the artifact does not need them (`needs_segments`); pixel_maps (K, H, W) float32 or
None, K the explained classes in `result.explanations` order.
"""

from __future__ import annotations

import io

import numpy as np

from glimpse.compare_figure import render_comparison
from glimpse.errors import InvalidParams
from glimpse.hierarchy import level_maps
from glimpse.images import encode_png
from glimpse.render import (
    OverlayStyle,
    attribution_map,
    caption,
    render_figure,
    render_map_overlay,
    render_overlay,
)
from glimpse.result import ExplanationResult
from glimpse.shrink import fitted_size, shrink_image, shrink_map, shrink_segments
from glimpse.visual import UNCERTAIN_SE, Visual


def needs_segments(style: OverlayStyle | None, pixel_maps: bool) -> bool:
    """Whether an artifact is drawn from the superpixels: everything but the method's own
    maps (`pixel_maps`: it has them). style None: the attribution maps or the figure."""
    if style is None or style == "grid":
        return not pixel_maps
    return not (style == "heatmap" and pixel_maps)


def _weights(result: ExplanationResult, dtype: type[np.floating]) -> np.ndarray:
    """(K, m): each explained class's superpixel weights."""
    return np.array([e.weights for e in result.explanations], dtype)


def _given(segments: np.ndarray | None) -> np.ndarray:
    if segments is None:
        raise ValueError("this artifact is drawn from the segments; none were given")
    return segments


def attribution_maps(
    result: ExplanationResult, segments: np.ndarray | None, pixel_maps: np.ndarray | None
) -> np.ndarray:
    """(K, H, W) float32: the method's own maps where it has them, else each superpixel's
    weight painted on its pixels."""
    if pixel_maps is not None:
        return np.asarray(pixel_maps, np.float32)
    return attribution_map(_weights(result, np.float32), _given(segments))


def figure_png(
    image: np.ndarray, result: ExplanationResult, maps: np.ndarray, visual: Visual | None = None
) -> bytes:
    """The photo and every explained class side by side on one colour scale (shap's
    image_plot); maps: `attribution_maps`; visual: glimpse/visual.py's FIGURE_OPTIONS."""
    titles = [f"{e.label}\np = {e.probability:.3f}" for e in result.explanations]
    label = caption(result.method)
    return encode_png(render_figure(image, maps, titles, caption=label, visual=visual))


def comparison_png(
    image: np.ndarray, result: ExplanationResult, maps: np.ndarray, visual: Visual | None = None
) -> bytes:
    """Every method of a comparison job side by side, per explained class, with its numbers
    (glimpse/compare_figure.py); maps: (M, K, h, w) as the job stored them."""
    assert result.comparison is not None
    titles = [f"{e.label} (p = {e.probability:.3f})" for e in result.explanations]
    return encode_png(render_comparison(image, maps, result.comparison, titles, visual))


def overlay_png(
    image: np.ndarray,
    result: ExplanationResult,
    segments: np.ndarray | None,
    pixel_maps: np.ndarray | None,
    *,
    index: int = 0,
    style: OverlayStyle = "heatmap",
    negative: bool = False,
    num_features: int = 5,
    percentile: float = 95.0,
    visual: Visual | None = None,
) -> bytes:
    """Explained class `index` (its position in `result.explanations`) drawn over the photo
    in `style` (glimpse/render.py); `grid` is the figure of every class. `visual`: how the
    heatmap is drawn (glimpse/visual.py); its max_side applies to every style: the photo,
    the superpixels and the maps are shrunk first (glimpse/shrink.py), then drawn."""
    visual = visual or Visual()
    if style == "grid":
        maps = attribution_maps(result, segments, pixel_maps)
        return figure_png(image, result, maps, visual)
    size = fitted_size(image.shape[0], image.shape[1], visual.max_side)
    photo = shrink_image(image, size)
    label = caption(result.method)
    hatched = None
    if style == "heatmap" and visual.uncertain == "hatch":
        hatched = uncertain_signs(result, index)
    if style == "heatmap" and pixel_maps is not None:  # the method's own smooth map (gradcam)
        values = shrink_map(pixel_maps[index], size)
        return encode_png(render_map_overlay(photo, values, visual=visual, caption=label))
    pixels = render_overlay(
        photo,
        shrink_segments(_given(segments), size),
        np.asarray(result.explanations[index].weights, np.float64),
        style,
        num_features=num_features,
        negative=negative,
        percentile=percentile,
        visual=visual,
        caption=label,
        uncertain=hatched,
    )
    return encode_png(pixels)


def uncertain_signs(result: ExplanationResult, index: int) -> np.ndarray:
    """(m,) bool: the superpixels of explained class `index` (its position) whose sign is
    uncertain, |weight| < UNCERTAIN_SE standard errors; InvalidParams at the `uncertain`
    query where the method gives no standard errors."""
    explanation = result.explanations[index]
    if explanation.weights_se is None:
        raise InvalidParams(
            f"uncertain=hatch needs the weights' standard errors (weights_se), which method "
            f"{result.method!r} does not give; lime and kernel_shap do",
            errors=[{"loc": ["query", "uncertain"], "msg": f"no weights_se for {result.method}"}],
        )
    weights = np.abs(np.asarray(explanation.weights, np.float64))
    return weights < UNCERTAIN_SE * np.asarray(explanation.weights_se, np.float64)


def hierarchy_maps(result: ExplanationResult, segments: np.ndarray) -> np.ndarray:
    """partition_shap's coarse-to-fine maps, (K, L, H, W) float32 (glimpse/hierarchy.py), of
    a result that has a hierarchy."""
    if result.hierarchy is None:
        raise ValueError(f"method {result.method!r} has no hierarchy")
    children = np.array(result.hierarchy, np.intp).reshape(-1, 2)
    return level_maps(_weights(result, np.float64), children, segments)


def npy(array: np.ndarray, dtype: str = "float32") -> bytes:
    """An array's values as `dtype` (float32, or float16) in NumPy's .npy format (no
    pickles)."""
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, not {dtype!r}")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype), allow_pickle=False)
    return buf.getvalue()
