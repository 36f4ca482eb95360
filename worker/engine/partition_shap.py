"""Partition SHAP: Owen values over a binary hierarchy of superpixels, as shap's Partition
explainer computes them with its Image masker.

The hierarchy (`partition_tree`) is shap's: the image rectangle is split in two along its
longer axis (rows when height >= width) at its midpoint, recursively. shap's leaves are
pixels; here they are the chosen superpixels, each sent to the half that holds its centroid
(a half that would be empty is split again), so with `grid` segmentation the tree is shap's
tree at cell resolution.

The recursion (`owen_values`) is shap's `PartitionExplainer.owen` with `fixed_context=None`:
a node evaluated with its parent's context m00 (f00) and m00 ∪ node (f11) costs two
evaluations, f10 = f(m00 ∪ left) and f01 = f(m00 ∪ right), and hands each child half its
weight twice, once in the context without its sibling (f00 → f10) and once with it
(f01 → f11). A priority queue expands the node whose children change the output most
(max over targets of |Δf| · weight). When the budget runs out every node still queued keeps
(f11 − f00) · weight, and internal nodes pass their credit down to their superpixels in
proportion to pixel area (shap's `lower_credit`, whose leaves are equal-sized pixels). The
values then sum to f(x) − f(background) exactly; with a budget that expands the whole tree
they are the Owen values of the hierarchy (the Shapley values for an additive model).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hierarchy:
    """A binary tree over m superpixels: ids < m are superpixels, m + i is internal node i;
    the root is node m (node 0 when m == 1). `order` lists the superpixels so that each
    node's are `order[start[n]:stop[n]]`; `area` is each node's pixel count."""

    children: np.ndarray  # (m - 1, 2) int
    order: np.ndarray  # (m,)
    start: np.ndarray  # (2m - 1,)
    stop: np.ndarray  # (2m - 1,)
    area: np.ndarray  # (2m - 1,) float

    @property
    def n_leaves(self) -> int:
        return len(self.order)

    @property
    def root(self) -> int:
        return self.n_leaves if self.n_leaves > 1 else 0


def partition_tree(segments: np.ndarray) -> Hierarchy:
    """segments: (H, W) ids 0..m-1 -> the axis-aligned split tree over them."""
    height, width = segments.shape
    flat = segments.ravel()
    m = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=m).astype(np.float64)
    rows, cols = np.indices((height, width))
    cr = np.bincount(flat, weights=rows.ravel() + 0.5, minlength=m) / counts
    cc = np.bincount(flat, weights=cols.ravel() + 0.5, minlength=m) / counts

    children: list[tuple[int, int]] = []
    order: list[int] = []
    if m == 1:
        order = [0]
    else:
        children.append((-1, -1))
        stack: list[tuple[np.ndarray, tuple[int, int, int, int], int]] = [
            (np.arange(m), (0, height, 0, width), m)
        ]
        while stack:
            ids, rect, node = stack.pop()
            halves = _split(ids, rect, cr, cc)
            made: list[int] = []
            for part, _ in halves:
                if len(part) == 1:
                    made.append(int(part[0]))
                else:
                    children.append((-1, -1))
                    made.append(m + len(children) - 1)
            children[node - m] = (made[0], made[1])
            for (part, part_rect), child in reversed(list(zip(halves, made, strict=True))):
                if child < m:
                    continue
                stack.append((part, part_rect, child))
        # Superpixels in depth-first order: each node's are contiguous in `order`.
        order = _leaf_order(np.asarray(children, np.intp), m)

    kids = np.asarray(children, np.intp).reshape(-1, 2)
    position = np.empty(m, np.intp)
    position[np.asarray(order, np.intp)] = np.arange(m)
    start = np.zeros(2 * m - 1, np.intp)
    stop = np.zeros(2 * m - 1, np.intp)
    area = np.zeros(2 * m - 1, np.float64)
    start[:m] = position
    stop[:m] = position + 1
    area[:m] = counts
    for i in range(len(kids) - 1, -1, -1):  # children have larger ids than their parent
        left, right = kids[i]
        start[m + i] = min(start[left], start[right])
        stop[m + i] = max(stop[left], stop[right])
        area[m + i] = area[left] + area[right]
    return Hierarchy(kids, np.asarray(order, np.intp), start, stop, area)


def _split(
    ids: np.ndarray, rect: tuple[int, int, int, int], cr: np.ndarray, cc: np.ndarray
) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    r0, r1, c0, c1 = rect
    while True:
        height, width = r1 - r0, c1 - c0
        if height >= width and height > 1:
            mid = r0 + height // 2
            left = cr[ids] < mid
            lrect, rrect = (r0, mid, c0, c1), (mid, r1, c0, c1)
        elif width > 1:
            mid = c0 + width // 2
            left = cc[ids] < mid
            lrect, rrect = (r0, r1, c0, mid), (r0, r1, mid, c1)
        else:  # centroids in one pixel: split by id
            half = len(ids) // 2
            return [(ids[:half], rect), (ids[half:], rect)]
        if left.any() and not left.all():
            return [(ids[left], lrect), (ids[~left], rrect)]
        r0, r1, c0, c1 = lrect if left.all() else rrect


def _leaf_order(children: np.ndarray, m: int) -> list[int]:
    order: list[int] = []
    stack = [m]
    while stack:
        node = stack.pop()
        if node < m:
            order.append(node)
            continue
        left, right = children[node - m]
        stack += [int(right), int(left)]
    return order


def depths(hierarchy: Hierarchy) -> np.ndarray:
    """(2m - 1,) depth of every node; the root is 0."""
    m = hierarchy.n_leaves
    depth = np.zeros(2 * m - 1, np.intp)
    for i, (left, right) in enumerate(hierarchy.children):
        depth[left] = depth[m + i] + 1
        depth[right] = depth[m + i] + 1
    return depth


def round_size(budget: int) -> int:
    """Evaluations per round of the priority queue: shap's default batch of 10 for small
    budgets, up to 128 for large ones; fixed by the budget, so the numbers do not depend on
    the batch size the model is run with."""
    return int(np.clip(budget // 16, 10, 128)) // 2 * 2


def owen_values(
    evaluate: Callable[[np.ndarray], np.ndarray],
    hierarchy: Hierarchy,
    f_empty: np.ndarray,
    f_full: np.ndarray,
    max_evals: int,
) -> tuple[np.ndarray, int]:
    """evaluate: z (n, m) bool -> (n, k) scores. f_empty, f_full: (k,).

    Returns (values (k, m) float64 summing to f_full − f_empty, evaluations spent ≤ max_evals).
    """
    m = hierarchy.n_leaves
    k = len(f_full)
    dvalues = np.zeros((2 * m - 1, k), np.float64)
    if m == 1:
        return (f_full - f_empty).astype(np.float64)[:, None], 0
    order, start, stop = hierarchy.order, hierarchy.start, hierarchy.stop
    per_round = round_size(max_evals)
    counter = 0
    heap: list[tuple[float, int, int, np.ndarray, np.ndarray, np.ndarray, float]] = [
        (0.0, counter, hierarchy.root, np.zeros(m, bool), f_empty, f_full, 1.0)
    ]
    spent = 0
    while heap:
        if spent + 2 > max_evals:  # out of budget: queued nodes keep their difference
            for _, _, node, _, f00, f11, weight in heap:
                dvalues[node] += (f11 - f00) * weight
            break
        items: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, float]] = []
        while heap and 2 * len(items) < per_round and spent + 2 * (len(items) + 1) <= max_evals:
            _, _, node, m00, f00, f11, weight = heapq.heappop(heap)
            if node < m:
                dvalues[node] += (f11 - f00) * weight
                continue
            items.append((node, m00, f00, f11, weight))
        if not items:
            continue
        rows = np.empty((2 * len(items), m), bool)
        for i, (node, m00, _, _, _) in enumerate(items):
            left, right = hierarchy.children[node - m]
            rows[2 * i] = m00
            rows[2 * i, order[start[left] : stop[left]]] = True
            rows[2 * i + 1] = m00
            rows[2 * i + 1, order[start[right] : stop[right]]] = True
        out = np.asarray(evaluate(rows), np.float64)
        spent += len(rows)
        for i, (node, m00, f00, f11, weight) in enumerate(items):
            left, right = (int(c) for c in hierarchy.children[node - m])
            m10, m01 = rows[2 * i], rows[2 * i + 1]
            f10, f01 = out[2 * i], out[2 * i + 1]
            half = weight / 2
            for child, context, lo, hi in (
                (left, m00, f00, f10),
                (right, m00, f00, f01),
                (left, m01, f01, f11),
                (right, m10, f10, f11),
            ):
                counter += 1
                priority = -float(np.max(np.abs(hi - lo))) * half
                heapq.heappush(heap, (priority, counter, child, context, lo, hi, half))
    return lower_credit(dvalues, hierarchy), spent


def lower_credit(dvalues: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """(2m - 1, k) credit per node -> (k, m) per superpixel: each internal node's credit goes
    to its children in proportion to their pixel area."""
    m = hierarchy.n_leaves
    values = dvalues.copy()
    area = hierarchy.area
    for i, (left, right) in enumerate(hierarchy.children):  # parents before children
        node = m + i
        values[left] += values[node] * (area[left] / area[node])
        values[right] += values[node] * (area[right] / area[node])
    return values[:m].T.copy()
