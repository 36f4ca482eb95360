"""Smaller copies of what an overlay or the figure is drawn from (`max_side`): drawing at the
reduced size, rather than shrinking the drawing, is what makes a 12-megapixel overlay quick.

The photo and per-pixel maps are area-averaged (Pillow's box filter: each output pixel the
mean of the input pixels it covers, partial ones weighted by their overlap); superpixel ids,
which cannot be averaged, take the id under each output pixel's centre.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def fitted_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) scaled so that the longer side is at most max_side (never enlarged)."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    factor = max_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def shrink_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """image (H, W, 3) uint8 -> size (h, w) by area averaging."""
    if image.shape[:2] == size:
        return image
    resized = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BOX)
    return np.asarray(resized)


def shrink_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """values (H, W) -> float32 (h, w): each output pixel the mean of the area it covers."""
    v = np.ascontiguousarray(values, np.float32)
    if v.shape == size:
        return v
    resized = Image.fromarray(v, mode="F").resize((size[1], size[0]), Image.Resampling.BOX)
    return np.asarray(resized, np.float32)


def shrink_maps(maps: np.ndarray, max_side: int | None) -> np.ndarray:
    """maps (..., H, W) -> float32 (..., h, w), the longer side at most max_side."""
    maps = np.asarray(maps, np.float32)
    size = fitted_size(maps.shape[-2], maps.shape[-1], max_side)
    if size == maps.shape[-2:]:
        return maps
    flat = maps.reshape(-1, *maps.shape[-2:])
    if not len(flat):
        return np.zeros((*maps.shape[:-2], *size), np.float32)
    return np.stack([shrink_map(m, size) for m in flat]).reshape(*maps.shape[:-2], *size)


def shrink_segments(segments: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """segments (H, W) ids -> (h, w): the id under each output pixel's centre."""
    height, width = segments.shape
    if (height, width) == size:
        return segments
    rows = ((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.intp)
    cols = ((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.intp)
    return segments[np.minimum(rows, height - 1)[:, None], np.minimum(cols, width - 1)[None, :]]
