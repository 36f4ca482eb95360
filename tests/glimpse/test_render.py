"""Overlays: every style at the original size; boundaries mark the strongest superpixels."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from glimpse.render import STYLES, attribution_map, diverging_colors, render_overlay


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.full((40, 60, 3), 100, np.uint8)
    rows, cols = np.divmod(np.arange(40 * 60), 60)
    segments = ((rows // 10) * 6 + cols // 10).reshape(40, 60)  # 4 x 6 cells of 10 px
    weights = np.linspace(-1, 1, 24)
    return image, segments, weights


@pytest.mark.parametrize("style", STYLES)
def test_each_style_returns_the_original_size_in_uint8(scene, style: str) -> None:
    image, segments, weights = scene
    out = render_overlay(image, segments, weights, style)  # type: ignore[arg-type]
    assert out.shape == image.shape and out.dtype == np.uint8


def test_unknown_style_is_refused(scene) -> None:
    image, segments, weights = scene
    with pytest.raises(ValueError, match="unknown overlay style"):
        render_overlay(image, segments, weights, "sparkles")  # type: ignore[arg-type]


def test_boundaries_outline_the_top_positive_superpixels_only(scene) -> None:
    image, segments, weights = scene
    out = render_overlay(image, segments, weights, "boundaries", num_features=3)
    top = np.argsort(-weights)[:3]
    edges = find_boundaries(np.isin(segments, top), mode="thick")
    yellow = np.all(out == (255, 255, 0), axis=2)
    np.testing.assert_array_equal(yellow, edges)
    assert (out[~edges] == 100).all()  # the rest of the photo is untouched


def test_boundaries_with_negative_mark_the_most_negative_in_red(scene) -> None:
    image, segments, weights = scene
    out = render_overlay(image, segments, weights, "boundaries", num_features=2, negative=True)
    red = np.all(out == (255, 0, 0), axis=2)
    worst = np.argsort(weights)[:2]
    np.testing.assert_array_equal(red, find_boundaries(np.isin(segments, worst), mode="thick"))


def test_boundaries_never_mark_non_positive_weights() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    segments = np.repeat(np.arange(4), 100).reshape(20, 20)
    out = render_overlay(image, segments, np.array([-1.0, -2.0, 0.0, -0.5]), "boundaries")
    assert (out == 0).all()


def test_highlight_tints_superpixels_above_the_percentile(scene) -> None:
    image, segments, weights = scene
    out = render_overlay(image, segments, weights, "highlight", percentile=90)
    chosen = weights >= np.percentile(weights, 90)
    inside = np.isin(segments, np.flatnonzero(chosen))
    outline = find_boundaries(inside, mode="thick")
    assert out[~inside & ~outline].max() <= 45  # dimmed: 100 * 0.45
    assert out[inside][:, 1].mean() > out[~inside][:, 1].mean()


def test_heatmap_is_red_for_positive_and_blue_for_negative(scene) -> None:
    image, segments, weights = scene
    out = render_overlay(image, segments, weights, "heatmap").astype(int)
    most, least = int(np.argmax(weights)), int(np.argmin(weights))
    red = out[segments == most].mean(axis=0)
    blue = out[segments == least].mean(axis=0)
    assert red[0] > red[2] and blue[2] > blue[0]


def test_heatmap_of_all_zero_weights_is_finite(scene) -> None:
    image, segments, _ = scene
    out = render_overlay(image, segments, np.zeros(24), "heatmap")
    assert out.dtype == np.uint8


def test_attribution_map_and_ramp_ends() -> None:
    segments = np.array([[0, 1], [1, 2]])
    maps = attribution_map(np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]), segments)
    assert maps.shape == (2, 2, 2) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps[0], [[1, 2], [2, 3]])
    ends = diverging_colors(np.array([-1.0, 0.0, 1.0]))
    assert ends[0, 2] > ends[0, 0] and ends[2, 0] > ends[2, 2]
    np.testing.assert_allclose(ends[1], [247, 247, 247])


@pytest.mark.parametrize("seed", range(4))
def test_thick_boundaries_equal_scikit_image_s(seed: int) -> None:
    from glimpse.render import thick_boundaries

    rng = np.random.default_rng(seed)
    mask = rng.random((37, 53)) < (0.2 + 0.2 * seed)
    mask[rng.integers(0, 37), :] = True  # a row touching both edges
    assert np.array_equal(thick_boundaries(mask), find_boundaries(mask, mode="thick"))


def test_uncertain_superpixels_are_hatched_and_the_rest_untouched(scene) -> None:
    from glimpse.render import HATCH_DARK, HATCH_LIGHT

    image, segments, weights = scene
    uncertain = np.zeros(24, bool)
    uncertain[[0, 7, 23]] = True
    plain = render_overlay(image, segments, weights, "heatmap")
    hatched = render_overlay(image, segments, weights, "heatmap", uncertain=uncertain)
    inside = uncertain[segments]
    np.testing.assert_array_equal(hatched[~inside], plain[~inside])
    # Diagonal lines, 6 px apart on a 40 x 60 picture (its longer side / 64, at least 6): a
    # dark pixel where (row + col) % 6 == 0, a light one beside it, the heatmap in between.
    rows, cols = np.indices(segments.shape)
    phase = (rows + cols) % 6
    np.testing.assert_array_equal(np.all(hatched == HATCH_DARK, axis=2), inside & (phase == 0))
    np.testing.assert_array_equal(np.all(hatched == HATCH_LIGHT, axis=2), inside & (phase == 1))
    between = inside & (phase > 1)
    np.testing.assert_array_equal(hatched[between], plain[between])
    # the lines run on from one row to the next, one column to the left: diagonals
    cell = np.all(hatched[0:10, 0:10] == HATCH_DARK, axis=2)
    assert cell[0, 0] and cell[1, 5] and cell[5, 1] and not cell[0, 1]


def test_hatching_scales_with_the_picture_and_goes_under_the_legend() -> None:
    from glimpse.render import HATCH_DARK, hatch
    from glimpse.visual import Visual

    mask = np.ones((300, 640), bool)
    lines = np.all(hatch(np.zeros((300, 640, 3), np.uint8), mask) == HATCH_DARK, axis=2)
    assert lines[0, :20].nonzero()[0].tolist() == [0, 1, 10, 11]  # period 10, 2 px wide
    image = np.full((120, 160, 3), 100, np.uint8)
    segments = np.zeros((120, 160), np.int64)
    visual = Visual(legend=True)
    legend = render_overlay(image, segments, np.array([0.5]), visual=visual)
    both = render_overlay(
        image, segments, np.array([0.5]), visual=visual, uncertain=np.array([True])
    )
    # drawn before the legend: its band covers the hatching as it covers the picture (80 %)
    band = np.abs(both[-52:].astype(int) - legend[-52:].astype(int))
    assert 0 < band.max() <= 0.2 * 255 + 1
    assert (both[:-52] != legend[:-52]).any()
