"""Coarse-to-fine maps of a partition_shap hierarchy, from its superpixel values and tree.

A tree over m superpixels is `children`: (m - 1, 2) ints, row i the two children of internal
node m + i (ids < m are superpixels); the root is node m. A node's value is the sum of its
superpixels' values (their Owen values add up along the tree).
"""

from __future__ import annotations

import numpy as np


def node_values(weights: np.ndarray, children: np.ndarray) -> np.ndarray:
    """weights (k, m), children (m - 1, 2) -> (k, 2m - 1): every node's value."""
    weights = np.asarray(weights, np.float64)
    k, m = weights.shape
    values = np.zeros((k, 2 * m - 1), np.float64)
    values[:, :m] = weights
    for i in range(len(children) - 1, -1, -1):  # children have larger ids than their parent
        left, right = children[i]
        values[:, m + i] = values[:, left] + values[:, right]
    return values


def level_maps(weights: np.ndarray, children: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(k, L, H, W) float32: map ℓ paints on each pixel the value of its superpixel's
    ancestor at depth ℓ (or of the superpixel itself where the tree is shallower). Level 0
    is the whole image (f(x) − f(background)); the last level is the attribution map."""
    weights = np.asarray(weights, np.float64)
    children = np.asarray(children, np.intp).reshape(-1, 2)
    m = weights.shape[1]
    values = node_values(weights, children)
    parent = np.full(2 * m - 1, -1, np.intp)
    depth = np.zeros(2 * m - 1, np.intp)
    for i, (left, right) in enumerate(children):
        parent[[left, right]] = m + i
        depth[[left, right]] = depth[m + i] + 1
    levels = int(depth[:m].max()) + 1 if m > 1 else 1
    out = np.empty((weights.shape[0], levels, *segments.shape), np.float32)
    ancestor = np.arange(m)
    for level in range(levels - 1, -1, -1):
        ancestor = np.where(depth[ancestor] > level, parent[ancestor], ancestor)
        out[:, level] = values[:, ancestor].astype(np.float32)[:, segments]
    return out
