"""What every perturbation method shares: coalitions to evaluate and the fit they produce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Coalitions:
    """z: (n, m) bool, True = superpixel shown; weights: (n,) regression weights.

    Rows that are all True are the unperturbed image and are not re-evaluated; `needs_empty`
    asks the engine for f(all hidden) as well (counted in the budget). `groups`: (n,) int,
    the sampling unit of each row for standard errors: rows drawn together (a subset and its
    complement) share an id, -1 marks rows that are not random (enumerated, the image
    itself); None means every row was drawn on its own. `strata` (n,): rows sampled as a
    stratum (without replacement, a fixed number) share an id, with `fraction` (n,) the share
    of the stratum's population drawn (finite-population correction); None: one stratum.
    """

    z: np.ndarray
    weights: np.ndarray
    needs_empty: bool = False
    groups: np.ndarray | None = None
    strata: np.ndarray | None = None
    fraction: np.ndarray | None = None


@dataclass(frozen=True)
class Fit:
    weights: np.ndarray  # (k, m)
    base_value: np.ndarray  # (k,)
    score: np.ndarray | None  # (k,) or None
    se: np.ndarray | None = None  # (k, m) standard errors of `weights`
    separated: np.ndarray | None = None  # (k,) bool: top-k set apart (uncertainty.py)
    resolution: np.ndarray | None = None  # (k,) the top k's settled share of Σ|w| (uncertainty.py)


class Estimator(Protocol):
    def sample(self, n_segments: int, budget: int, rng: np.random.Generator) -> Coalitions: ...

    def grow(
        self, previous: Coalitions | None, n_segments: int, budget: int, rng: np.random.Generator
    ) -> Coalitions:
        """The design at a larger cumulative budget that keeps what `previous` drew: rows may
        repeat earlier ones (the engine evaluates each distinct coalition once)."""
        ...

    def fit(
        self, coalitions: Coalitions, y: np.ndarray, f_full: np.ndarray, f_empty: np.ndarray | None
    ) -> Fit: ...
