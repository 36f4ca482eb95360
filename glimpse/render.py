"""Overlays of superpixel weights on the photo (docs/api.md: heatmap, boundaries, highlight)
and the class grid figure (every explained class side by side, as shap's image_plot).

NumPy, and Pillow to draw the figure's text: the API renders on demand from the stored
segments and weights (or per-pixel maps), the CLI and the worker from the engine's arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


# A diverging blue-white-red ramp (ColorBrewer RdBu, reversed: negative blue, positive red).
_RAMP = np.array(
    [
        [5, 48, 97],
        [33, 102, 172],
        [67, 147, 195],
        [146, 197, 222],
        [209, 229, 240],
        [247, 247, 247],
        [253, 219, 199],
        [244, 165, 130],
        [214, 96, 77],
        [178, 24, 43],
        [103, 0, 31],
    ],
    dtype=np.float32,
)


def attribution_map(weights: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """weights: (k, m); segments: (H, W) ids < m -> (k, H, W) float32."""
    return np.asarray(weights, np.float32)[:, segments]


def diverging_colors(values: np.ndarray) -> np.ndarray:
    """values in [-1, 1] (any shape) -> RGB float32 0..255 of shape values.shape + (3,)."""
    pos = (np.clip(values, -1, 1) + 1) / 2 * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, len(_RAMP) - 1)
    frac = (pos - lo)[..., None]
    return _RAMP[lo] * (1 - frac) + _RAMP[hi] * frac


def render_overlay(
    image: np.ndarray,
    segments: np.ndarray,
    weights: np.ndarray,
    style: Style = "heatmap",
    *,
    num_features: int = 5,
    negative: bool = False,
    percentile: float = 95.0,
    opacity: float = 0.55,
) -> np.ndarray:
    """image: (H, W, 3) uint8; segments: (H, W) ids; weights: (m,) -> (H, W, 3) uint8."""
    weights = np.asarray(weights, np.float64)
    photo = image.astype(np.float32)
    if style == "heatmap":
        scale = float(np.abs(weights).max()) or 1.0
        colors = diverging_colors((weights / scale).astype(np.float32))[segments]
        gray = photo.mean(axis=2, keepdims=True) * 0.6 + photo * 0.4
        out = gray * (1 - opacity) + colors * opacity
    elif style == "boundaries":
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


def thick_boundaries(mask: np.ndarray) -> np.ndarray:
    """mask (H, W) bool -> (H, W) bool: the pixels whose 4-neighbourhood holds both values,
    as skimage's find_boundaries(mask, mode="thick") (the image's edge extends itself).
    Written here so the API renders overlays without scikit-image and SciPy."""
    m = np.asarray(mask, bool)
    p = np.pad(m, 1, mode="edge")
    around = (p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:])
    anyone = m | around[0] | around[1] | around[2] | around[3]
    everyone = m & around[0] & around[1] & around[2] & around[3]
    return anyone & ~everyone


# --- per-pixel maps and the class grid figure -------------------------------------------------
def render_map_overlay(
    image: np.ndarray, values: np.ndarray, *, opacity: float = 0.55
) -> np.ndarray:
    """The heatmap style for a per-pixel map: image (H, W, 3) uint8, values (H, W) ->
    (H, W, 3) uint8 (same colours as render_overlay's heatmap)."""
    values = np.asarray(values, np.float64)
    photo = image.astype(np.float32)
    scale = float(np.abs(values).max()) or 1.0
    colors = diverging_colors((values / scale).astype(np.float32))
    gray = photo.mean(axis=2, keepdims=True) * 0.6 + photo * 0.4
    out = gray * (1 - opacity) + colors * opacity
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# shap's red_transparent_blue: positive red, negative blue, zero transparent.
_POSITIVE = np.array([255, 13, 87], np.float32)
_NEGATIVE = np.array([30, 136, 229], np.float32)
_INK = (40, 40, 40)


def _signed_colors(values: np.ndarray, scale: float, under: np.ndarray) -> np.ndarray:
    """values (H, W) over `under` (H, W, 3) float: colour ∝ sign, opacity ∝ |value| / scale."""
    v = np.clip(np.asarray(values, np.float32) / scale, -1, 1)[..., None]
    tint = np.where(v >= 0, _POSITIVE, _NEGATIVE)
    alpha = np.abs(v)
    return under * (1 - alpha) + tint * alpha


def render_figure(
    image: np.ndarray,
    maps: np.ndarray,
    titles: list[str],
    *,
    panel_height: int = 300,
    caption: str = "attribution",
) -> np.ndarray:
    """shap's image_plot as one picture: the image, then one panel per explained class
    (maps (k, H, W), titles[i] its label and probability), on one colour scale (the 99.9th
    percentile of |values|, as shap) shown by a colour bar. -> (h, w, 3) uint8."""
    maps = np.asarray(maps, np.float32)
    height, width = image.shape[:2]
    factor = min(1.0, panel_height / height) if height > panel_height else 1.0
    ph, pw = max(1, round(height * factor)), max(1, round(width * factor))
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    margin, title_h, bar_h, bar_text = 10, 38, 12, 34
    k = len(maps)
    canvas_w = margin + (k + 1) * (pw + margin)
    canvas_h = margin + title_h + ph + margin + bar_h + bar_text
    canvas = Image.new("RGB", (canvas_w, canvas_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)

    def panel(pixels: np.ndarray) -> Image.Image:
        img = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
        return img.resize((pw, ph), Image.Resampling.BILINEAR) if factor != 1.0 else img

    def fit(text: str, limit: int, face: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
        while text and draw.textlength(text, font=face) > limit:
            text = text[:-2] + "…" if len(text) > 2 else ""
        return text

    top = margin + title_h
    canvas.paste(panel(image.astype(np.float32)), (margin, top))
    draw.text((margin, margin), fit("image", pw, font), fill=_INK, font=font)
    finite = np.abs(maps[np.isfinite(maps)])
    scale = float(np.percentile(finite, 99.9)) if finite.size else 0.0
    scale = scale or float(finite.max(initial=0.0)) or 1.0
    gray = image.astype(np.float32).mean(axis=2, keepdims=True)
    under = 255 - (255 - gray) * 0.3  # the photo, faint, as shap draws it under the values
    under = np.repeat(under, 3, axis=2)
    for i in range(k):
        left = margin + (i + 1) * (pw + margin)
        canvas.paste(panel(_signed_colors(maps[i], scale, under)), (left, top))
        lines = (titles[i] if i < len(titles) else "").split("\n")
        for j, line in enumerate(lines[:2]):
            face = font if j == 0 else small
            draw.text((left, margin + j * 17), fit(line, pw, face), fill=_INK, font=face)

    # The colour bar under the class panels: -scale (blue) .. 0 (white) .. +scale (red).
    bar_left = margin + pw + margin
    bar_w = max(k * (pw + margin) - margin, 1)
    bar_top = top + ph + margin
    ramp = np.linspace(-1, 1, bar_w, dtype=np.float32)[None, :].repeat(bar_h, 0)
    white = np.full((bar_h, bar_w, 3), 255, np.float32)
    bar = _signed_colors(ramp, 1.0, white)
    canvas.paste(Image.fromarray(np.clip(bar + 0.5, 0, 255).astype(np.uint8)), (bar_left, bar_top))
    draw.rectangle(
        (bar_left, bar_top, bar_left + bar_w - 1, bar_top + bar_h - 1), outline=(160, 160, 160)
    )
    text_y = bar_top + bar_h + 3
    for pos, value in ((0.0, -scale), (0.5, 0.0), (1.0, scale)):
        label = f"{value:+.3g}" if value else "0"
        w = draw.textlength(label, font=small)
        x = bar_left + pos * (bar_w - 1) - w * pos
        draw.text((x, text_y), label, fill=_INK, font=small)
    cw = draw.textlength(caption, font=small)
    draw.text((bar_left + (bar_w - cw) / 2, text_y + 15), caption, fill=_INK, font=small)
    return np.asarray(canvas)
