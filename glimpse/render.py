"""Overlays of superpixel weights on the photo (docs/api.md: heatmap, boundaries, highlight)
and the class grid figure (every explained class side by side, as shap's image_plot).

The heatmap and the figure are drawn as glimpse/visual.py's options say (polarity, clip
percentiles, colour map, overlay base, pixels or outlines, legend). NumPy, and Pillow to
draw the figure's text: the API renders on demand from the stored
segments and weights (or per-pixel maps), the CLI and the worker from the engine's arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from glimpse.colormaps import COLOR_MAPS
from glimpse.legend import BAR_HEIGHT, draw_bar, draw_legend
from glimpse.shrink import shrink_image, shrink_map
from glimpse.text import draw_text, fit, font
from glimpse.visual import (
    OPACITY,
    Visual,
    composite,
    paint,
    scale_of,
    signed,
    thick_boundaries,
)

Style = Literal["heatmap", "boundaries", "highlight"]
STYLES: tuple[str, ...] = ("heatmap", "boundaries", "highlight")
#: The overlay endpoint's styles: the three above and `grid`, the class grid figure.
OverlayStyle = Literal["heatmap", "boundaries", "highlight", "grid"]

#: What the colour bar of the class grid figure measures, by method.
CAPTIONS = {
    "lime": "LIME weight",
    "kernel_shap": "SHAP value",
    "partition_shap": "SHAP value (Owen)",
    "occlusion": "occlusion: mean drop of the score",
    "gradcam": "Grad-CAM",
    "integrated_gradients": "Integrated Gradients",
    "xrai": "XRAI region density",
}


def caption(method: str) -> str:
    """What the figure's colour bar measures for `method`; "attribution" for any other."""
    return CAPTIONS.get(method, "attribution")


def attribution_map(weights: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """weights: (k, m); segments: (H, W) ids < m -> (k, H, W) float32."""
    return np.asarray(weights, np.float32)[:, segments]


def diverging_colors(values: np.ndarray) -> np.ndarray:
    """values in [-1, 1] (any shape) -> RGB float32 0..255 of shape values.shape + (3,): the
    heatmap's default map (glimpse/colormaps.py `red_blue`)."""
    return COLOR_MAPS["red_blue"].colors(values)


def render_overlay(
    image: np.ndarray,
    segments: np.ndarray,
    weights: np.ndarray,
    style: Style = "heatmap",
    *,
    num_features: int = 5,
    negative: bool = False,
    percentile: float = 95.0,
    opacity: float = OPACITY,
    visual: Visual | None = None,
    caption: str = "attribution",
    uncertain: np.ndarray | None = None,
) -> np.ndarray:
    """image: (H, W, 3) uint8; segments: (H, W) ids; weights: (m,) -> (H, W, 3) uint8.
    The heatmap is drawn as `visual` says (glimpse/visual.py; `caption` labels its legend),
    with the superpixels `uncertain` (m,) bool marks hatched; boundaries and highlight are
    lime's pictures and read only their own options."""
    weights = np.asarray(weights, np.float64)
    photo = image.astype(np.float32)
    if style == "heatmap":
        visual = visual or Visual()
        hatched = None if uncertain is None else np.asarray(uncertain, bool)[segments]
        return _heatmap(image, weights, visual, caption, opacity, segments, hatched)
    if style == "boundaries":
        out = photo.copy()
        order = np.argsort(-weights, kind="stable")
        positive = order[:num_features][weights[order[:num_features]] > 0]
        _outline(out, np.isin(segments, positive), (255, 255, 0))
        if negative:
            worst = np.argsort(weights, kind="stable")[:num_features]
            worst = worst[weights[worst] < 0]
            _outline(out, np.isin(segments, worst), (255, 0, 0))
    elif style == "highlight":
        threshold = np.percentile(weights, percentile) if len(weights) else 0.0
        chosen = (weights >= threshold) & (weights > 0)
        mask = chosen[segments]
        out = photo * 0.45
        tint = np.array([40, 220, 90], np.float32)
        out[mask] = photo[mask] * 0.55 + tint * 0.45
        _outline(out, mask, (40, 220, 90))
    else:
        raise ValueError(f"unknown overlay style {style!r}; use one of {', '.join(STYLES)}")
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _outline(canvas: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int]) -> None:
    """Paint the boundary of `mask` (thick, as skimage's mark_boundaries mode='thick')."""
    if not mask.any():
        return
    canvas[thick_boundaries(mask)] = np.asarray(rgb, np.float32)


def _heatmap(
    image: np.ndarray,
    values: np.ndarray,
    visual: Visual,
    caption: str,
    opacity: float,
    segments: np.ndarray | None = None,
    hatched: np.ndarray | None = None,
) -> np.ndarray:
    painted, scale = paint(image, values, visual, segments=segments, opacity=opacity)
    out = np.clip(painted + 0.5, 0, 255).astype(np.uint8)
    if hatched is not None:
        out = hatch(out, hatched)
    if visual.legend:
        out = draw_legend(out, visual.cmap(), visual.polarity, scale.high, caption)
    return out


#: The hatching's two tones: a dark line and a light one beside it, seen on any colour.
HATCH_DARK, HATCH_LIGHT = (25, 25, 25), (245, 245, 245)


def hatch(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Diagonal hatching over the pixels `mask` (H, W) bool marks, on pixels (H, W, 3) uint8 ->
    a copy. Lines run from bottom left to top right, `period` pixels apart (1/64 of the
    longer side, at least 6): a dark one `period // 4` (at least 1) wide, a light one beside
    it half as wide (at least 1)."""
    h, w = mask.shape
    period = max(6, round(max(h, w) / 64))
    dark = max(1, period // 4)
    light = max(1, dark // 2)
    rows, cols = np.ogrid[:h, :w]
    phase = (rows + cols) % period
    out = pixels.copy()
    out[mask & (phase < dark)] = HATCH_DARK
    out[mask & (phase >= dark) & (phase < dark + light)] = HATCH_LIGHT
    return out


# --- per-pixel maps and the class grid figure -------------------------------------------------
def render_map_overlay(
    image: np.ndarray,
    values: np.ndarray,
    *,
    opacity: float = OPACITY,
    visual: Visual | None = None,
    caption: str = "attribution",
) -> np.ndarray:
    """The heatmap style for a per-pixel map: image (H, W, 3) uint8, values (H, W) ->
    (H, W, 3) uint8 (drawn as render_overlay's heatmap)."""
    values = np.asarray(values, np.float64)
    return _heatmap(image, values, visual or Visual(), caption, opacity)


_MARGIN, _TITLE_H, _BAR_TEXT = 10, 38, 34


def panel_image(pixels: np.ndarray) -> Image.Image:
    """(h, w, 3) float pixels, rounded and clipped, as a picture to paste into a figure."""
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def faint_gray(photo: np.ndarray) -> np.ndarray:
    """(h, w, 3) the photo in faint gray, as shap draws it under a figure's values."""
    gray = photo.astype(np.float32).mean(axis=2, keepdims=True)
    return np.repeat(255 - (255 - gray) * 0.3, 3, axis=2)


def _panel_size(
    height: int, width: int, k: int, panel_height: int, max_side: int | None
) -> tuple[int, int]:
    """A panel's (height, width): the photo's, shrunk to panel_height, and so that the whole
    figure (k + 1 panels side by side, titles and colour bar) fits in max_side."""
    factor = min(1.0, panel_height / height) if height > panel_height else 1.0
    size = max(1, round(height * factor)), max(1, round(width * factor))
    if max_side is not None:
        across = ((max_side - _MARGIN) / (k + 1) - _MARGIN) / width
        down = (max_side - 2 * _MARGIN - _TITLE_H - BAR_HEIGHT - _BAR_TEXT) / height
        if min(across, down) < factor:  # rounded down: the figure must fit
            fit = min(across, down)
            size = max(1, int(height * fit)), max(1, int(width * fit))
    return size


def render_figure(
    image: np.ndarray,
    maps: np.ndarray,
    titles: list[str],
    *,
    panel_height: int = 300,
    caption: str = "attribution",
    visual: Visual | None = None,
) -> np.ndarray:
    """shap's image_plot as one picture: the image, then one panel per explained class
    (maps (k, H, W), titles[i] its label and probability), on one colour scale (by default
    the 99.9th percentile of |values|, as shap, of the maps at their own size) shown by a
    colour bar. `visual`: polarity, clip percentiles, colour map (default shap's
    red_transparent_blue) and max_side (the figure's longer side). -> (h, w, 3) uint8."""
    visual = visual or Visual()
    cmap = visual.cmap(figure=True)
    maps = np.asarray(maps, np.float32)
    height, width = image.shape[:2]
    k = len(maps)
    ph, pw = _panel_size(height, width, k, panel_height, visual.max_side)
    shrunk = (ph, pw) != (height, width)
    big, small = font(13), font(11)
    canvas_w = _MARGIN + (k + 1) * (pw + _MARGIN)
    canvas_h = _MARGIN + _TITLE_H + ph + _MARGIN + BAR_HEIGHT + _BAR_TEXT
    canvas = Image.new("RGB", (canvas_w, canvas_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)

    scale = scale_of(maps, visual, figure=True)  # at the maps' own size, as shap
    photo = shrink_image(image, (ph, pw)) if shrunk else image  # drawn at panel size
    top = _MARGIN + _TITLE_H
    canvas.paste(panel_image(photo.astype(np.float32)), (_MARGIN, top))
    draw_text(draw, (_MARGIN, _MARGIN), fit(draw, "image", pw, big), big)
    under = faint_gray(photo)
    opacity = 1.0 if cmap.transparent else OPACITY
    for i in range(k):
        left = _MARGIN + (i + 1) * (pw + _MARGIN)
        values = shrink_map(maps[i], (ph, pw)) if shrunk else maps[i]
        v, shown = signed(values, visual.polarity, scale)
        canvas.paste(panel_image(composite(under, v, shown, cmap, opacity)), (left, top))
        lines = (titles[i] if i < len(titles) else "").split("\n")
        for j, line in enumerate(lines[:2]):
            face = big if j == 0 else small
            draw_text(draw, (left, _MARGIN + j * 17), fit(draw, line, pw, face), face)

    # The colour bar under the class panels: -scale (blue) .. 0 (white) .. +scale (red).
    bar_w = max(k * (pw + _MARGIN) - _MARGIN, 1)
    bar_xy = (_MARGIN + pw + _MARGIN, top + ph + _MARGIN)
    draw_bar(canvas, bar_xy, bar_w, cmap, visual.polarity, scale.high, caption, small)
    return np.asarray(canvas)
