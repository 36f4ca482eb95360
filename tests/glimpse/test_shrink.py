"""max_side (glimpse/shrink.py): the photo and maps are area-averaged, the superpixels taken at
pixel centres, before anything is drawn; every overlay style and the figure fit in it."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_artifacts import IMAGE, SEGMENTS, result

from glimpse import artifacts
from glimpse.images import decode_image
from glimpse.render import render_figure
from glimpse.shrink import fitted_size, shrink_image, shrink_map, shrink_maps, shrink_segments
from glimpse.visual import Visual


def test_fitted_size_keeps_the_aspect_and_never_enlarges() -> None:
    assert fitted_size(3024, 4032, 1024) == (768, 1024)
    assert fitted_size(4032, 3024, 1024) == (1024, 768)
    assert fitted_size(300, 451, 1024) == (300, 451)
    assert fitted_size(300, 451, None) == (300, 451)
    assert fitted_size(1, 5000, 100) == (1, 100)


def test_a_map_is_area_averaged() -> None:
    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(shrink_map(values, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2, 60, 90)).astype(np.float32)
    small = shrink_maps(maps, 30)
    assert small.shape == (2, 20, 30) and small.dtype == np.float32
    blocks = maps.reshape(2, 20, 3, 30, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(small, blocks, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(shrink_maps(maps, None), maps)


def test_segments_take_the_id_under_each_pixel_centre() -> None:
    ids = np.arange(6).reshape(2, 3)
    segments = np.repeat(np.repeat(ids, 10, axis=0), 10, axis=1)
    small = shrink_segments(segments, (4, 6))
    np.testing.assert_array_equal(small, np.repeat(np.repeat(ids, 2, axis=0), 2, axis=1))
    assert shrink_image(np.zeros((20, 30, 3), np.uint8), (10, 15)).shape == (10, 15, 3)


@pytest.mark.parametrize("style", ["heatmap", "boundaries", "highlight"])
def test_every_overlay_style_is_drawn_at_max_side(style: str) -> None:
    visual = Visual(max_side=30)
    png = artifacts.overlay_png(IMAGE, result(), SEGMENTS, None, style=style, visual=visual)  # type: ignore[arg-type]
    assert decode_image(png, max_pixels=10**8).pixels.shape == (20, 30, 3)


def test_a_methods_own_map_is_drawn_at_max_side_too() -> None:
    own = np.random.default_rng(1).normal(size=(2, 40, 60)).astype(np.float32)
    png = artifacts.overlay_png(IMAGE, result("gradcam"), None, own, visual=Visual(max_side=16))
    assert decode_image(png, max_pixels=10**8).pixels.shape == (11, 16, 3)


def test_the_figure_fits_in_max_side() -> None:
    image = np.zeros((900, 1200, 3), np.uint8)
    maps = np.ones((3, 900, 1200), np.float32)
    out = render_figure(image, maps, ["a", "b", "c"], visual=Visual(max_side=500))
    assert max(out.shape[:2]) <= 500 and out.shape[1] >= 490
    default = render_figure(image, maps, ["a", "b", "c"])
    assert default.shape[0] == 10 + 38 + 300 + 10 + 12 + 34  # panels 300 px high, as ever


def test_drawing_a_12_megapixel_overlay_at_max_side_is_quick() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (3024, 4032, 3), dtype=np.uint8)
    own = rng.normal(size=(1, 3024, 4032)).astype(np.float32)
    started = time.perf_counter()
    png = artifacts.overlay_png(image, result("gradcam"), None, own, visual=Visual(max_side=1024))
    seconds = time.perf_counter() - started
    assert decode_image(png, max_pixels=10**8).pixels.shape == (768, 1024, 3)
    assert seconds < 2.0, seconds  # 12 s (drawing and PNG) at the original size
