"""Perturbed batches: hidden superpixels show a background, composed on the input grid."""

from __future__ import annotations

import numpy as np
from skimage.filters import gaussian

from glimpse.params import Background, BlurBackground, ConstantBackground, MeanBackground


def background_image(image: np.ndarray, spec: Background) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float32 0..255: what a hidden superpixel shows."""
    pixels = image.astype(np.float32)
    if isinstance(spec, ConstantBackground):
        return np.broadcast_to(np.asarray(spec.rgb, np.float32), pixels.shape).copy()
    if isinstance(spec, MeanBackground):
        return np.broadcast_to(pixels.mean(axis=(0, 1)), pixels.shape).astype(np.float32)
    if isinstance(spec, BlurBackground):
        blurred = gaussian(pixels, sigma=spec.sigma, channel_axis=-1, preserve_range=True)
        return blurred.astype(np.float32)
    raise TypeError(f"unknown background {spec!r}")


class Composer:
    """Builds `bg + (x - bg) * z[:, segments]` for a batch of coalitions.

    x, bg: (3, h, w) float32 on the input grid; segments: (h, w) int ids < n_segments.
    """

    def __init__(self, x: np.ndarray, bg: np.ndarray, segments: np.ndarray) -> None:
        self.bg = np.ascontiguousarray(bg, np.float32)
        self.diff = np.ascontiguousarray(x - bg, np.float32)
        self.segments = segments

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """z: (n, n_segments) {0,1} -> (n, 3, h, w) float32."""
        mask = z.astype(np.float32, copy=False)[:, self.segments]  # (n, h, w)
        batch = mask[:, None, :, :] * self.diff[None]
        batch += self.bg[None]
        return batch
