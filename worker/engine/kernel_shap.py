"""Kernel SHAP: Shapley-kernel coalitions and a regression with the efficiency constraint exact.

Sampling follows shap's KernelExplainer: coalition sizes are taken in pairs (s, M - s) from
the smallest; a size whose complete enumeration fits in the remaining budget (given its share
of the Shapley kernel's mass) is enumerated with its exact kernel weight; the rest of the
budget is drawn at random over the remaining sizes, each subset with its complement (paired
sampling), sharing the remaining kernel mass equally. With a budget of 2^M evaluations every
coalition is enumerated and the values are the exact Shapley values.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

from worker.engine.coalitions import Coalitions, Fit
from worker.engine.regression import constrained_wls


@dataclass(frozen=True)
class KernelShap:
    def sample(self, n_segments: int, budget: int, rng: np.random.Generator) -> Coalitions:
        """budget counts f(x) and f(all hidden): budget - 2 coalitions are drawn."""
        m = n_segments
        remaining = max(budget - 2, 0)
        if m < 2 or remaining == 0:
            return Coalitions(np.zeros((0, m), bool), np.zeros(0), needs_empty=True)
        sizes = np.arange(1, m)
        kernel = (m - 1) / (sizes * (m - sizes))  # total kernel mass of each size s = 1..M-1
        # Pair s with M - s: mass of the pair, enumerated together.
        half = (m - 1 + 1) // 2  # sizes 1..half, where half pairs with m-half
        pair_mass = np.array(
            [kernel[s - 1] + (kernel[m - s - 1] if s != m - s else 0.0) for s in range(1, half + 1)]
        )
        pair_mass /= pair_mass.sum()

        blocks: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        left_mass = 1.0
        first_random = half + 1
        for s in range(1, half + 1):
            count = comb(m, s) * (1 if s == m - s else 2)
            share = pair_mass[s - 1] / left_mass
            if remaining * share < count - 1e-8:
                first_random = s
                break
            rows = _all_subsets(m, s)
            if s != m - s:
                rows = np.vstack([rows, ~rows])
            blocks.append(rows)
            weights.append(np.full(len(rows), pair_mass[s - 1] / count))
            remaining -= count
            left_mass -= pair_mass[s - 1]
        if first_random <= half and remaining > 0 and left_mass > 1e-12:
            rows = _random_paired(
                m, np.arange(first_random, half + 1), pair_mass[first_random - 1 :], remaining, rng
            )
            blocks.append(rows)
            weights.append(np.full(len(rows), left_mass / len(rows)))
        z = np.vstack(blocks) if blocks else np.zeros((0, m), bool)
        w = np.concatenate(weights) if weights else np.zeros(0)
        return Coalitions(z=z, weights=w, needs_empty=True)

    def fit(
        self, coalitions: Coalitions, y: np.ndarray, f_full: np.ndarray, f_empty: np.ndarray | None
    ) -> Fit:
        assert f_empty is not None
        m = coalitions.z.shape[1]
        if len(coalitions.z) == 0:  # no budget for coalitions: spread the difference evenly
            phi = np.repeat(((f_full - f_empty) / max(m, 1))[:, None], m, axis=1)
        else:
            phi = constrained_wls(coalitions.z, y, coalitions.weights, f_empty, f_full)
        return Fit(weights=phi, base_value=f_empty.astype(np.float64), score=None)


def _all_subsets(m: int, s: int) -> np.ndarray:
    """Every subset of size s of m features as (C(m, s), m) bool rows."""
    idx = np.fromiter(
        (i for combo in combinations(range(m), s) for i in combo),
        dtype=np.intp,
        count=comb(m, s) * s,
    ).reshape(-1, s)
    rows = np.zeros((len(idx), m), bool)
    np.put_along_axis(rows, idx, True, axis=1)
    return rows


def _random_paired(
    m: int, sizes: np.ndarray, mass: np.ndarray, budget: int, rng: np.random.Generator
) -> np.ndarray:
    """budget rows: random subsets of sizes drawn ∝ mass (s or M-s with equal chance), each
    followed by its complement; an odd budget ends with one unpaired subset."""
    n_pairs = (budget + 1) // 2
    chosen = rng.choice(sizes, size=n_pairs, p=mass / mass.sum())
    flip = rng.random(n_pairs) < 0.5
    chosen = np.where(flip, m - chosen, chosen)
    ranks = rng.random((n_pairs, m)).argsort(axis=1).argsort(axis=1)
    subsets = ranks < chosen[:, None]
    rows = np.empty((2 * n_pairs, m), bool)
    rows[0::2] = subsets
    rows[1::2] = ~subsets
    return rows[:budget]
