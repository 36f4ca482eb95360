"""XRAI: the greedy region search on known attributions and masks, the candidate masks, and
the method end to end on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_models import linear_model, load, tiny_card
from scipy import sparse

from glimpse.params import parse_params
from worker.engine.explain import explain
from worker.engine.xrai import MIN_PIXEL_DIFF, candidate_masks, regions

SIZE = 32


def masks_of(*planes: np.ndarray) -> sparse.csr_matrix:
    return sparse.csr_matrix(np.stack([p.reshape(-1) for p in planes]).astype(np.float64))


def square(rows: slice, cols: slice) -> np.ndarray:
    plane = np.zeros((SIZE, SIZE), bool)
    plane[rows, cols] = True
    return plane


def test_the_densest_mask_is_taken_first_and_the_regions_partition_the_image() -> None:
    attribution = np.zeros((SIZE, SIZE))
    attribution[4:12, 4:12] = 1.0
    attribution[20:30, 20:30] = -0.5
    hot = square(slice(4, 12), slice(4, 12))
    left = square(slice(None), slice(0, 16))
    everything = np.ones((SIZE, SIZE), bool)
    xrai_map, found = regions(attribution, masks_of(everything, left, hot))
    assert found[0].density == pytest.approx(1.0)
    assert found[0].area == pytest.approx(64 / SIZE**2)
    assert (xrai_map[hot] == 1.0).all()
    assert np.isfinite(xrai_map).all()
    assert [r.density for r in found] == sorted((r.density for r in found), reverse=True)
    assert sum(r.area for r in found) == pytest.approx(1.0)
    assert sum(r.attribution for r in found) == pytest.approx(attribution.sum())
    # the rest of `left` adds 448 pixels at density 0, then `everything` the other half
    assert [r.area for r in found] == pytest.approx([64 / 1024, 448 / 1024, 512 / 1024])


def test_masks_that_add_too_few_pixels_are_dropped_and_uncovered_pixels_form_a_region() -> None:
    attribution = np.arange(SIZE * SIZE, dtype=np.float64).reshape(SIZE, SIZE)
    top = square(slice(0, 16), slice(None))
    sliver = square(slice(0, 17), slice(0, 2))  # 2 new pixels once `top` is taken
    assert MIN_PIXEL_DIFF > 2
    _, found = regions(attribution, masks_of(top, sliver))
    assert len(found) == 2  # `top`, then everything left uncovered
    assert sorted(r.area for r in found) == pytest.approx([0.5, 0.5])


def test_candidate_masks_are_each_scales_segments_dilated() -> None:
    pixels = np.zeros((SIZE, SIZE, 3), np.float32)
    pixels[:, 16:] = 255.0  # two flat halves: one segment each at any scale
    masks = candidate_masks(pixels, [100.0, 500.0], dilation=0).toarray().astype(bool)
    assert masks.shape == (4, SIZE * SIZE)
    assert (masks.sum(axis=0) == 2).all()  # each pixel in exactly one segment per scale
    dilated = candidate_masks(pixels, [100.0], dilation=3).toarray().astype(bool)
    widths = dilated.reshape(2, SIZE, SIZE).sum(axis=2)[:, 0]
    assert sorted(widths.tolist()) == [19, 19]  # 16 columns and 3 more across the edge


def test_xrai_end_to_end_on_a_linear_model(tmp_path) -> None:
    w = np.zeros((3, SIZE, SIZE, 2), np.float32)
    w[:, 4:20, 4:20, 1] = 1.0  # class 1 looks at one square only
    model = load(linear_model(tmp_path / "linear.onnx", w), tiny_card(SIZE, SIZE, 2))
    pixels = np.full((SIZE, SIZE, 3), 200, np.uint8)
    pixels[4:20, 4:20] = 40  # the square stands out (and has Felzenszwalb's 150 pixels)
    params = parse_params(
        {
            "method": "xrai",
            "targets": {"classes": [1]},
            "output_space": "logit",
            "segmentation": {"algorithm": "grid", "cell_size": 8},
            "integrated_gradients": {"steps": 4},
            "xrai": {"scales": [50, 200], "dilation": 0},
        }
    )
    e = explain(pixels, model, params, batch_size=8)
    assert e.regions is not None and e.pixel_maps is not None
    top = e.regions[0][0]
    assert top.area == pytest.approx(256 / SIZE**2)
    assert top.attribution == pytest.approx(e.attribution_sum[0], rel=1e-4)
    assert np.isclose(e.pixel_maps[0][4:20, 4:20], top.density).all()
    assert int(np.argmax(e.weights[0])) == 5  # the grid cell inside the square leads
    assert e.backward_passes == 4
