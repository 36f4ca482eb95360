"""The class grid figure (shap's image_plot in Pillow) and per-pixel heatmaps."""

from __future__ import annotations

import numpy as np

from glimpse.render import render_figure, render_map_overlay
from glimpse.visual import Visual


def test_figure_has_the_image_then_one_panel_per_class_and_a_colour_bar() -> None:
    image = np.full((60, 80, 3), 128, np.uint8)
    maps = np.zeros((2, 60, 80), np.float32)
    maps[0, :, :40] = 1.0  # class 0: left half for
    maps[1, :, 40:] = -1.0  # class 1: right half against
    out = render_figure(image, maps, ["cat\np = 0.900", "dog\np = 0.050"])
    assert out.dtype == np.uint8 and out.ndim == 3
    height, width = out.shape[:2]
    assert width == 10 + 3 * (80 + 10) and height > 60 + 40
    top = 10 + 38
    first = out[top : top + 60, 100 : 100 + 80].astype(int)
    red = first[:, :40].mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 60  # strongly positive: shap's red
    second = out[top : top + 60, 190 : 190 + 80].astype(int)
    blue = second[:, 40:].mean(axis=(0, 1))
    assert blue[2] > 200 and blue[0] < 60  # strongly negative: shap's blue
    neutral = second[:, :40].mean(axis=(0, 1))
    assert (neutral > 150).all()  # zero is transparent over the faint photo


def test_large_images_are_scaled_to_the_panel_height() -> None:
    image = np.zeros((900, 600, 3), np.uint8)
    out = render_figure(image, np.ones((1, 900, 600), np.float32), ["a"], panel_height=300)
    assert out.shape[1] == 10 + 2 * (200 + 10)


def test_map_overlay_matches_the_image_size() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    values = np.linspace(-1, 1, 600).reshape(20, 30)
    out = render_map_overlay(image, values)
    assert out.shape == (20, 30, 3) and out[0, 0, 2] > out[0, 0, 0]


def test_figure_polarity_and_colour_map() -> None:
    image = np.full((60, 80, 3), 128, np.uint8)
    maps = np.zeros((1, 60, 80), np.float32)
    maps[0, :, :40], maps[0, :, 40:] = 1.0, -1.0
    top, left = 10 + 38, 100
    out = render_figure(image, maps, ["cat"], visual=Visual(polarity="positive"))
    panel = out[top : top + 60, left : left + 80].astype(int)
    faint = round(255 - (255 - 128) * 0.3)
    assert (panel[:, 40:] == faint).all()  # the negative half: the faint photo, uncoloured
    assert (panel[:, :40] == (255, 13, 87)).all()  # the positive half: shap's red, opaque
    viridis = render_figure(image, maps, ["cat"], visual=Visual(color_map="viridis"))
    panel = viridis[top : top + 60, left : left + 80].astype(int)
    np.testing.assert_array_equal(panel[:, :40], panel[:, 40:])  # magnitudes: both alike
