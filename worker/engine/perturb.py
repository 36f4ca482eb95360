"""Perturbed batches: hidden superpixels show a background, composed on the input grid."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from skimage.filters import gaussian

from glimpse.params import (
    Background,
    BlurBackground,
    ConstantBackground,
    InpaintBackground,
    MeanBackground,
    NoiseBackground,
)


def background_image(image: np.ndarray, spec: Background, *, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float32 0..255: what a hidden superpixel shows (noise:
    drawn from `seed`, the same for every call with it).

    Inpainting has no single background (it depends on what is hidden): see Inpainter.
    """
    pixels = image.astype(np.float32)
    if isinstance(spec, NoiseBackground):
        rng = np.random.default_rng(seed)
        noise = rng.uniform(spec.low, spec.high, size=pixels.shape)
        return np.asarray(noise, np.float32)
    if isinstance(spec, ConstantBackground):
        return np.broadcast_to(np.asarray(spec.rgb, np.float32), pixels.shape).copy()
    if isinstance(spec, MeanBackground):
        return np.broadcast_to(pixels.mean(axis=(0, 1)), pixels.shape).astype(np.float32)
    if isinstance(spec, BlurBackground) and spec.kernel_size is not None:
        # shap's Image masker "blur(k, k)": cv2.blur, a k×k box filter (reflect-101 borders).
        k = spec.kernel_size
        return np.asarray(cv2.blur(pixels, (k, k)), np.float32)
    if isinstance(spec, BlurBackground):
        blurred = gaussian(pixels, sigma=spec.sigma, channel_axis=-1, preserve_range=True)
        return np.asarray(blurred, np.float32)
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


class Inpainter:
    """Per-coalition backgrounds: the hidden superpixels inpainted from the shown ones with
    OpenCV, at the original size, as shap's `inpaint_telea` / `inpaint_ns` maskers do (all
    hidden: the image's mean colour, as shap). Each composed image is then preprocessed.

    image: (H, W, 3) uint8; segments: (H, W) ids < n_segments; preprocess: (H, W, 3) -> (3, h, w).
    """

    def __init__(
        self,
        image: np.ndarray,
        segments: np.ndarray,
        spec: InpaintBackground,
        preprocess: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.image = np.ascontiguousarray(image, np.uint8)
        self.segments = segments
        self.radius = float(spec.radius)
        self.flags = cv2.INPAINT_TELEA if spec.kind == "inpaint_telea" else cv2.INPAINT_NS
        self.preprocess = preprocess
        self.mean = image.reshape(-1, 3).mean(axis=0).astype(np.float32)

    def compose(self, shown: np.ndarray) -> np.ndarray:
        """shown: (n_segments,) bool -> (H, W, 3) float32 0..255, hidden pixels inpainted."""
        hidden = ~shown[self.segments]
        if not hidden.any():
            return self.image.astype(np.float32)
        if hidden.all():
            return np.broadcast_to(self.mean, self.image.shape).astype(np.float32)
        mask = hidden.astype(np.uint8)
        return cv2.inpaint(self.image, mask, self.radius, self.flags).astype(np.float32)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """z: (n, n_segments) {0,1} -> (n, 3, h, w) float32."""
        z = np.asarray(z).astype(bool, copy=False)
        return np.stack([self.preprocess(self.compose(row)) for row in z])
