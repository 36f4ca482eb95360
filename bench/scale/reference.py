"""References where 2^m enumeration is impossible (m = 20..200 superpixels), each with its own
standard error, so that an estimator's distance to it can be read against the reference's
own noise.

* Shapley values by antithetic permutation sampling: a random permutation and its reverse
  form a pair; a permutation's m marginal contributions cost m + 1 coalitions (its prefixes,
  the empty and the full one shared by all). φ is the mean over pairs of the pair's mean
  contribution vector; the per-feature SE is the standard deviation of those pair means over
  √pairs, and the relative SE of the vector is ‖SE‖ / ‖φ‖. Unbiased, and a different family
  (marginal contributions) from the regression estimators it judges.
* LIME's estimand: lime's weighted regression (Glimpse's `Lime()` kernel: cosine distance to
  the image, width 0.25; keep probability 0.5) over a large i.i.d. sample, without the ridge
  (alpha = 1 is negligible against the weights of 20,000 rows, and the estimand is the
  limit). Its SE comes from two halves: SE_j = |φ_A,j − φ_B,j| / 2, the relative SE
  ‖φ_A − φ_B‖ / (2‖φ‖) (each half has twice the variance of the whole).

Both read an `Oracle` (oracle.py) and report the distinct coalitions they cost. Not run on its
own: bench/quality_scale.py calls it; tests/bench/test_quality_scale.py checks it against
exact values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Game = Callable[[np.ndarray], np.ndarray]  # z (n, m) bool -> (n,) values


@dataclass(frozen=True)
class Reference:
    kind: str  # "shapley" or "lime"
    values: np.ndarray  # (m,)
    se: np.ndarray  # (m,) standard error of each value
    samples: int  # permutation pairs, or coalitions of the regression
    evaluations: int  # distinct coalitions asked for

    @property
    def rel_se(self) -> float:
        """‖SE‖ / ‖φ‖: the reference's own relative L2 error, to be expected."""
        return float(np.linalg.norm(self.se) / max(np.linalg.norm(self.values), 1e-300))

    def summary(self, digits: int = 6) -> dict:
        return {
            "kind": self.kind,
            "samples": self.samples,
            "evaluations": self.evaluations,
            "rel_se": self.rel_se,
            "mean_se": float(self.se.mean()),
            "max_se": float(self.se.max()),
            "values": [round(float(v), digits) for v in self.values],
            "se": [round(float(v), digits) for v in self.se],
        }


def prefix_coalitions(perms: np.ndarray) -> np.ndarray:
    """perms (p, m) -> (p, m + 1, m) bool: row k of permutation i shows its first k players."""
    p, m = perms.shape
    rank = np.empty_like(perms)
    np.put_along_axis(rank, perms, np.broadcast_to(np.arange(m), (p, m)), axis=1)
    return rank[:, None, :] < np.arange(m + 1)[None, :, None]


def marginal_contributions(game: Game, perms: np.ndarray) -> np.ndarray:
    """perms (p, m) -> (p, m): each player's marginal contribution along each permutation."""
    p, m = perms.shape
    values = game(prefix_coalitions(perms).reshape(-1, m)).reshape(p, m + 1)
    contrib = np.empty((p, m))
    contrib[np.arange(p)[:, None], perms] = np.diff(values, axis=1)
    return contrib


def shapley_permutations(
    game: Game, m: int, pairs: int, seed: int = 0, *, chunk: int = 25
) -> Reference:
    """Antithetic permutation sampling: `pairs` random permutations and their reverses
    (2·pairs·(m + 1) rows asked for, `chunk` pairs at a time to bound memory)."""
    if pairs < 2:
        raise ValueError("at least two pairs are needed for a standard error")
    rng = np.random.default_rng(seed)
    perms = rng.random((pairs, m)).argsort(axis=1)
    distinct: set[bytes] = set()
    pair_means = np.empty((pairs, m))
    for start in range(0, pairs, chunk):
        forward = perms[start : start + chunk]
        both = np.vstack([forward, forward[:, ::-1]])
        rows = prefix_coalitions(both).reshape(-1, m)
        distinct.update(r.tobytes() for r in np.packbits(rows, axis=1))
        contrib = marginal_contributions(game, both)
        n = len(forward)
        pair_means[start : start + n] = (contrib[:n] + contrib[n:]) / 2
    phi = pair_means.mean(axis=0)
    se = pair_means.std(axis=0, ddof=1) / np.sqrt(pairs)
    return Reference("shapley", phi, se, pairs, len(distinct))


def weighted_regression(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Coefficients of the weighted least-squares fit y ~ b + z·φ (intercept unpenalised)."""
    x = z.astype(np.float64)
    xm = w @ x / w.sum()
    ym = w @ y / w.sum()
    xc = x - xm
    gram = (xc * w[:, None]).T @ xc
    return np.linalg.lstsq(gram, (xc * w[:, None]).T @ (y - ym), rcond=None)[0]


def lime_regression(
    game: Game,
    m: int,
    samples: int,
    seed: int = 0,
    *,
    kernel_width: float = 0.25,
    keep_probability: float = 0.5,
) -> Reference:
    """LIME's estimand from `samples` i.i.d. coalitions (each player kept with
    keep_probability), lime's kernel, the SE from two halves."""
    from worker.engine.lime import Lime

    rng = np.random.default_rng(seed)
    z = rng.random((samples, m)) < keep_probability
    y = game(z)
    w = Lime(kernel_width=kernel_width, keep_probability=keep_probability).kernel(z)
    phi = weighted_regression(z, y, w)
    half = samples // 2
    a = weighted_regression(z[:half], y[:half], w[:half])
    b = weighted_regression(z[half:], y[half:], w[half:])
    distinct = len({r.tobytes() for r in np.packbits(z, axis=1)})
    return Reference("lime", phi, np.abs(a - b) / 2, samples, distinct)
