"""What every perturbation method shares: coalitions to evaluate and the fit they produce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Coalitions:
    """z: (n, m) bool, True = superpixel shown; weights: (n,) regression weights.

    Rows that are all True are the unperturbed image and are not re-evaluated; `needs_empty`
    asks the engine for f(all hidden) as well (counted in the budget).
    """

    z: np.ndarray
    weights: np.ndarray
    needs_empty: bool = False


@dataclass(frozen=True)
class Fit:
    weights: np.ndarray  # (k, m)
    base_value: np.ndarray  # (k,)
    score: np.ndarray | None  # (k,) or None


class Estimator(Protocol):
    def sample(self, n_segments: int, budget: int, rng: np.random.Generator) -> Coalitions: ...

    def fit(
        self, coalitions: Coalitions, y: np.ndarray, f_full: np.ndarray, f_empty: np.ndarray | None
    ) -> Fit: ...
