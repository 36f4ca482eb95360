"""Superpixels: a label map at the original image size, ids 0..M-1."""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage.segmentation import felzenszwalb, slic

from glimpse.errors import InvalidParams
from glimpse.params import Felzenszwalb, Grid, Quickshift, Segmentation, Slic
from worker.engine.quickshift import quickshift

MAX_SEGMENTS = 4000


def segment(
    image: np.ndarray, spec: Segmentation, *, max_side: int = 640, seed: int = 0
) -> np.ndarray:
    """image: (H, W, 3) uint8 -> (H, W) int32 superpixel ids, consecutive from 0.

    Images whose longer side exceeds `max_side` are segmented downscaled (pixel-valued
    parameters such as `kernel_size` then count in downscaled pixels) and the ids are mapped
    back by nearest neighbour. The grid is always computed at full size.
    """
    height, width = image.shape[:2]
    if isinstance(spec, Grid):
        rows = np.arange(height) // spec.cell_size
        cols = np.arange(width) // spec.cell_size
        labels = rows[:, None] * (cols[-1] + 1) + cols[None, :]
    else:
        small = _downscale(image, max_side)
        labels = _segment_rgb(small, spec, seed)
        if small.shape[:2] != (height, width):
            labels = resize_labels(labels, (height, width))
    _, ids = np.unique(labels, return_inverse=True)
    ids = ids.reshape(height, width).astype(np.int32)
    count = int(ids.max()) + 1
    if count > MAX_SEGMENTS:
        raise InvalidParams(
            f"segmentation gives {count} superpixels; at most {MAX_SEGMENTS} can be explained",
            errors=[
                {"loc": ["params", "segmentation"], "msg": f"{count} > {MAX_SEGMENTS} superpixels"}
            ],
        )
    return ids


def _segment_rgb(image: np.ndarray, spec: Segmentation, seed: int) -> np.ndarray:
    if isinstance(spec, Quickshift):
        return quickshift(
            image,
            kernel_size=spec.kernel_size,
            max_dist=spec.max_dist,
            ratio=spec.ratio,
            seed=seed,
        )
    if isinstance(spec, Slic):
        return np.asarray(
            slic(
                image,
                n_segments=spec.n_segments,
                compactness=spec.compactness,
                start_label=0,
                channel_axis=-1,
            )
        )
    if isinstance(spec, Felzenszwalb):
        return np.asarray(
            felzenszwalb(
                image, scale=spec.scale, sigma=spec.sigma, min_size=spec.min_size, channel_axis=-1
            )
        )
    raise TypeError(f"unknown segmentation {spec!r}")


def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    factor = max_side / max(height, width)
    if factor >= 1:
        return image
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer label map to (height, width)."""
    img = Image.fromarray(labels.astype(np.int32))
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.NEAREST)).astype(np.int32)
