"""The comparison figure (figure.png?compare=true): one photo explained by several methods,
side by side, as practitioners draw Grad-CAM, LIME and SHAP by hand.

One row per explained class: the photo, then each method's map, its numbers under it
(deletion/insertion AUC on the shared superpixels, seconds, model evaluations). The methods'
units differ (a LIME weight, a Shapley value, a Grad-CAM activation), so each map is drawn on
its own scale (its clip_upper percentile of |value|, 99.9 by default) and the one colour bar
reads in those relative units.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from glimpse.legend import BAR_HEIGHT, draw_bar
from glimpse.render import faint_gray, panel_image
from glimpse.result import Comparison
from glimpse.shrink import fitted_size, shrink_image, shrink_map
from glimpse.text import draw_text, fit, font
from glimpse.visual import OPACITY, Visual, composite, scale_of, signed

_MARGIN, _HEAD, _NOTE, _BAR_TEXT = 10, 22, 34, 34
#: A panel's longer side at most.
PANEL_SIDE = 220
#: The method names as the figure titles them.
TITLES = {
    "lime": "LIME",
    "kernel_shap": "Kernel SHAP",
    "partition_shap": "Partition SHAP",
    "gradcam": "Grad-CAM",
    "occlusion": "Occlusion",
    "integrated_gradients": "Integrated Gradients",
    "xrai": "XRAI",
}


def notes(comparison: Comparison, k: int) -> list[list[str]]:
    """Per method, the two lines under its panel of class row k."""
    found = []
    for method in comparison.methods:
        quality = method.explanations[k].quality
        first = (
            f"del {quality.deletion_auc:.3f}  ins {quality.insertion_auc:.3f}"
            if quality is not None
            else "quality off"
        )
        found.append([first, f"{method.seconds:.2f} s, {method.model_evaluations} evals"])
    return found


def render_comparison(
    image: np.ndarray,
    maps: np.ndarray,
    comparison: Comparison,
    class_titles: list[str],
    visual: Visual | None = None,
) -> np.ndarray:
    """image (H, W, 3) uint8, maps (M, K, h, w) every method's maps of every explained class
    (any size: drawn at the panels'), `class_titles` one per class -> (h, w, 3) uint8."""
    visual = visual or Visual()
    cmap = visual.cmap(figure=True)
    maps = np.asarray(maps, np.float32)
    n_methods, k = maps.shape[:2]
    side = PANEL_SIDE if visual.max_side is None else max(16, visual.max_side // (n_methods + 1))
    ph, pw = fitted_size(image.shape[0], image.shape[1], min(side, PANEL_SIDE))
    big, small = font(13), font(11)
    row_h = _HEAD + ph + _NOTE
    width = _MARGIN + (n_methods + 1) * (pw + _MARGIN)
    height = _MARGIN + _HEAD + k * (row_h + _MARGIN) + BAR_HEIGHT + _BAR_TEXT
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    photo = shrink_image(image, (ph, pw)).astype(np.float32)
    under = faint_gray(photo)
    opacity = 1.0 if cmap.transparent else OPACITY

    for j, method in enumerate(comparison.methods):  # the column titles
        left = _MARGIN + (j + 1) * (pw + _MARGIN)
        title = TITLES.get(method.method, method.method)
        draw_text(draw, (left, _MARGIN), fit(draw, title, pw, big), big)
    for row in range(k):
        top = _MARGIN + _HEAD + row * (row_h + _MARGIN)
        label = class_titles[row] if row < len(class_titles) else ""
        draw_text(draw, (_MARGIN, top), fit(draw, label, pw, small), small)
        canvas.paste(panel_image(photo), (_MARGIN, top + _HEAD))
        for j, lines in enumerate(notes(comparison, row)):
            left = _MARGIN + (j + 1) * (pw + _MARGIN)
            values = shrink_map(maps[j, row], (ph, pw))
            v, shown = signed(values, visual.polarity, scale_of(maps[j, row], visual, figure=True))
            canvas.paste(
                panel_image(composite(under, v, shown, cmap, opacity)), (left, top + _HEAD)
            )
            for i, line in enumerate(lines):
                y = top + _HEAD + ph + 3 + i * 15
                draw_text(draw, (left, y), fit(draw, line, pw, small), small)

    bar_w = max(n_methods * (pw + _MARGIN) - _MARGIN, 1)
    bar_xy = (_MARGIN + pw + _MARGIN, height - BAR_HEIGHT - _BAR_TEXT)
    caption = "each map over its own scale"
    draw_bar(canvas, bar_xy, bar_w, cmap, visual.polarity, 1.0, caption, small)
    return np.asarray(canvas)
