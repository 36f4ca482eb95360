"""Occlusion as Captum's `Occlusion` does it: a window slid over the image with a stride,
filled with the background; each pixel's attribution is the mean, over the windows that
cover it, of f(x) − f(x with the window occluded).

Windows and stride count in pixels of the original image. Along an axis of length D the
windows start at 0, s, 2s, … and there are ceil((D − w) / s) + 1 of them (Captum's count);
the last ones are clipped at the border, so every pixel is covered (a window larger than
the image is clipped to it: one window along that axis).

Batched as coalitions: the window edges cut the image into rectangular cells (the
segments; stride × stride cells when the window is a multiple of the stride, finer ones
otherwise, so any window and stride are exact), each window is one row z that hides the
cells it covers, and the rows are evaluated like any other coalitions (fused on the device
for a fixed background).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np


@dataclass(frozen=True)
class Windows:
    segments: np.ndarray  # (H, W) int32 cell ids 0..m-1
    covered: np.ndarray  # (n_windows, m) bool: cells each window hides

    @property
    def count(self) -> int:
        return int(len(self.covered))


def _axis(length: int, window: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window starts/stops along one axis and the elementary intervals' boundaries."""
    n = max(1, ceil((length - window) / stride) + 1) if length > window else 1
    starts = np.arange(n) * stride
    stops = np.minimum(starts + window, length)
    bounds = np.unique(np.concatenate([[0, length], starts, stops]))
    return starts, stops, bounds


def sliding_windows(height: int, width: int, window: int, stride: int) -> Windows:
    rs, re, rb = _axis(height, window, stride)
    cs, ce, cb = _axis(width, window, stride)
    # Interval i along an axis is [b[i], b[i+1]); a window covers it iff start <= b[i] < stop.
    row_cell = np.searchsorted(rb, np.arange(height), side="right") - 1
    col_cell = np.searchsorted(cb, np.arange(width), side="right") - 1
    n_cols = len(cb) - 1
    segments = (row_cell[:, None] * n_cols + col_cell[None, :]).astype(np.int32)
    row_in = (rs[:, None] <= rb[None, :-1]) & (rb[None, :-1] < re[:, None])  # (nr, n_row_cells)
    col_in = (cs[:, None] <= cb[None, :-1]) & (cb[None, :-1] < ce[:, None])  # (nc, n_col_cells)
    covered = (row_in[:, None, :, None] & col_in[None, :, None, :]).reshape(len(rs) * len(cs), -1)
    return Windows(segments=segments, covered=covered)


def occlusion_weights(windows: Windows, f_full: np.ndarray, f_occluded: np.ndarray) -> np.ndarray:
    """f_full (k,), f_occluded (n_windows, k) -> (k, m): per cell, the mean of
    f(x) − f(occluded) over the windows covering it."""
    diff = f_full[None, :] - f_occluded  # (n, k)
    cover = windows.covered.astype(np.float64)
    counts = cover.sum(axis=0)
    total = cover.T @ diff  # (m, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts[:, None] > 0, total / np.maximum(counts, 1)[:, None], 0.0)
    return mean.T
