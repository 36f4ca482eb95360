"""The colour bar (glimpse/legend.py): on an overlay with legend=true, a pale band along the
bottom edge; its range follows the polarity and the map."""

from __future__ import annotations

import numpy as np

from glimpse.colormaps import COLOR_MAPS
from glimpse.legend import BAND_HEIGHT, bar_label, bar_pixels, bar_range
from glimpse.render import render_map_overlay
from glimpse.visual import Visual


def test_a_legend_is_a_band_along_the_bottom_and_leaves_the_rest() -> None:
    image = np.full((120, 200, 3), 90, np.uint8)
    values = np.linspace(-1, 1, 200)[None, :].repeat(120, 0)
    plain = render_map_overlay(image, values)
    legend = render_map_overlay(image, values, visual=Visual(legend=True), caption="LIME weight")
    band = 120 - BAND_HEIGHT
    np.testing.assert_array_equal(legend[:band], plain[:band])
    bar = legend[band + 6 : band + 6 + 12, 8 : 200 - 8].astype(int)
    assert bar[6, 2, 2] > bar[6, 2, 0] and bar[6, -3, 0] > bar[6, -3, 2]  # blue .. red
    assert (legend[band:] > plain[band:]).mean() > 0.5  # paler


def test_a_positive_legend_starts_at_zero() -> None:
    rgb = bar_pixels(COLOR_MAPS["red_blue"], "positive", 11, 1)[0]
    np.testing.assert_allclose(rgb[0], [247, 247, 247])
    np.testing.assert_allclose(rgb[-1], [103, 0, 31])
    assert bar_range(COLOR_MAPS["viridis"], "both") == (0.0, 1.0)
    assert bar_label(COLOR_MAPS["viridis"], "both", "SHAP value") == "|SHAP value|"
