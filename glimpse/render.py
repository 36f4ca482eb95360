"""Overlays of superpixel weights on the photo (CONTRACT §1: heatmap, boundaries, highlight).

Pure NumPy: the API renders on demand from the stored segments and weights, the CLI and the
worker from the engine's arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from skimage.segmentation import find_boundaries

Style = Literal["heatmap", "boundaries", "highlight"]
STYLES: tuple[str, ...] = ("heatmap", "boundaries", "highlight")

# A diverging blue-white-red ramp (ColorBrewer RdBu, reversed: negative blue, positive red).
_RAMP = np.array(
    [
        [5, 48, 97],
        [33, 102, 172],
        [67, 147, 195],
        [146, 197, 222],
        [209, 229, 240],
        [247, 247, 247],
        [253, 219, 199],
        [244, 165, 130],
        [214, 96, 77],
        [178, 24, 43],
        [103, 0, 31],
    ],
    dtype=np.float32,
)


def attribution_map(weights: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """weights: (k, m); segments: (H, W) ids < m -> (k, H, W) float32."""
    return np.asarray(weights, np.float32)[:, segments]


def diverging_colors(values: np.ndarray) -> np.ndarray:
    """values in [-1, 1] (any shape) -> RGB float32 0..255 of shape values.shape + (3,)."""
    pos = (np.clip(values, -1, 1) + 1) / 2 * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, len(_RAMP) - 1)
    frac = (pos - lo)[..., None]
    return _RAMP[lo] * (1 - frac) + _RAMP[hi] * frac


def render_overlay(
    image: np.ndarray,
    segments: np.ndarray,
    weights: np.ndarray,
    style: Style = "heatmap",
    *,
    num_features: int = 5,
    negative: bool = False,
    percentile: float = 95.0,
    opacity: float = 0.55,
) -> np.ndarray:
    """image: (H, W, 3) uint8; segments: (H, W) ids; weights: (m,) -> (H, W, 3) uint8."""
    weights = np.asarray(weights, np.float64)
    photo = image.astype(np.float32)
    if style == "heatmap":
        scale = float(np.abs(weights).max()) or 1.0
        colors = diverging_colors((weights / scale).astype(np.float32))[segments]
        gray = photo.mean(axis=2, keepdims=True) * 0.6 + photo * 0.4
        out = gray * (1 - opacity) + colors * opacity
    elif style == "boundaries":
        out = photo.copy()
        order = np.argsort(-weights, kind="stable")
        positive = order[:num_features][weights[order[:num_features]] > 0]
        _outline(out, np.isin(segments, positive), (255, 255, 0))
        if negative:
            worst = np.argsort(weights, kind="stable")[:num_features]
            worst = worst[weights[worst] < 0]
            _outline(out, np.isin(segments, worst), (255, 0, 0))
    elif style == "highlight":
        threshold = np.percentile(weights, percentile) if len(weights) else 0.0
        chosen = (weights >= threshold) & (weights > 0)
        mask = chosen[segments]
        out = photo * 0.45
        tint = np.array([40, 220, 90], np.float32)
        out[mask] = photo[mask] * 0.55 + tint * 0.45
        _outline(out, mask, (40, 220, 90))
    else:
        raise ValueError(f"unknown overlay style {style!r}; use one of {', '.join(STYLES)}")
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _outline(canvas: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int]) -> None:
    """Paint the boundary of `mask` (thick, as skimage's mark_boundaries mode='thick')."""
    if not mask.any():
        return
    edges = find_boundaries(mask, mode="thick")
    canvas[edges] = np.asarray(rgb, np.float32)
