"""Backgrounds and the Composer that builds perturbed batches on the input grid."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse.cards import ModelCard
from glimpse.params import BlurBackground, ConstantBackground, Grid, MeanBackground
from worker.engine.input_grid import InputGrid
from worker.engine.perturb import Composer, background_image
from worker.engine.segment import segment


def card(size: tuple[int, int]) -> ModelCard:
    return ModelCard(
        input_name="x", output_name="y", num_classes=1, input_size=size, resize="squash"
    )


@pytest.fixture
def img() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_backgrounds(img: np.ndarray) -> None:
    const = background_image(img, ConstantBackground(rgb=(10, 20, 30)))
    assert const.shape == img.shape and const.dtype == np.float32
    assert (const[..., 1] == 20).all()
    mean = background_image(img, MeanBackground())
    np.testing.assert_allclose(mean[5, 7], img.reshape(-1, 3).mean(axis=0), rtol=1e-5)
    blur = background_image(img, BlurBackground(sigma=3))
    assert blur.shape == img.shape and blur.std() < img.std()


@pytest.mark.parametrize(
    "background",
    [
        ConstantBackground(),
        ConstantBackground(rgb=(255, 0, 128)),
        MeanBackground(),
        BlurBackground(sigma=2),
    ],
)
def test_composer_equals_composing_on_the_host_then_preprocessing(
    img: np.ndarray, background
) -> None:
    segments = segment(img, Grid(cell_size=8))
    grid = InputGrid(card((32, 32)), img.shape[:2])
    bg = background_image(img, background)
    compose = Composer(grid.image(img), grid.image(bg), grid.labels(segments))
    z = np.random.default_rng(1).random((5, 16)) < 0.5
    batch = compose(z)
    assert batch.shape == (5, 3, 32, 32) and batch.dtype == np.float32
    for row, mask in zip(batch, z, strict=True):
        host = np.where(mask[segments][..., None], img.astype(np.float32), bg)
        np.testing.assert_allclose(row, grid.image(host), atol=1e-5)


def test_composer_on_a_smaller_grid_agrees_away_from_superpixel_edges(img: np.ndarray) -> None:
    segments = segment(img, Grid(cell_size=8))
    grid = InputGrid(card((16, 16)), img.shape[:2])
    bg = background_image(img, ConstantBackground())
    compose = Composer(grid.image(img), grid.image(bg), grid.labels(segments))
    z = np.random.default_rng(2).random((4, 16)) < 0.5
    inner = np.zeros((16, 16), bool)
    for start in range(0, 16, 4):
        inner[start + 1 : start + 3, :] = True
    inner &= np.tile(np.isin(np.arange(16) % 4, [1, 2]), (16, 1))
    for row, mask in zip(compose(z), z, strict=True):
        host = np.where(mask[segments][..., None], img.astype(np.float32), bg)
        np.testing.assert_allclose(row[:, inner], grid.image(host)[:, inner], atol=1e-4)


def test_all_shown_is_the_image_and_none_shown_is_the_background(img: np.ndarray) -> None:
    segments = segment(img, Grid(cell_size=8))
    grid = InputGrid(card((32, 32)), img.shape[:2])
    x, bg = grid.image(img), grid.image(background_image(img, MeanBackground()))
    batch = Composer(x, bg, grid.labels(segments))(np.array([[True] * 16, [False] * 16]))
    np.testing.assert_allclose(batch[0], x, atol=1e-6)
    np.testing.assert_allclose(batch[1], bg, atol=1e-6)
