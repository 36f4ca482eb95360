"""Weighted least squares shared by LIME and Kernel SHAP, solved for all targets at once."""

from __future__ import annotations

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
    residual = y - (x @ coef + intercept)
    ss_res = w @ residual**2
    ss_tot = w @ yc**2
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, 0.0)
    return coef.T, intercept, r2


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
        return delta[:, None].copy()
    target = y.astype(np.float64) - f_empty[None, :] - z[:, -1:] * delta[None, :]
    design = z[:, :-1] - z[:, -1:]
    sw = np.sqrt(w.astype(np.float64))[:, None]
    head = np.linalg.lstsq(design * sw, target * sw, rcond=None)[0]  # (m-1, k)
    last = delta - head.sum(axis=0)
    return np.vstack([head, last[None, :]]).T
