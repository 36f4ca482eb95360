"""Weighted least squares shared by LIME and Kernel SHAP, solved for all targets at once."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np


def weighted_ridge(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge with an unpenalised intercept: sklearn's Ridge(alpha).fit(x, y, sample_weight=w).

    x: (n, m) float; y: (n, k); w: (n,) >= 0.
    Returns coef (k, m), intercept (k,), weighted R² (k,).
    """
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    w = w.astype(np.float64)
    total = w.sum()
    x_mean = w @ x / total
    y_mean = w @ y / total
    xc = x - x_mean
    yc = y - y_mean
    xw = xc * w[:, None]
    n, m = x.shape
    if m <= n:
        gram = xw.T @ xc
        gram[np.diag_indices_from(gram)] += alpha
        coef = (
            np.linalg.solve(gram, xw.T @ yc)
            if alpha > 0
            else np.linalg.lstsq(gram, xw.T @ yc, rcond=None)[0]
        )
    else:  # dual form: (XᵀWX + αI)⁻¹XᵀW = XᵀW(XXᵀW + αI)⁻¹ … solved on the n×n side
        sw = np.sqrt(w)
        xs = xc * sw[:, None]
        ys = yc * sw[:, None]
        kernel = xs @ xs.T
        kernel[np.diag_indices_from(kernel)] += alpha
        coef = xs.T @ np.linalg.lstsq(kernel, ys, rcond=None)[0]
    intercept = y_mean - x_mean @ coef
    return coef.T, intercept, weighted_r2(x, y, w, coef.T, intercept)


def weighted_r2(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, coef: np.ndarray, intercept: np.ndarray
) -> np.ndarray:
    """Weighted R² (k,) of the line intercept + x·coefᵀ (coef (k, m)); 0 where y is constant."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    residual = y - (x @ coef.T + intercept[None, :])
    ss_res = w @ residual**2
    ss_tot = w @ (y - w @ y / w.sum()) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, 0.0))


def constrained_wls(
    z: np.ndarray, y: np.ndarray, w: np.ndarray, f_empty: np.ndarray, f_full: np.ndarray
) -> np.ndarray:
    """Kernel SHAP's regression: min Σ w (y - f_empty - z·φ)² subject to Σφ = f_full - f_empty.

    z: (n, m) {0,1}; y: (n, k); w: (n,); f_empty, f_full: (k,). Returns φ (k, m).
    The constraint is imposed exactly by eliminating the last feature.
    """
    z = z.astype(np.float64)
    delta = (f_full - f_empty).astype(np.float64)
    m = z.shape[1]
    if m == 1:
        return np.asarray(delta[:, None].copy())
    target = y.astype(np.float64) - f_empty[None, :] - z[:, -1:] * delta[None, :]
    design = z[:, :-1] - z[:, -1:]
    sw = np.sqrt(w.astype(np.float64))[:, None]
    head = np.linalg.lstsq(design * sw, target * sw, rcond=None)[0]  # (m-1, k)
    last = delta - head.sum(axis=0)
    return np.vstack([head, last[None, :]]).T


#: Design entries materialised at once (float64: 8 MiB): the order-3 fit and the sandwich
#: walk their rows in chunks of this size, so their memory does not grow with the budget.
CHUNK = 1 << 20


def chunk_rows(columns: int) -> int:
    """Rows of a `columns`-wide float64 design per chunk."""
    return max(1, CHUNK // max(columns, 1))


@dataclass(frozen=True)
class Reduced:
    """Kernel SHAP's regression on a polynomial surrogate, constraints eliminated.

    The surrogate, in the ±1 (Fourier) basis χ_i = 2z_i − 1, is
    g(z) = c + Σ a_i χ_i + Σ_{i<j} a_ij χ_iχ_j + Σ_{(i,j,l) ∈ triples} a_ijl χ_iχ_jχ_l, with
    g(∅) = f(∅) and g(all shown) = f(x) imposed exactly; its Shapley values are
    φ_i = 2a_i + (2/3) Σ_{triples ∋ i} a_ijl (even terms give none). The last feature's a_m and
    c are eliminated: target ≈ x β, β = (a_1..a_{m−1}, a_triples, a_pairs).

    The design x (n, p) is never held whole (p is a few hundred columns): `self[rows]` builds
    the rows asked for from the coalitions z (n, m) bool, and `chunks` walks them in pieces
    of CHUNK entries. target: (n, k); penalty: (p,) ridge on each coefficient; to_phi:
    (p, m − 1), φ_{<m} = βᵀ to_phi and φ_m = Δ − Σ φ_{<m}; delta: (k,) f(x) − f(∅).
    """

    z: np.ndarray
    pairs: np.ndarray
    triples: np.ndarray
    target: np.ndarray
    penalty: np.ndarray
    to_phi: np.ndarray
    delta: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.z), len(self.penalty)

    def __len__(self) -> int:
        return len(self.z)

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        """The design's rows (a slice or an index array) as (r, p) float64."""
        chi = 2.0 * self.z[rows].astype(np.float64) - 1.0
        last = chi[:, -1:]
        t, q = self.triples, self.pairs
        cubic = chi[:, t[:, 0]] * chi[:, t[:, 1]] * chi[:, t[:, 2]]
        return np.hstack([chi[:, :-1] - last, cubic - last, chi[:, q[:, 0]] * chi[:, q[:, 1]] - 1])

    def chunks(self) -> list[slice]:
        step = chunk_rows(self.shape[1])
        return [slice(a, a + step) for a in range(0, len(self), step)]

    def predict(self, beta: np.ndarray) -> np.ndarray:
        """x β (n, k), a chunk at a time."""
        if not len(self):
            return np.zeros((0, beta.shape[1]))
        return np.vstack([self[rows] @ beta for rows in self.chunks()])

    def phi(self, beta: np.ndarray) -> np.ndarray:
        """beta (p, k) -> φ (k, m), efficiency exact."""
        head = beta.T @ self.to_phi  # (k, m-1)
        return np.hstack([head, (self.delta - head.sum(axis=1))[:, None]])


def interaction_design(
    z: np.ndarray,
    y: np.ndarray,
    f_empty: np.ndarray,
    f_full: np.ndarray,
    members: np.ndarray,
    ridge: float,
) -> Reduced:
    """z: (n, m) {0,1}; y: (n, k); members: (r,) sorted feature ids whose pairs and triples
    enter the surrogate (every main effect does); ridge: the penalty on each triple's
    coefficient (main effects and pairs are not penalised). Needs m >= 2."""
    z = np.asarray(z, bool)
    m = z.shape[1]
    last = 2.0 * z[:, -1:].astype(np.float64) - 1.0
    delta = (f_full - f_empty).astype(np.float64)
    pairs = np.array(list(combinations(members.tolist(), 2)), np.intp).reshape(-1, 2)
    triples = np.array(list(combinations(members.tolist(), 3)), np.intp).reshape(-1, 3)
    target = y.astype(np.float64) - 0.5 * (f_empty + f_full)[None, :] - 0.5 * last * delta[None, :]
    p = m - 1 + len(triples) + len(pairs)
    penalty = np.zeros(p)
    penalty[m - 1 : m - 1 + len(triples)] = ridge
    to_phi = np.zeros((p, m - 1))
    to_phi[np.arange(m - 1), np.arange(m - 1)] = 2.0
    for col in range(3):  # a triple's coefficient goes 2/3 to each of its members
        member = triples[:, col]
        inside = member < m - 1
        to_phi[m - 1 + np.flatnonzero(inside), member[inside]] += 2.0 / 3.0
    return Reduced(z, pairs, triples, target, penalty, to_phi, delta)


def penalised_wls(reduced: Reduced, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min Σ w (target − xβ)² + Σ penalty β² -> β (p, k) and A⁻¹ (p, p), A = xᵀWx +
    diag(penalty) (pseudo-inverse: least norm where rows leave pair terms undetermined;
    under paired sampling those never reach φ). Accumulated a chunk of rows at a time."""
    w = w.astype(np.float64)
    p = reduced.shape[1]
    gram = np.zeros((p, p))
    rhs = np.zeros((p, reduced.target.shape[1]))
    for rows in reduced.chunks():
        x = reduced[rows]
        xw = x * w[rows, None]
        gram += xw.T @ x
        rhs += xw.T @ reduced.target[rows]
    gram[np.diag_indices_from(gram)] += reduced.penalty
    bread_inv = np.linalg.pinv(gram, rcond=1e-12, hermitian=True)
    return bread_inv @ rhs, bread_inv
