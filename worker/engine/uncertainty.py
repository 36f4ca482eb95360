"""Standard errors of fitted superpixel weights, and whether the top-k is set apart.

LIME and Kernel SHAP are weighted least squares over randomly drawn coalitions with a
surrogate the model does not obey (it is not additive), so the residuals are misfit, not
homoscedastic noise: the classical σ²(XᵀWX + αI)⁻¹XᵀW²X(XᵀWX + αI)⁻¹ assumes a common σ² and
is wrong where the misfit depends on the coalition. What varies from seed to seed is the
draw of coalitions, and the sandwich (heteroscedasticity-robust) estimator, clustered on the
sampling unit (a subset and its complement are one unit under paired sampling), is
consistent for that variance:

    Cov(β̂) ≈ A⁻¹ Σ_h (1 − f_h) G_h/(G_h − 1) Σ_{g∈h} (u_g − ū_h)(u_g − ū_h)ᵀ A⁻¹,
    u_g = Σ_{i∈g} w_i r_i x_i,   A = XᵀWX (+ αI),

over the G_h sampling units g of each stratum h (Kernel SHAP draws a fixed number of
pairs per coalition size, without replacement: f_h is the share of that size's pairs drawn;
LIME has one stratum with f = 0), centred within strata (the fixed rows and the ridge
penalty make Σ u_g ≠ 0 at the solution).

Rows that are not random (coalitions enumerated exactly, the unperturbed image) add no
variance, so a fully enumerated Kernel SHAP has standard errors 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: How many of the largest weights must be set apart from the rest (min(TOP_K, m - 1)).
TOP_K = 5
#: Two-sided 95 %: the k-th weight exceeds the (k+1)-th by Z standard errors of the gap.
Z = 1.96


def top_k(m: int) -> int:
    return min(TOP_K, m - 1)


def top_sets(weights: np.ndarray) -> list[frozenset[int]]:
    """weights: (k, m) -> the indices of each row's top_k(m) largest weights."""
    k = top_k(weights.shape[1])
    return [frozenset(np.argsort(-row, kind="stable")[:k].tolist()) for row in weights]


def sandwich(
    x: np.ndarray,
    w: np.ndarray,
    residual: np.ndarray,
    bread_inv: np.ndarray,
    groups: np.ndarray | None,
    weights: np.ndarray,
    expand: Callable[[np.ndarray], np.ndarray] | None = None,
    strata: np.ndarray | None = None,
    fraction: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Clustered (and stratified) sandwich standard errors and top-k separation.

    x: (n, p) the design as fitted; w: (n,) regression weights; residual: (n, k);
    bread_inv: (p, p) = A⁻¹; groups: (n,) sampling unit per row, -1 = not random, None =
    each row its own; weights: (k, m) the fitted weights; expand maps (G, p) influences to
    (G, m) where the fit eliminated a feature; strata, fraction: (n,) stratum of each row
    and the share of its population drawn without replacement (None: one stratum, drawn
    with replacement). Returns se (k, m) and separated (k,) bool (None when m < 2):
    w_(k) − w_(k+1) > Z · sd(w_(k) − w_(k+1)), covariance included.
    """
    n = len(x)
    k, m = weights.shape
    groups = np.arange(n) if groups is None else np.asarray(groups)
    random = groups >= 0
    ids = groups[random]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]) if len(ids) else []
    n_groups = len(starts)
    # per group: its stratum and the factor sqrt((1 - f) · G_h / (G_h − 1)) after centring
    stratum = (
        np.zeros(n_groups, np.intp) if strata is None else np.asarray(strata)[random][order][starts]
    )
    drawn = np.zeros(n_groups) if fraction is None else np.asarray(fraction)[random][order][starts]
    factor = np.zeros(n_groups)
    for h in np.unique(stratum):
        members = stratum == h
        size = int(members.sum())
        fpc = max(1.0 - float(drawn[members][0]), 0.0)
        # a lone unit: its spread cannot be estimated; it is left uncentred (conservative)
        factor[members] = np.sqrt(fpc * size / (size - 1)) if size > 1 else np.sqrt(fpc)
    xr = x[random]
    wr = w[random]
    top = top_k(m)
    se = np.zeros((k, m))
    separated = np.zeros(k, bool)
    for t in range(k):
        if n_groups:
            scores = xr * (wr * residual[random, t])[:, None]
            u = np.add.reduceat(scores[order], starts, axis=0)  # (G, p)
            for h in np.unique(stratum):  # the fixed rows (and ridge's penalty) make Σu ≠ 0
                members = stratum == h
                if members.sum() > 1:
                    u[members] -= u[members].mean(axis=0)
            influence = (u * factor[:, None]) @ bread_inv
        else:
            influence = np.zeros((0, x.shape[1]))
        if expand is not None:
            influence = expand(influence)
        se[t] = np.sqrt((influence**2).sum(axis=0))
        if top >= 1:
            ranked = np.argsort(-weights[t], kind="stable")
            a, b = ranked[top - 1], ranked[top]
            gap = weights[t, a] - weights[t, b]
            gap_sd = np.sqrt(((influence[:, a] - influence[:, b]) ** 2).sum())
            separated[t] = bool(gap > Z * gap_sd)
    return se, (separated if top >= 1 else None)


def ridge_errors(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    alpha: float,
    coef: np.ndarray,
    intercept: np.ndarray,
    groups: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Standard errors of `regression.weighted_ridge`'s coef (k, m); see `sandwich`."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    xc = x - (w @ x) / w.sum()
    gram = (xc * w[:, None]).T @ xc
    gram[np.diag_indices_from(gram)] += alpha
    bread_inv = np.linalg.pinv(gram, hermitian=True)
    residual = y.astype(np.float64) - (x @ coef.T + intercept[None, :])
    return sandwich(xc, w, residual, bread_inv, groups, coef)


def constrained_wls_errors(
    z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    f_empty: np.ndarray,
    f_full: np.ndarray,
    phi: np.ndarray,
    groups: np.ndarray | None,
    strata: np.ndarray | None = None,
    fraction: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Standard errors of `regression.constrained_wls`'s φ (k, m): the sandwich of the
    reduced problem (last feature eliminated), mapped back with φ_m = Δ − Σ φ_{<m}."""
    z = z.astype(np.float64)
    delta = (f_full - f_empty).astype(np.float64)
    design = z[:, :-1] - z[:, -1:]
    target = y.astype(np.float64) - f_empty[None, :] - z[:, -1:] * delta[None, :]
    residual = target - design @ phi[:, :-1].T
    w = w.astype(np.float64)
    bread_inv = np.linalg.pinv((design * w[:, None]).T @ design, hermitian=True)

    def expand(influence: np.ndarray) -> np.ndarray:
        return np.hstack([influence, -influence.sum(axis=1, keepdims=True)])

    return sandwich(design, w, residual, bread_inv, groups, phi, expand, strata, fraction)
