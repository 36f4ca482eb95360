"""Backgrounds shap's Image masker offers: blur(k, k) and OpenCV inpainting, for every
perturbation method."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx_models import interaction_model, load, tiny_card

from glimpse.params import BlurBackground, InpaintBackground, parse_params
from worker.engine.explain import explain
from worker.engine.perturb import Inpainter, background_image


def test_blur_kernel_size_is_cv2_blur() -> None:
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for k in (1, 3, 8, 128):
        got = background_image(img, BlurBackground(kernel_size=k, sigma=5))
        np.testing.assert_allclose(got, cv2.blur(img.astype(np.float32), (k, k)), rtol=1e-6)


@pytest.mark.parametrize("kind", ["inpaint_telea", "inpaint_ns"])
def test_inpaint_fills_the_hidden_superpixel_from_its_neighbours(kind: str) -> None:
    img = np.full((12, 12, 3), (40, 160, 90), np.uint8)
    segments = np.zeros((12, 12), np.int32)
    segments[4:8, 4:8] = 1
    img[4:8, 4:8] = 255  # the hidden superpixel looks nothing like its surroundings
    inpaint = Inpainter(img, segments, InpaintBackground(kind=kind), lambda p: p)
    filled = inpaint.compose(np.array([True, False]))
    np.testing.assert_allclose(filled[4:8, 4:8], np.broadcast_to((40, 160, 90), (4, 4, 3)), atol=2)
    np.testing.assert_array_equal(filled[segments == 0], img[segments == 0])
    np.testing.assert_array_equal(inpaint.compose(np.array([True, True])), img)
    everything = inpaint.compose(np.array([False, False]))  # shap: the mean colour
    np.testing.assert_allclose(everything[0, 0], img.reshape(-1, 3).mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize("method", ["lime", "kernel_shap", "partition_shap", "occlusion"])
def test_every_perturbation_method_takes_the_inpaint_background(
    tmp_path: Path, method: str
) -> None:
    masks = [np.zeros((16, 16), bool) for _ in range(3)]
    masks[0][:8, :8] = True
    masks[1][8:, 4:12] = True
    masks[2][2:14, 10:16] = True
    model = load(interaction_model(tmp_path / "m.onnx", masks), tiny_card(16, 16, 1))
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    params = parse_params(
        {
            "method": method,
            "num_samples": 40,
            "segmentation": {"algorithm": "grid", "cell_size": 8},
            "occlusion": {"window": 8, "stride": 8},
            "background": {"kind": "inpaint_telea", "radius": 2},
            "targets": {"classes": [0]},
            "output_space": "logit",
            "quality": False,
        }
    )
    e = explain(img, model, params, batch_size=8)
    assert e.weights.shape == (1, 4) and np.isfinite(e.weights).all()
    if method in ("kernel_shap", "partition_shap"):
        f_x = float(model(img.transpose(2, 0, 1)[None].astype(np.float32) / 255)[0, 0])
        assert e.weights.sum() == pytest.approx(f_x - e.base_value[0], abs=1e-5)
