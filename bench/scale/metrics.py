"""Metrics of bench/quality_scale.py: an estimate against a reference, estimates against
each other, and the faithfulness of a weight ranking on the game itself.

* rel_l2: ‖est − ref‖ / ‖ref‖; `rel_l2_beyond_reference` removes the part the reference's
  own noise explains (√max(rel_l2² − rel_se², 0), the two errors being independent), and
  `se_ratio` = rel_se / rel_l2 says how much of a measured error may be the reference's.
* top_k_recall: |top-k(est) ∩ top-k(ref)| / k, by value (the positive direction: the
  superpixels that raise the class most).
* spearman: rank correlation (ties averaged), NaN where either vector is constant;
  mean_pairwise_spearman over a list (seed-to-seed, noise-to-noise stability).
* deletion / insertion AUC (RISE): superpixels hidden (deletion, from the image) or shown
  (insertion, from the background) one at a time in decreasing weight, the game's value
  after each step, trapezoid over the fraction moved: m + 1 points each, m − 1 of them new
  coalitions (worker.engine.quality's curves at one superpixel per step).

Not run on its own; see bench/quality_scale.py.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import numpy as np
from scipy.stats import rankdata

Game = Callable[[np.ndarray], np.ndarray]


def rel_l2(est: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(est - ref) / max(float(np.linalg.norm(ref)), 1e-300))


def rel_l2_beyond_reference(error: float, rel_se: float) -> float:
    return float(np.sqrt(max(error**2 - rel_se**2, 0.0)))


def se_ratio(rel_se: float, error: float) -> float:
    return float(rel_se / error) if error > 0 else float("inf")


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values (ties by index)."""
    return np.argsort(-np.asarray(values), kind="stable")[: min(k, len(values))]


def top_k_recall(est: np.ndarray, ref: np.ndarray, k: int) -> float:
    k = min(k, len(ref))
    return len(set(top_k(est, k).tolist()) & set(top_k(ref, k).tolist())) / k


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra = rankdata(a) - (len(a) + 1) / 2
    rb = rankdata(b) - (len(b) + 1) / 2
    return float(ra @ rb / np.sqrt((ra @ ra) * (rb @ rb)))


def mean_pairwise_spearman(vectors: list[np.ndarray]) -> float:
    pairs = [spearman(a, b) for a, b in combinations(vectors, 2)]
    return float(np.mean(pairs)) if pairs else float("nan")


def curves(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m − 1, m) deletion rows (shown = not yet hidden) and insertion rows (shown so far) at
    1..m − 1 superpixels moved, in decreasing weight (ties by id)."""
    from worker.engine.quality import curve_rows

    m = len(weights)
    return curve_rows(np.asarray(weights, np.float64), np.arange(m + 1))


def deletion_insertion(game: Game, weights: np.ndarray) -> tuple[float, float]:
    """(deletion AUC, insertion AUC) of the weight ranking on the game."""
    from worker.engine.quality import auc

    m = len(weights)
    deletion, insertion = curves(weights)
    ends = np.vstack([np.ones((1, m), bool), np.zeros((1, m), bool)])
    values = game(np.vstack([ends, deletion, insertion]))
    full, empty = values[0], values[1]
    hidden, shown = values[2 : m + 1], values[m + 1 :]
    x = np.arange(m + 1) / m
    return auc(np.r_[full, hidden, empty], x), auc(np.r_[empty, shown, full], x)


def nanmean(values: list[float]) -> float:
    arr = np.asarray(values, np.float64)
    finite = arr[np.isfinite(arr)]
    return float(finite.mean()) if len(finite) else float("nan")
