"""The heatmap's visualisation options (glimpse/visual.py), checked pixel by pixel on a small
map with known values: polarity, clip percentiles, colour maps, bases, outlines."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from glimpse.colormaps import COLOR_MAPS
from glimpse.render import render_map_overlay, render_overlay
from glimpse.visual import Scale, Visual, percentile, scale_of, signed

IMAGE = np.zeros((10, 20, 3), np.uint8)
IMAGE[..., 0], IMAGE[..., 1], IMAGE[..., 2] = 200, 100, 50  # one colour: bases are exact
# a map from -1 (left column) to +1 (right column), every row the same: 20 distinct values
VALUES = np.repeat(np.linspace(-1, 1, 20)[None, :], 10, axis=0)
PHOTO = IMAGE.astype(np.float32)


def draw(**options: object) -> np.ndarray:
    return render_map_overlay(IMAGE, VALUES, visual=Visual(**options))  # type: ignore[arg-type]


def as_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + 0.5, 0, 255).astype(np.uint8)


def test_the_default_is_the_heatmap_drawn_before_the_options() -> None:
    """The photo 60 % desaturated, the red_blue colour of value / max|value| at 0.55."""
    muted = PHOTO.mean(axis=2, keepdims=True) * 0.6 + PHOTO * 0.4
    colors = COLOR_MAPS["red_blue"].colors((VALUES / np.abs(VALUES).max()).astype(np.float32))
    expected = as_uint8(muted * (1 - 0.55) + colors * 0.55)
    np.testing.assert_array_equal(draw(), expected)
    np.testing.assert_array_equal(render_map_overlay(IMAGE, VALUES), expected)


def test_positive_polarity_leaves_the_negative_pixels_uncoloured() -> None:
    out = draw(polarity="positive", overlay="original")
    negative = VALUES <= 0
    np.testing.assert_array_equal(out[negative], IMAGE[negative])  # the photo, untouched
    assert (out[~negative] != IMAGE[~negative]).any(axis=1).all()
    # the strongest positive pixel: the map's top colour at 0.55 over the photo
    top = as_uint8(PHOTO[0, 0] * 0.45 + COLOR_MAPS["red_blue"].colors(np.float32(1)) * 0.55)
    np.testing.assert_array_equal(out[0, -1], top)


def test_negative_polarity_colours_only_the_negative_pixels() -> None:
    out = draw(polarity="negative", overlay="original")
    positive = VALUES >= 0
    np.testing.assert_array_equal(out[positive], IMAGE[positive])
    bottom = COLOR_MAPS["red_blue"].colors(np.float32(-1))  # the most negative: the blue end
    np.testing.assert_array_equal(out[0, 0], as_uint8(PHOTO[0, 0] * 0.45 + bottom * 0.55))


def test_clip_upper_saturates_at_its_percentile() -> None:
    """clip_upper=50: half the magnitudes reach full strength."""
    high = float(np.percentile(np.abs(VALUES), 50))
    out = draw(clip_upper=50, overlay="none")
    cmap = COLOR_MAPS["red_blue"]
    for col in range(20):
        v = np.float32(np.clip(VALUES[0, col] / high, -1, 1))
        np.testing.assert_array_equal(out[0, col], as_uint8(cmap.colors(v)))
    saturated = np.abs(VALUES[0]) >= high
    assert saturated.sum() == 10
    assert (out[0, saturated & (VALUES[0] > 0)] == as_uint8(cmap.colors(np.float32(1)))).all()


def test_clip_lower_hides_what_is_below_its_percentile() -> None:
    """clip_lower=60 of 20 magnitudes in pairs: the 8 strongest (4 each side) are shown."""
    out = draw(clip_lower=60, overlay="original")
    low = float(np.percentile(np.abs(VALUES), 60))
    hidden = np.abs(VALUES) < low
    assert hidden[0].sum() == 12
    np.testing.assert_array_equal(out[hidden], IMAGE[hidden])
    assert (out[~hidden] != IMAGE[~hidden]).any(axis=1).all()


def test_grayscale_base_is_gray_where_nothing_is_drawn() -> None:
    out = draw(overlay="grayscale", polarity="positive")
    luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    nothing = VALUES <= 0
    assert (out[nothing] == round(luma)).all()  # R = G = B = the photo's luminance
    assert (out[~nothing, 0] > out[~nothing, 2]).all()  # reds where positive


def test_mask_black_is_black_where_nothing_is_shown_and_none_is_the_colours_alone() -> None:
    masked = draw(overlay="mask_black", clip_lower=50)
    hidden = np.abs(VALUES) < np.percentile(np.abs(VALUES), 50)
    assert (masked[hidden] == 0).all()
    expected = as_uint8(PHOTO[0, 0] * 0.45 + COLOR_MAPS["red_blue"].colors(np.float32(1)) * 0.55)
    np.testing.assert_array_equal(masked[0, -1], expected)
    alone = draw(overlay="none")
    v = (VALUES / np.abs(VALUES).max()).astype(np.float32)
    np.testing.assert_array_equal(alone, as_uint8(COLOR_MAPS["red_blue"].colors(v)))


@pytest.mark.parametrize("name", ["viridis", "grays"])
def test_a_sequential_map_colours_the_magnitude(name: str) -> None:
    out = draw(color_map=name, overlay="none")
    np.testing.assert_array_equal(out[:, 0], out[:, -1])  # -1 and +1 look the same
    top = as_uint8(COLOR_MAPS[name].colors(np.float32(1)))
    np.testing.assert_array_equal(out[0, -1], top)


def test_the_transparent_map_fades_to_the_base_at_zero() -> None:
    values = np.zeros((10, 20))
    values[:, -1] = 1.0
    out = render_map_overlay(
        IMAGE, values, visual=Visual(color_map="red_transparent_blue", overlay="original")
    )
    np.testing.assert_array_equal(out[:, :-1], IMAGE[:, :-1])
    expected = as_uint8(PHOTO[0, 0] * 0.45 + np.array([255, 13, 87]) * 0.55)
    np.testing.assert_array_equal(out[0, -1], expected)


def test_outlines_trace_the_shown_regions_in_the_maps_edge_colours() -> None:
    image = np.full((40, 60, 3), 100, np.uint8)
    segments = (np.arange(40)[:, None] // 10 * 6 + np.arange(60)[None, :] // 10).astype(int)
    weights = np.zeros(24)
    weights[[0, 1, 7]], weights[[22, 23]] = 1.0, -1.0
    out = render_overlay(image, segments, weights, visual=Visual(draw="outlines"))
    cmap = COLOR_MAPS["red_blue"]
    pos = find_boundaries(np.isin(segments, [0, 1, 7]), mode="thick")
    neg = find_boundaries(np.isin(segments, [22, 23]), mode="thick")
    assert (out[pos] == as_uint8(cmap.edge(1))).all()
    assert (out[neg] == as_uint8(cmap.edge(-1))).all()
    assert (out[~pos & ~neg] == 100).all()  # the original photo everywhere else


def test_superpixel_percentiles_count_pixels() -> None:
    """A superpixel of 30 pixels counts 30 times: the weighted percentile is np.percentile of
    the painted map."""
    rng = np.random.default_rng(3)
    values, counts = rng.normal(size=9), rng.integers(0, 40, size=9)
    repeated = np.repeat(values, counts)
    for q in (0, 12.5, 50, 62, 99.9, 100):
        assert percentile(values, q, counts) == pytest.approx(np.percentile(repeated, q))
    assert scale_of(values, Visual(), counts=counts).high == np.abs(repeated).max()


def test_signed_keeps_the_sign_of_the_polarity_and_clips() -> None:
    a = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    v, shown = signed(a, "negative", Scale(high=1.0, low=0.0))
    np.testing.assert_array_equal(v, [-1, -0.5, 0, 0, 0])
    np.testing.assert_array_equal(shown, [True, True, False, False, False])


@pytest.mark.parametrize(
    ("options", "figure", "problem"),
    [
        ({"clip_lower": 70, "clip_upper": 60}, False, "clip_lower"),
        ({"clip_lower": 99.95}, True, "clip_lower"),  # the figure's upper is 99.9
        ({"clip_upper": 120}, False, "clip_upper"),
        ({"draw": "outlines", "clip_upper": 50}, False, "clip_lower"),  # its lower is 62
    ],
)
def test_problems_name_the_option(options: dict, figure: bool, problem: str) -> None:
    assert [name for name, _ in Visual(**options).problems(figure)] == [problem]
    assert Visual(clip_lower=99.95).problems(figure=False) == []


def test_the_key_names_only_what_differs_from_the_defaults() -> None:
    options = ("polarity", "clip_upper", "clip_lower", "color_map", "legend", "max_side")
    assert Visual().key(options) == []
    assert Visual(clip_upper=100, color_map="red_blue", polarity="both").key(options) == []
    assert Visual(clip_upper=99.9).key(options, figure=True) == []
    assert Visual(legend=True, max_side=256).key(options) == ["legend=1", "max_side=256"]
    assert Visual(clip_upper=99.9).key(options) == ["clip_upper=99.9"]
