"""The model-input grid: squash, shorter side + center crop, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse.cards import PRESETS, ModelCard
from worker.engine.input_grid import InputGrid


def card(**fields: object) -> ModelCard:
    base = {
        "input_name": "x",
        "output_name": "y",
        "num_classes": 2,
        "input_size": (16, 16),
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
    }
    return ModelCard(**{**base, **fields})  # type: ignore[arg-type]


def test_squash_to_the_same_size_is_the_identity_then_normalises() -> None:
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    c = card(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    x = InputGrid(c, (16, 16)).image(img)
    assert x.shape == (3, 16, 16) and x.dtype == np.float32
    expected = (img.transpose(2, 0, 1) / 255 - np.array([0.1, 0.2, 0.3])[:, None, None]) / np.array(
        [0.5, 0.25, 2.0]
    )[:, None, None]
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_bgr_channel_order() -> None:
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0] = 255
    x = InputGrid(card(channel_order="BGR"), (16, 16)).image(img)
    assert x[2].min() == pytest.approx(1.0) and x[0].max() == 0.0


def test_shorter_side_resizes_then_crops_the_center() -> None:
    height, width = 64, 128
    c = card(resize="shorter_side", resize_shorter_to=32)
    grid = InputGrid(c, (height, width))
    assert grid.resized == (64, 32)  # (w, h) after the shorter side becomes 32
    assert grid.crop == (24, 8, 40, 24)
    ids = np.arange(height * width).reshape(height, width)
    out = grid.labels(ids)
    assert out.shape == (16, 16)
    rows, cols = np.divmod(out, width)
    r, c_ = np.mgrid[0:16, 0:16]
    # each grid pixel comes from the 2x2 block of the original under it, offset by the crop
    assert np.all((rows - (r + 8) * 2 >= 0) & (rows - (r + 8) * 2 <= 1))
    assert np.all((cols - (c_ + 24) * 2 >= 0) & (cols - (c_ + 24) * 2 <= 1))


def test_imagenet_preset_on_a_landscape_photo() -> None:
    c = ModelCard(input_name="data", output_name="out", num_classes=1000, **PRESETS["imagenet"])  # type: ignore[arg-type]
    grid = InputGrid(c, (300, 451))
    assert grid.resized == (385, 256)
    left, top, right, bottom = grid.crop
    assert (right - left, bottom - top) == (224, 224)
    assert (left, top) == ((385 - 224) // 2, (256 - 224) // 2)
    assert grid.image(np.zeros((300, 451, 3), np.uint8)).shape == (3, 224, 224)


def test_labels_and_image_share_the_grid() -> None:
    c = card(input_size=(8, 12))
    grid = InputGrid(c, (40, 30))
    assert grid.labels(np.zeros((40, 30), np.int32)).shape == (8, 12)
    assert grid.image(np.zeros((40, 30, 3), np.uint8)).shape == (3, 8, 12)
