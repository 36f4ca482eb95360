"""Glimpse's quickshift gives scikit-image's (lime_image's) superpixels, label for label."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from skimage.segmentation import quickshift as skimage_quickshift

from worker.engine.quickshift import quickshift


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Both label maps cut the image into the same regions (ids may be numbered apart)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize(
    ("photo", "kernel_size", "max_dist", "ratio", "seed"),
    [
        ("chelsea", 4, 200, 0.2, 0),  # lime_image's defaults
        ("astronaut", 4, 200, 0.2, 3),  # flat black and white areas: ties everywhere
        ("coffee", 2, 10, 0.5, 1),
        ("rocket", 3.5, 6, 1.0, 2),
    ],
)
def test_the_labels_are_scikit_images(
    photo: str, kernel_size: float, max_dist: float, ratio: float, seed: int
) -> None:
    image = getattr(skimage.data, photo)()[::2, ::2].copy()
    expected = skimage_quickshift(
        image, kernel_size=kernel_size, max_dist=max_dist, ratio=ratio, rng=seed
    )
    got = quickshift(image, kernel_size=kernel_size, max_dist=max_dist, ratio=ratio, seed=seed)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_labels_do_not_depend_on_the_thread_count(threads: int) -> None:
    image = skimage.data.chelsea()[::3, ::3].copy()
    reference = quickshift(image, kernel_size=4, max_dist=200, ratio=0.2, seed=0, threads=1)
    got = quickshift(image, kernel_size=4, max_dist=200, ratio=0.2, seed=0, threads=threads)
    np.testing.assert_array_equal(got, reference)
    assert reference.max() >= 5


def test_a_flat_image_is_split_by_the_seeded_tie_breaker_alone() -> None:
    """Every density equal but for the noise: the same partition as scikit-image's."""
    image = np.full((30, 40, 3), 128, np.uint8)
    for seed in (0, 1):
        expected = skimage_quickshift(image, kernel_size=2, max_dist=3, ratio=0.5, rng=seed)
        got = quickshift(image, kernel_size=2, max_dist=3, ratio=0.5, seed=seed)
        assert same_partition(got, expected)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (2, 3), (5, 30)])
def test_images_narrower_than_the_window(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = skimage_quickshift(image, kernel_size=4, max_dist=200, ratio=0.2, rng=0)
    got = quickshift(image, kernel_size=4, max_dist=200, ratio=0.2, seed=0)
    assert got.shape == shape
    np.testing.assert_array_equal(got, expected)


def test_a_kernel_below_one_pixel_is_refused() -> None:
    with pytest.raises(ValueError, match="kernel_size"):
        quickshift(np.zeros((4, 4, 3), np.uint8), kernel_size=0.5, max_dist=1, ratio=1, seed=0)
