"""The colour bar: under the class grid figure's panels, and on an overlay asked for with
`legend=true` (a pale band along its bottom edge). It spans the values the colour map shows
for the polarity: -high..0..+high for `both` on a diverging map, 0..+high for `positive`,
-high..0 for `negative`, 0..high (magnitudes, |caption|) on a sequential map.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from glimpse.colormaps import ColorMap
from glimpse.text import INK, Font, draw_text, font, text_width
from glimpse.visual import Polarity, composite

BAR_HEIGHT = 12
#: The overlay legend's band: bar, tick labels, caption and margins, in pixels.
BAND_HEIGHT = 52


def bar_range(cmap: ColorMap, polarity: Polarity) -> tuple[float, float]:
    """The colour bar's ends, in units of the scale's `high`."""
    if not cmap.diverging or polarity == "positive":
        return 0.0, 1.0
    return (-1.0, 0.0) if polarity == "negative" else (-1.0, 1.0)


def bar_label(cmap: ColorMap, polarity: Polarity, caption: str) -> str:
    return f"|{caption}|" if not cmap.diverging and polarity == "both" else caption


def bar_pixels(cmap: ColorMap, polarity: Polarity, width: int, height: int) -> np.ndarray:
    """(height, width, 3) float32: the map over white, left to right from the range's start."""
    start, end = bar_range(cmap, polarity)
    ramp = np.linspace(start, end, width, dtype=np.float32)[None, :].repeat(height, 0)
    white = np.full((height, width, 3), 255, np.float32)
    return composite(white, ramp, np.ones(ramp.shape, bool), cmap, 1.0)


def draw_bar(
    canvas: Image.Image,
    xy: tuple[int, int],
    width: int,
    cmap: ColorMap,
    polarity: Polarity,
    high: float,
    caption: str,
    small: Font,
) -> None:
    """The bar at xy (its top-left corner), `width` wide, its three tick labels under it and
    the caption under those, on `canvas`."""
    left, top = xy
    width = max(width, 1)
    bar = bar_pixels(cmap, polarity, width, BAR_HEIGHT)
    canvas.paste(Image.fromarray(np.clip(bar + 0.5, 0, 255).astype(np.uint8)), (left, top))
    draw = ImageDraw.Draw(canvas)
    right, bottom = left + width - 1, top + BAR_HEIGHT - 1
    draw.rectangle((left, top, right, bottom), outline=(160, 160, 160))
    start, end = bar_range(cmap, polarity)
    text_y = top + BAR_HEIGHT + 3
    for pos in (0.0, 0.5, 1.0):
        value = (start + (end - start) * pos) * high
        label = (f"{value:+.3g}" if cmap.diverging else f"{value:.3g}") if value else "0"
        w = draw.textlength(label, font=small)
        draw.text((left + pos * (width - 1) - w * pos, text_y), label, fill=INK, font=small)
    label = bar_label(cmap, polarity, caption)
    x = left + (width - text_width(draw, label, small)) / 2
    draw_text(draw, (x, text_y + 15), label, small)


def draw_legend(
    pixels: np.ndarray, cmap: ColorMap, polarity: Polarity, high: float, caption: str
) -> np.ndarray:
    """pixels (H, W, 3) uint8 with the colour bar drawn on a pale band along the bottom edge
    (BAND_HEIGHT pixels, or the whole height of a shorter image) -> (H, W, 3) uint8."""
    height, width = pixels.shape[:2]
    top = max(height - BAND_HEIGHT, 0)
    out = pixels.copy()
    band = out[top:].astype(np.float32)
    out[top:] = np.clip(band * 0.2 + 255 * 0.8 + 0.5, 0, 255).astype(np.uint8)
    canvas = Image.fromarray(out)
    margin = min(8, max(width // 10, 1))
    small = font(11)
    draw_bar(canvas, (margin, top + 6), width - 2 * margin, cmap, polarity, high, caption, small)
    return np.asarray(canvas)
