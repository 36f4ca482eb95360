"""XRAI (Kapishnikov et al. 2019, "XRAI: Better Attributions Through Regions"), as in
Google PAIR's `saliency` library, on Integrated Gradients (integrated_gradients.py).

1. IG on the input grid, summed over channels: a (h, w) attribution a.
2. Over-segment the input at several scales: Felzenszwalb (σ 0.8, minimum 150 pixels) of the
   image scaled to [−1, 1], at each of params.xrai.scales; every segment dilated by
   `dilation` pixels into a candidate mask (masks of different scales overlap).
3. Greedily, until the image is covered: among the masks that still add at least 50 new
   pixels, take the one whose new pixels have the highest mean attribution (the gain); its
   new pixels become a region, valued at that gain. Pixels no mask covered form a last
   region, valued at their mean attribution.

The map paints each pixel with its region's gain, so thresholding it at the top q % keeps
the most attributed regions whole. Each step scores every remaining mask at once: the masks
are rows of a sparse matrix, so a step is two sparse matrix-vector products.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from skimage.morphology import disk
from skimage.segmentation import felzenszwalb

from worker.engine.integrated_gradients import integrate, superpixel_means
from worker.engine.prefix import Attribution, Prefix, Region

SIGMA = 0.8
MIN_SEGMENT = 150
MIN_PIXEL_DIFF = 50


def candidate_masks(pixels: np.ndarray, scales: list[float], dilation: int) -> sparse.csr_matrix:
    """pixels (h, w, 3) 0..255 -> (M, h·w) CSR of ones: every scale's segments, dilated."""
    image = pixels.astype(np.float64) / 127.5 - 1.0
    h, w = image.shape[:2]
    offsets = np.argwhere(disk(dilation)) - dilation if dilation else np.zeros((1, 2), int)
    pixel = np.arange(h * w)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    count = 0
    for scale in scales:
        labels = felzenszwalb(image, scale=scale, sigma=SIGMA, min_size=MIN_SEGMENT)
        padded = np.pad(labels + count, dilation, constant_values=-1)
        for dy, dx in offsets:  # pixel p joins every segment within `dilation` of it
            near = padded[
                dilation + dy : dilation + dy + h, dilation + dx : dilation + dx + w
            ].reshape(-1)
            inside = near >= 0
            rows.append(near[inside])
            cols.append(pixel[inside])
        count += int(labels.max()) + 1
    r, c = np.concatenate(rows), np.concatenate(cols)
    masks = sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(count, h * w))
    masks.data[:] = 1.0  # duplicates were summed
    return masks


def regions(attribution: np.ndarray, masks: sparse.csr_matrix) -> tuple[np.ndarray, list[Region]]:
    """attribution (h, w), masks (M, h·w) -> (the XRAI map (h, w), regions, highest gain
    first)."""
    h, w = attribution.shape
    a = attribution.reshape(-1).astype(np.float64)
    covered = np.zeros(h * w, bool)
    alive = np.ones(masks.shape[0], bool)
    out = np.full(h * w, np.nan)
    found: list[tuple[float, np.ndarray]] = []
    while alive.any() and not covered.all():
        new = (~covered).astype(np.float64)
        added = masks @ new
        alive &= added >= MIN_PIXEL_DIFF
        if not alive.any():
            break
        gain = np.where(alive, (masks @ (a * new)) / np.maximum(added, 1), -np.inf)
        best = int(np.argmax(gain))
        diff = np.zeros(h * w, bool)
        diff[masks.indices[masks.indptr[best] : masks.indptr[best + 1]]] = True
        diff &= ~covered
        out[diff] = gain[best]
        found.append((float(gain[best]), diff))
        covered |= diff
        alive[best] = False
    if not covered.all():
        rest = ~covered
        out[rest] = a[rest].mean()
        found.append((float(a[rest].mean()), rest))
    found.sort(key=lambda g: -g[0])
    listed = [
        Region(area=float(d.mean()), density=gain, attribution=float(a[d].sum()))
        for gain, d in found
    ]
    return out.reshape(h, w), listed


def step(prefix: Prefix, segments: np.ndarray) -> Attribution:
    """xrai: IG, then regions; a superpixel's weight is the mean XRAI value of its pixels."""
    run = integrate(prefix, segments)
    xrai = prefix.params.xrai
    masks = candidate_masks(prefix.grid.pixels(prefix.image), xrai.scales, xrai.dilation)
    maps, found = zip(*(regions(a, masks) for a in run.per_pixel), strict=True)
    weights = superpixel_means(np.stack(maps), run.labels, run.m)
    return run.attribution(
        prefix, segments, weights, np.stack(maps), regions=tuple(tuple(r) for r in found)
    )
