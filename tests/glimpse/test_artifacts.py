"""The artifacts drawn from a finished explanation (the API's and the CLI's), on a 4 x 6 grid
of 10-pixel superpixels with two explained classes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from glimpse import artifacts
from glimpse.images import encode_png
from glimpse.render import caption, render_map_overlay, render_overlay
from glimpse.result import ExplanationResult
from glimpse.visual import Visual

SEGMENTS = (np.arange(40)[:, None] // 10 * 6 + np.arange(60)[None, :] // 10).astype(np.int32)
IMAGE = np.full((40, 60, 3), 100, np.uint8)
WEIGHTS = np.stack([np.linspace(-1, 2, 24), np.linspace(2, -3, 24)])


def result(method: str = "lime", hierarchy: list[tuple[int, int]] | None = None):
    explanations = [
        {"class_index": c, "label": f"class {c}", "probability": p, "weights": list(w)}
        for c, p, w in ((3, 0.7, WEIGHTS[0]), (5, 0.2, WEIGHTS[1]))
    ]
    return ExplanationResult.model_validate(
        {
            "model": {"name": "m"},
            "method": method,
            "image": {"width": 60, "height": 40, "sha256": "0" * 64},
            "predictions": [{"class_index": 3, "label": "class 3", "probability": 0.7}],
            "segments": {"count": 24},
            "explanations": [{**e, "base_value": 0.0, "score": None} for e in explanations],
            "stats": {"model_evaluations": 1, "seconds": 0.0},
            "hierarchy": hierarchy,
        }
    )


def test_maps_paint_the_weights_unless_the_method_has_its_own() -> None:
    painted = artifacts.attribution_maps(result(), SEGMENTS, None)
    assert painted.dtype == np.float32 and painted.shape == (2, 40, 60)
    np.testing.assert_array_equal(painted, WEIGHTS.astype(np.float32)[:, SEGMENTS])
    own = np.random.default_rng(0).normal(size=(2, 40, 60))
    assert (artifacts.attribution_maps(result("gradcam"), None, own) == own.astype("f4")).all()
    with pytest.raises(ValueError, match="segments"):
        artifacts.attribution_maps(result(), None, None)


def test_overlays_are_the_renderers_pictures_of_the_chosen_class() -> None:
    r = result()
    boundaries = render_overlay(IMAGE, SEGMENTS, WEIGHTS[1], "boundaries", num_features=3)
    drawn = artifacts.overlay_png(
        IMAGE, r, SEGMENTS, None, index=1, style="boundaries", num_features=3
    )
    assert drawn == encode_png(boundaries)
    first = render_overlay(IMAGE, SEGMENTS, WEIGHTS[0], "heatmap")
    assert artifacts.overlay_png(IMAGE, r, SEGMENTS, None) == encode_png(first)
    own = np.random.default_rng(1).normal(size=(2, 40, 60)).astype(np.float32)
    heat = artifacts.overlay_png(IMAGE, result("gradcam"), None, own, index=1)
    assert heat == encode_png(render_map_overlay(IMAGE, own[1]))  # no segments needed
    grid = artifacts.overlay_png(IMAGE, r, SEGMENTS, None, style="grid")
    assert grid == artifacts.figure_png(IMAGE, r, artifacts.attribution_maps(r, SEGMENTS, None))


@pytest.mark.parametrize(
    ("style", "own_maps", "needed"),
    [(None, False, True), (None, True, False), ("grid", True, False), ("heatmap", True, False)]
    + [("heatmap", False, True), ("boundaries", True, True), ("highlight", True, True)],
)
def test_segments_are_needed_except_for_a_methods_own_maps(style, own_maps, needed) -> None:
    assert artifacts.needs_segments(style, own_maps) is needed


def test_the_caption_names_the_method_or_says_attribution() -> None:
    assert caption("partition_shap") == "SHAP value (Owen)"
    assert caption("a method of tomorrow") == "attribution"


def test_hierarchy_maps_end_with_the_attribution_and_npy_is_float32() -> None:
    tree = [(25 + i, i) for i in range(22)] + [(23, 22)]  # a chain: node 24 + i splits off i
    levels = artifacts.hierarchy_maps(result("partition_shap", tree), SEGMENTS)
    assert levels.shape == (2, 24, 40, 60) and levels.dtype == np.float32
    np.testing.assert_allclose(levels[:, -1], WEIGHTS[:, SEGMENTS], rtol=1e-6)
    whole = np.broadcast_to(WEIGHTS.sum(axis=1)[:, None, None], (2, 40, 60))
    np.testing.assert_allclose(levels[:, 0], whole, rtol=1e-5)  # level 0: the whole image
    loaded = np.load(io.BytesIO(artifacts.npy(levels)), allow_pickle=False)
    assert loaded.dtype == np.float32 and (loaded == levels).all()
    with pytest.raises(ValueError, match="no hierarchy"):
        artifacts.hierarchy_maps(result(), SEGMENTS)


def test_visual_options_reach_the_overlay_and_the_figure() -> None:
    r = result("kernel_shap")
    visual = Visual(polarity="positive", color_map="viridis", legend=True)
    drawn = artifacts.overlay_png(IMAGE, r, SEGMENTS, None, index=1, visual=visual)
    expected = render_overlay(IMAGE, SEGMENTS, WEIGHTS[1], visual=visual, caption="SHAP value")
    assert drawn == encode_png(expected)
    maps = artifacts.attribution_maps(r, SEGMENTS, None)
    assert artifacts.figure_png(IMAGE, r, maps, Visual()) == artifacts.figure_png(IMAGE, r, maps)
    assert artifacts.figure_png(IMAGE, r, maps, visual) != artifacts.figure_png(IMAGE, r, maps)
    grid = artifacts.overlay_png(IMAGE, r, SEGMENTS, None, style="grid", visual=visual)
    assert grid == artifacts.figure_png(IMAGE, r, maps, visual)


def test_npy_as_float16() -> None:
    maps = artifacts.attribution_maps(result(), SEGMENTS, None)
    half = np.load(io.BytesIO(artifacts.npy(maps, "float16")), allow_pickle=False)
    assert half.dtype == np.float16 and half.shape == maps.shape
    np.testing.assert_allclose(half, maps, rtol=1e-3)
    with pytest.raises(ValueError, match="float32 or float16"):
        artifacts.npy(maps, "float64")


def with_standard_errors(r: ExplanationResult, se: list[float]) -> ExplanationResult:
    first = r.explanations[0].model_copy(update={"weights_se": se})
    return r.model_copy(update={"explanations": [first, *r.explanations[1:]]})


def test_uncertain_hatch_marks_weights_within_two_standard_errors_of_zero() -> None:
    from glimpse.errors import InvalidParams

    r = with_standard_errors(result("kernel_shap"), [0.2] * 24)  # 2 SE = 0.4
    expected = np.abs(WEIGHTS[0]) < 0.4
    assert 0 < expected.sum() < 24
    np.testing.assert_array_equal(artifacts.uncertain_signs(r, 0), expected)
    hatched = artifacts.overlay_png(IMAGE, r, SEGMENTS, None, visual=Visual(uncertain="hatch"))
    drawn = render_overlay(IMAGE, SEGMENTS, WEIGHTS[0], "heatmap", uncertain=expected)
    assert hatched == encode_png(drawn) != artifacts.overlay_png(IMAGE, r, SEGMENTS, None)
    # only the heatmap is hatched; boundaries ignore it, as they ignore the other options
    boundaries = artifacts.overlay_png(IMAGE, r, SEGMENTS, None, style="boundaries")
    visual = Visual(uncertain="hatch")
    assert (
        artifacts.overlay_png(IMAGE, r, SEGMENTS, None, style="boundaries", visual=visual)
        == boundaries
    )
    # a method without standard errors: a 422 that names the option
    with pytest.raises(InvalidParams, match="weights_se") as refused:
        artifacts.overlay_png(IMAGE, result("occlusion"), SEGMENTS, None, visual=visual)
    assert refused.value.errors == [
        {"loc": ["query", "uncertain"], "msg": "no weights_se for occlusion"}
    ]
