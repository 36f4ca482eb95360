"""Superpixels: consecutive ids at the original size, large images segmented downscaled."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

from glimpse.errors import InvalidParams
from glimpse.params import Felzenszwalb, Grid, Quickshift, Slic
from worker.engine.segment import resize_labels, segment


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage.data.chelsea()[::3, ::3].copy()  # 100 x 151


@pytest.mark.parametrize("spec", [Quickshift(), Slic(), Felzenszwalb(), Grid(cell_size=16)])
def test_each_algorithm_gives_consecutive_ids_at_the_original_size(photo: np.ndarray, spec) -> None:
    labels = segment(photo, spec)
    assert labels.shape == photo.shape[:2]
    assert labels.dtype == np.int32
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids, np.arange(len(ids)))
    assert len(ids) >= 4


def test_grid_cells_are_row_major_and_clip_at_the_edges() -> None:
    labels = segment(np.zeros((10, 7, 3), np.uint8), Grid(cell_size=4))
    assert labels.max() == 5  # 3 rows x 2 columns of cells
    assert labels[0, 0] == 0 and labels[0, 6] == 1 and labels[9, 0] == 4 and labels[9, 6] == 5
    assert (labels[8:, 4:] == 5).all()


def test_the_same_seed_gives_the_same_quickshift(photo: np.ndarray) -> None:
    np.testing.assert_array_equal(
        segment(photo, Quickshift(), seed=1), segment(photo, Quickshift(), seed=1)
    )


def test_large_images_are_segmented_downscaled_and_mapped_back(photo: np.ndarray) -> None:
    big = np.repeat(np.repeat(photo, 4, axis=0), 4, axis=1)  # 400 x 604
    labels = segment(big, Slic(n_segments=30), max_side=151)
    assert labels.shape == big.shape[:2]
    # segmented at 100 x 151 and mapped back by nearest neighbour: constant 4x4 blocks
    blocks = labels.reshape(100, 4, 151, 4)
    assert (blocks == blocks[:, :1, :, :1]).all()
    small = np.asarray(Image.fromarray(big).resize((151, 100), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(blocks[:, 0, :, 0], segment(small, Slic(n_segments=30)))


def test_the_grid_is_always_at_full_size() -> None:
    labels = segment(np.zeros((64, 64, 3), np.uint8), Grid(cell_size=2), max_side=16)
    assert labels.max() + 1 == 32 * 32


def test_too_many_superpixels_is_invalid_params() -> None:
    with pytest.raises(InvalidParams, match="superpixels"):
        segment(np.zeros((200, 200, 3), np.uint8), Grid(cell_size=2))


def test_resize_labels_is_nearest_neighbour() -> None:
    labels = np.array([[0, 1], [2, 3]], np.int32)
    np.testing.assert_array_equal(
        resize_labels(labels, (4, 4)), np.kron(labels, np.ones((2, 2), int))
    )
