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

An estimator that is more than one regression (LIME's regression adjustment fits a
surrogate to the same rows first) is not that regression's variance: its scale comes from a
delete-a-group jackknife of the whole estimate (`jackknife_groups`, `jackknife_variance`:
the sampling units dealt into 40 groups, the estimate redone with each left out), its
shape (which weights vary more, and together) from the sandwich, which sees every row: the
jackknife's own covariance has only 39 degrees of freedom, and the largest of its noisy gap
deviations would widen the resolution (`sandwich(total=…)`).

Whether the top k is settled (num_samples "auto", rounds.py) is an indifference-zone rule
(ranking and selection, Bechhofer 1954): every pair of a top-k weight and one outside is
either separated at 95 % or measured precisely enough that a wrong order by more than
δ = tolerance · Σ|w| (params.tolerance, 1 % of the attribution's total mass by default)
would have shown (Z·sd of the gap ≤ δ): a superpixel left out of the top k exceeds one
inside by more than δ with probability ≤ 2.5 %. `resolution` is the smallest such
tolerance (the largest Z·sd over the pairs not separated, over Σ|w|; 0 when all are):
settled = resolution ≤ tolerance.
`separated` (the result's top_separated) stays strict: the k-th weight above the (k+1)-th
at 95 %.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from worker.engine.regression import Reduced, chunk_rows

#: How many of the largest weights must be set apart from the rest (min(TOP_K, m - 1)).
TOP_K = 5
#: Two-sided 95 %: the k-th weight exceeds the (k+1)-th by Z standard errors of the gap.
Z = 1.96
#: Groups of the delete-a-group jackknife (`jackknife_groups`), for estimators that are not
#: one weighted least squares (LIME's regression-adjusted fit, logistic_surrogate.py).
JACKKNIFE_GROUPS = 40


@dataclass(frozen=True)
class Errors:
    """se: (k, m) standard errors; separated: (k,) bool, the k-th weight exceeds the
    (k+1)-th by Z standard deviations of their difference; resolution: (k,) the share of
    Σ|w| up to which the top k is settled (module docstring). None where m < 2."""

    se: np.ndarray
    separated: np.ndarray | None
    resolution: np.ndarray | None


def top_k(m: int) -> int:
    return min(TOP_K, m - 1)


def top_sets(weights: np.ndarray) -> list[frozenset[int]]:
    """weights: (k, m) -> the indices of each row's top_k(m) largest weights."""
    k = top_k(weights.shape[1])
    return [frozenset(np.argsort(-row, kind="stable")[:k].tolist()) for row in weights]


def kept_up_to_ties(weights: np.ndarray, previous: list[frozenset[int]], tolerance: float) -> bool:
    """weights: (k, m); previous: each target's earlier top set. True when, for every target,
    whatever left the top set since is within δ (tolerance · Σ|w|) of the k-th weight
    now: a swap inside the indifference zone, not a change of mind."""
    for row, before in zip(weights, previous, strict=True):
        ranked = np.argsort(-row, kind="stable")
        kth = row[ranked[top_k(len(row)) - 1]]
        delta = tolerance * float(np.abs(row).sum())
        left = [i for i in before if i not in set(ranked[: top_k(len(row))].tolist())]
        if any(kth - row[i] > delta for i in left):
            return False
    return True


def sandwich(
    x: np.ndarray | Reduced,
    w: np.ndarray,
    residual: np.ndarray,
    bread_inv: np.ndarray,
    groups: np.ndarray | None,
    weights: np.ndarray,
    expand: Callable[[np.ndarray], np.ndarray] | None = None,
    strata: np.ndarray | None = None,
    fraction: np.ndarray | None = None,
    leverage: float = 0.0,
    total: np.ndarray | None = None,
) -> Errors:
    """Clustered (and stratified) sandwich standard errors and top-k separation.

    x: (n, p) the design as fitted (an array, or a `Reduced` that builds its rows on
    demand); w: (n,) regression weights; residual: (n, k); bread_inv: (p, p) = A⁻¹; groups:
    (n,) sampling unit per row, -1 = not random, None = each row its own; weights: (k, m) the
    fitted weights; expand maps (G, p) influences to (G, m) where the fit eliminated a
    feature (it must be linear); strata, fraction: (n,) stratum of each row and the share of
    its population drawn without replacement (None: one stratum, drawn with replacement);
    leverage: scale each unit's residuals by (I − H_g)^(−leverage) (`_leverage_adjusted`;
    0: none); total: (k,) where given, each target's covariance is scaled to this total
    variance, its shape kept (`jackknife_variance`). Returns `Errors`.

    The units are walked a chunk at a time (about CHUNK design entries), so memory does not
    grow with the number of rows: per target, the meat Σ_h f_h Σ_{g∈h} (u_g − ū_h)(u_g − ū_h)ᵀ
    is accumulated as Σ_g f_g u_g u_gᵀ − Σ_h f_h G_h ū_h ū_hᵀ (f: the factor below, squared).
    """
    n = len(w)
    k, m = weights.shape
    p = x.shape[1]
    groups = np.arange(n) if groups is None else np.asarray(groups)
    random = np.flatnonzero(groups >= 0)
    order = np.argsort(groups[random], kind="stable")
    by_unit = random[order]  # row indices, each unit's rows together
    sorted_ids = groups[by_unit]
    starts = (  # where each unit's rows begin
        np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        if len(by_unit)
        else np.zeros(0, np.intp)
    )
    n_groups = len(starts)
    # per unit: its stratum and the factor (1 - f) · G_h / (G_h − 1) of its centred outer product
    labels = np.zeros(n, np.intp) if strata is None else np.asarray(strata)
    _, stratum = np.unique(labels[by_unit][starts], return_inverse=True)
    stratum = stratum.reshape(-1).astype(np.intp)
    n_strata = int(stratum.max()) + 1 if n_groups else 0
    drawn = np.zeros(n) if fraction is None else np.asarray(fraction, np.float64)
    drawn = drawn[by_unit][starts]
    units = np.bincount(stratum, minlength=n_strata)
    fpc = np.zeros(n_strata)
    fpc[stratum] = np.maximum(1.0 - drawn, 0.0)  # one fraction per stratum
    # a lone unit: its spread cannot be estimated; it is left uncentred (conservative)
    stratum_factor = np.where(units > 1, fpc * units / np.maximum(units - 1, 1), fpc)
    factor = stratum_factor[stratum]
    meat = np.zeros((k, p, p))
    totals = np.zeros((k, n_strata, p))  # Σ u_g per stratum
    ends = np.r_[starts[1:], len(by_unit)].astype(np.intp)
    step = chunk_rows(p)
    first = 0
    while first < n_groups:
        # the units whose rows end within `step` rows, at least one however large
        last = max(int(np.searchsorted(ends, starts[first] + step, "right")), first + 1)
        lo, hi = int(starts[first]), int(ends[last - 1])
        rows = by_unit[lo:hi]
        xc = np.asarray(x[rows], np.float64)
        wc = w[rows]
        rc = residual[rows]
        local = starts[first:last] - lo
        if leverage:
            rc = _leverage_adjusted(xc, wc, rc, local, bread_inv, leverage)
        onehot = np.zeros((last - first, n_strata))
        onehot[np.arange(last - first), stratum[first:last]] = 1.0
        for t in range(k):
            u = np.add.reduceat(xc * (wc * rc[:, t])[:, None], local, axis=0)  # (G_c, p)
            meat[t] += (u * factor[first:last, None]).T @ u
            totals[t] += onehot.T @ u
        first = last
    expansion = np.eye(p) if expand is None else expand(np.eye(p))  # (p, m)
    to_weights = bread_inv @ expansion  # cov = toᵀ meat to
    centred = units > 1  # the fixed rows (and ridge's penalty) make Σu ≠ 0
    covariances = []
    for t in range(k):
        means = totals[t][centred] / units[centred, None]
        meat_t = meat[t] - (means * (stratum_factor * units)[centred, None]).T @ means
        cov = to_weights.T @ meat_t @ to_weights
        if total is not None:
            trace = float(np.trace(cov))
            cov = cov * (total[t] / trace) if trace > 0 else cov
        covariances.append(cov)
    return judged(np.asarray(covariances), weights)


def judged(cov: np.ndarray, weights: np.ndarray) -> Errors:
    """cov: (k, m, m) the weights' covariance per target; weights: (k, m) -> `Errors`: the
    standard errors, the top k's separation and its resolution (module docstring)."""
    k, m = weights.shape
    top = top_k(m)
    se = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
    if top < 1:
        return Errors(se, None, None)
    separated = np.zeros(k, bool)
    resolution = np.zeros(k)
    for t in range(k):
        ranked = np.argsort(-weights[t], kind="stable")
        inside, outside = ranked[:top], ranked[top:]
        gap = weights[t, inside][:, None] - weights[t, outside][None, :]
        var = cov[t, inside, inside][:, None] + cov[t, outside, outside][None, :]
        gap_sd = np.sqrt(np.clip(var - 2 * cov[t][np.ix_(inside, outside)], 0.0, None))
        apart = gap > Z * gap_sd
        separated[t] = bool(apart[-1, 0])
        resolution[t] = top_resolution(weights[t], Z * gap_sd[~apart])
    return Errors(se, separated, resolution)


def jackknife_groups(
    groups: np.ndarray | None, n: int, count: int = JACKKNIFE_GROUPS
) -> np.ndarray:
    """(n,) the delete-a-group jackknife's group of each row: the sampling units (`groups`,
    None: each row its own) dealt in turn, in order of first appearance, into min(count,
    units) groups; -1 for rows that are not random (never left out)."""
    ids = np.arange(n) if groups is None else np.asarray(groups)
    out = np.full(n, -1, np.intp)
    random = ids >= 0
    if random.any():
        _, first, unit = np.unique(ids[random], return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")  # unit -> order
        out[random] = rank[unit.reshape(-1)] % min(count, len(first))
    return out


def jackknife_variance(replicates: np.ndarray) -> np.ndarray:
    """replicates: (G, k, m) the estimate with each of G jackknife groups left out (G >= 2)
    -> (k,) the delete-a-group jackknife's total variance of each target's weights,
    (G − 1)/G Σ_g ‖β_g − β̄‖² (Kott 2001)."""
    g = len(replicates)
    spread = replicates - replicates.mean(axis=0)
    return np.asarray(np.einsum("gkm,gkm->k", spread, spread) * (g - 1) / g)


def settled(resolution: np.ndarray, tolerance: float) -> np.ndarray:
    """(k,) bool: each target's top k is settled within `tolerance` (module docstring); an
    unknown (infinite) resolution never is."""
    return np.asarray(resolution <= tolerance)


def top_resolution(weights: np.ndarray, unresolved: np.ndarray) -> float:
    """weights: (m,); unresolved: Z·sd of the top-k/rest gaps not separated -> the share of
    Σ|weights| below which their order is not known (0: every pair separated; inf: nothing
    is known of an all-zero attribution)."""
    if not unresolved.size:
        return 0.0
    worst = float(unresolved.max())
    mass = float(np.abs(weights).sum())
    if mass > 0:
        return worst / mass
    return 0.0 if worst == 0 else float("inf")


def _leverage_adjusted(
    x: np.ndarray,
    w: np.ndarray,
    residual: np.ndarray,
    starts: np.ndarray,
    bread_inv: np.ndarray,
    power: float,
) -> np.ndarray:
    """Residuals of rows sorted by unit (units start at `starts`) scaled by each unit's
    leverage: W_g^(-1/2) (I − H_g)^(−power) W_g^(1/2) r_g, H_g = W_g^(1/2) X_g A⁻¹ X_gᵀ W_g^(1/2)
    (power 1: CR3, the jackknife; 1/2: CR2, Bell and McCaffrey 2002)."""
    n = len(x)
    sizes = np.diff(np.r_[starts, n])
    out = np.empty_like(residual)
    sw = np.sqrt(w)
    for size in np.unique(sizes):
        rows = starts[sizes == size][:, None] + np.arange(size)[None, :]  # (G_s, s)
        xs = x[rows] * sw[rows][..., None]  # (G_s, s, p)
        hat = xs @ bread_inv @ xs.transpose(0, 2, 1)  # (G_s, s, s)
        values, vectors = np.linalg.eigh(np.eye(size) - hat)
        scale = np.clip(values, 1e-3, None) ** -power
        inverse = (vectors * scale[:, None, :]) @ vectors.transpose(0, 2, 1)
        r = residual[rows] * sw[rows][..., None]  # (G_s, s, k)
        out[rows] = (inverse @ r) / sw[rows][..., None]
    return out


def ridge_errors(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    alpha: float,
    coef: np.ndarray,
    intercept: np.ndarray,
    groups: np.ndarray | None,
    ranked: np.ndarray | None = None,
    total: np.ndarray | None = None,
) -> Errors:
    """Standard errors of `regression.weighted_ridge`'s coef (k, m); see `sandwich`.
    ranked: the weights whose top k is judged (default coef; a regression-adjusted fit
    passes its total weights and the residuals' coef); total: as `sandwich`'s."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    xc = x - (w @ x) / w.sum()
    gram = (xc * w[:, None]).T @ xc
    gram[np.diag_indices_from(gram)] += alpha
    bread_inv = np.linalg.pinv(gram, hermitian=True)
    residual = y.astype(np.float64) - (x @ coef.T + intercept[None, :])
    ranked = coef if ranked is None else ranked
    return sandwich(xc, w, residual, bread_inv, groups, ranked, total=total)


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
) -> Errors:
    """Standard errors of `regression.constrained_wls`'s φ (k, m): the sandwich of the
    reduced problem (last feature eliminated), residuals scaled by each unit's leverage
    (CR3, as `penalised_wls_errors`), mapped back with φ_m = Δ − Σ φ_{<m}."""
    z = z.astype(np.float64)
    delta = (f_full - f_empty).astype(np.float64)
    design = z[:, :-1] - z[:, -1:]
    target = y.astype(np.float64) - f_empty[None, :] - z[:, -1:] * delta[None, :]
    residual = target - design @ phi[:, :-1].T
    w = w.astype(np.float64)
    bread_inv = np.linalg.pinv((design * w[:, None]).T @ design, hermitian=True)

    def expand(influence: np.ndarray) -> np.ndarray:
        return np.hstack([influence, -influence.sum(axis=1, keepdims=True)])

    return sandwich(
        design, w, residual, bread_inv, groups, phi, expand, strata, fraction, leverage=1.0
    )


def penalised_wls_errors(
    reduced: Reduced,
    w: np.ndarray,
    beta: np.ndarray,
    bread_inv: np.ndarray,
    phi: np.ndarray,
    groups: np.ndarray | None,
    strata: np.ndarray | None = None,
    fraction: np.ndarray | None = None,
) -> Errors:
    """Standard errors of `regression.penalised_wls`'s φ (k, m): the sandwich of the reduced
    problem with bread A = xᵀWx + diag(penalty), each unit's residuals scaled by its
    leverage (CR3: with a few hundred terms the plain sandwich is 2× too small), its
    influence mapped to φ through `reduced.to_phi` and φ_m = Δ − Σ φ_{<m}. It is the spread
    from seed to seed; the ridge's bias (shrinking as 1/n) is not in it."""
    residual = reduced.target - reduced.predict(beta)

    def expand(influence: np.ndarray) -> np.ndarray:
        head = influence @ reduced.to_phi
        return np.hstack([head, -head.sum(axis=1, keepdims=True)])

    return sandwich(
        reduced,
        w.astype(np.float64),
        residual,
        bread_inv,
        groups,
        phi,
        expand,
        strata,
        fraction,
        leverage=1.0,
    )
