"""Faithfulness of any superpixel attribution: deletion and insertion (RISE, Petsiuk et al.
2018).

Deletion starts from the image and hides superpixels in decreasing order of attribution;
insertion starts from the background and shows them in that order. The class score is
taken after each step and the area under the curve is the trapezoid over x = fraction of
superpixels moved (0..1), so it is in the units of the output space (for probabilities, the
RISE numbers: a faithful map has low deletion and high insertion AUC). Large M is grouped into
at most `steps` steps of (nearly) equal count; the curves' ends are f(image) and
f(background), known already, so a class costs at most 2·(steps − 1) evaluations (plus
f(background) once where the method did not evaluate it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Points on each curve besides the start; at most 2·(STEPS − 1) evaluations per class.
STEPS = 20


@dataclass(frozen=True)
class Quality:
    deletion_auc: np.ndarray  # (k,)
    insertion_auc: np.ndarray  # (k,)
    steps: int
    evaluations: int


def step_counts(m: int, steps: int = STEPS) -> np.ndarray:
    """Superpixels moved after each step: 0 = c_0 < c_1 < … < c_S = m, S = min(steps, m)."""
    s = max(min(steps, m), 1)
    return np.round(np.linspace(0, m, s + 1)).astype(np.intp)


def curve_rows(weights: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """weights: (m,) -> deletion and insertion coalitions at the interior counts, each
    (S − 1, m) bool (True = shown); ties keep superpixel-id order."""
    m = len(weights)
    rank = np.empty(m, np.intp)
    rank[np.argsort(-weights, kind="stable")] = np.arange(m)
    interior = counts[1:-1, None]
    return rank[None, :] >= interior, rank[None, :] < interior


def auc(curve: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((curve[1:] + curve[:-1]) * np.diff(x)) / 2)


def faithfulness(
    weights: np.ndarray,
    score: Callable[[np.ndarray], np.ndarray],
    f_full: np.ndarray,
    f_empty: np.ndarray | None,
    *,
    steps: int = STEPS,
) -> Quality:
    """weights: (k, m) one attribution per target; score: z (n, m) bool -> (n, k) scores of
    the k targets in the output space, any number of rows (the engine's Evaluator batches
    them); f_full, f_empty: (k,) scores of the image and the background (f_empty None:
    evaluated here). Distinct coalitions are evaluated once."""
    k, m = weights.shape
    counts = step_counts(m, steps)
    x = counts / max(m, 1)
    per_target = [curve_rows(weights[t], counts) for t in range(k)]
    rows = [r for pair in per_target for r in pair]
    if f_empty is None:
        rows.append(np.zeros((1, m), bool))
    stacked = np.vstack(rows) if rows else np.zeros((0, m), bool)
    distinct, inverse = np.unique(stacked, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    scores = np.asarray(score(distinct), np.float64)[inverse]
    if f_empty is None:
        f_empty = scores[-1]
    interior = len(counts) - 2
    deletion = np.empty(k)
    insertion = np.empty(k)
    for t in range(k):
        at = 2 * t * interior
        hidden = scores[at : at + interior, t]
        shown = scores[at + interior : at + 2 * interior, t]
        deletion[t] = auc(np.r_[f_full[t], hidden, f_empty[t]], x)
        insertion[t] = auc(np.r_[f_empty[t], shown, f_full[t]], x)
    return Quality(deletion, insertion, steps=len(counts) - 1, evaluations=len(distinct))
