"""LIME's estimand with less variance: a logistic surrogate as a control variate.

LIME estimates β* = argmin E_q[(f(z) − b − βᵀz)²], q being its sampling distribution
(each superpixel kept with probability p) weighted by its kernel. lime_image solves that
regression on its n samples. With a class probability f that is far from linear in the
superpixels (most random half-images score near 0, a few near 1), that fit's error is
mostly the misfit of the straight line, and at 100 superpixels and 1000 samples it is
larger than the weights themselves (bench/time_to_quality.py).

Regression adjustment keeps the estimand and removes most of that misfit: fit a surrogate
h(z) = σ(c + aᵀz) to the same samples (a logistic curve of the superpixels, which a class
probability follows far better than a line), then

    β̂ = β_q(h) + β̂_n(f − h),

β_q(h) the surrogate's LIME weights under q itself (computed on POPULATION_ROWS coalitions
drawn from q: free, no model call), β̂_n(f − h) lime's regression of the residuals on the n
samples. The second term corrects whatever the surrogate gets wrong, so β̂ estimates β*
whatever h is (h fitted on the same samples leaves a bias well below the noise: tests);
its variance is that of the residuals, not of f. The surrogate is fitted by penalised
least squares on the probability scale (Gauss–Newton with step halving), with a ridge on
its log-odds coefficients chosen by cross-validation (TAUS).

Measured on the shared EfficientNet (bench/time_to_quality.py, README "Figures"): on
chelsea with lime's quickshift (97 superpixels), relative L2 error to LIME's estimand at
100 / 250 / 500 / 1000 samples 0.91 / 0.82 / 0.74 / 0.62 against lime_image's 7.61 / 4.72 /
2.84 / 1.62 (mean of 3 seeds; the reference's own relative SE is 0.23).

Standard errors (`Lime._adjusted`): the residual regression's sandwich, each residual
taken from the cross-validation surrogate that did not see its row, gives their shape; its
scale is not the estimator's (the surrogate fitted on the same rows absorbs part of the
draw, and β_q(h) moves with it), so it is scaled to the total variance of a delete-a-group
jackknife of the whole estimate (uncertainty.py: the surrogate refitted at its τ, its LIME
weights and the residual regression, with each of 40 groups of rows left out in turn).
bench/calibration.py measures them against the seed-to-seed spread: on chelsea at 97
superpixels and 1000 samples the sandwich alone stated 2.2× the spread, a first-order
(influence function) linearisation of the whole estimate 0.5×, the scaled sandwich 1.35×
(1.1× at 42 superpixels, where the sandwich alone also gave 1.1×).

Not used where the outputs are not probabilities (`output_space: "logit"`): there the fit
is lime's (`Lime.fit`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from worker.engine.regression import chunk_rows

#: The surrogate's ridge is λ = (its weighted sum of squared residuals) / τ², τ chosen
#: among TAUS by two-fold cross-validation. On the bench's photos it picks τ = 2..8 (a
#: strong shrinkage: 0.5 leaves a constant, i.e. lime's own fit); on an exactly logistic
#: game 16..64. Cross-validation only chooses τ: the surrogate is then fitted on every row
#: (cross-fitted surrogates, each correcting the other half, doubled the error at 97
#: superpixels, the residual regression having half the rows).
TAUS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
#: Gauss–Newton iterations at most per penalty, and the relative decrease that ends them.
STEPS = 20
TOLERANCE = 1e-6
#: Coalitions of q on which the surrogate's own LIME weights are computed (seeded: the
#: same numbers on every run; fewer above 80 superpixels); their Monte Carlo error is
#: about 1e-3 of the weights' at 97 superpixels.
POPULATION_ROWS = 100_000
POPULATION_SEED = 0
CLIP = 1e-4  # probabilities are clipped to [CLIP, 1 − CLIP] for the logit start only


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


@dataclass(frozen=True)
class Surrogate:
    """theta (k, m + 1): h_k(z) = σ(θ_k0 + θ_k,1..m · z); tau (k,) the τ each target's ridge
    was chosen at; held_out (n, k): each row's h from the cross-validation fold that did not
    see it (for standard errors: an in-sample surrogate with nearly as many coefficients as
    rows leaves almost no residual)."""

    theta: np.ndarray
    tau: np.ndarray
    held_out: np.ndarray


def fit_logistic(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> Surrogate:
    """The surrogate of each target column of y (n, k): the penalised fit (`_fit`) on all
    rows at the τ of TAUS whose surrogate, fitted on the even rows, predicts the odd ones
    best and vice versa (two-fold cross-validation, weighted squared error; TAUS[0], and
    in-sample predictions for held_out, where there are too few rows for two folds)."""
    x = _design(z)
    w = w.astype(np.float64)
    even = np.arange(len(w)) % 2 == 0
    odd = ~even
    splits = [(x[a], w[a], a, x[b], b) for a, b in ((even, odd), (odd, even))]
    thetas, taus, held_out = [], [], np.empty(y.shape)
    for j, target in enumerate(y.T.astype(np.float64)):
        best_tau, best_loss = TAUS[0], np.inf
        if odd.sum() > 1:
            folds: list[np.ndarray | None] = [None, None]  # each τ starts from the last's fit
            for tau in TAUS:
                predicted = np.empty(len(w))
                for i, (x_fit, w_fit, fit, x_test, test) in enumerate(splits):
                    folds[i] = _fit(x_fit, target[fit], w_fit, tau, folds[i])
                    predicted[test] = sigmoid(x_test @ folds[i])
                loss = float(w @ (target - predicted) ** 2)
                if loss < best_loss:
                    best_tau, best_loss, held_out[:, j] = tau, loss, predicted
        thetas.append(_fit(x, target, w, best_tau))
        taus.append(best_tau)
        if not np.isfinite(best_loss):
            held_out[:, j] = sigmoid(x @ thetas[-1])
    return Surrogate(np.asarray(thetas), np.asarray(taus), held_out)


def refit(
    z: np.ndarray, y: np.ndarray, w: np.ndarray, taus: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """θ (k, m + 1) fitted to (z, y, w) at fixed τ (k,), each target from start (k, m + 1):
    `fit_logistic`'s fit without its choice of τ (the jackknife's replicates)."""
    x = _design(z)
    w = w.astype(np.float64)
    targets = zip(y.T.astype(np.float64), taus, start, strict=True)
    return np.asarray([_fit(x, target, w, float(tau), first) for target, tau, first in targets])


def _fit(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, tau: float, start: np.ndarray | None = None
) -> np.ndarray:
    """Gauss–Newton with step halving on Σ w (y − σ(xθ))² + λ‖θ_1..‖², from `start` or a
    ridge fit of the logits, λ = (the current Σ w (y − σ(xθ))²) / τ² updated every step."""
    theta = start
    if theta is None:
        xtw = x.T * w
        clipped = np.clip(y, CLIP, 1.0 - CLIP)
        theta = _solve(xtw @ x, xtw @ np.log(clipped / (1.0 - clipped)), w.sum() / len(w))
    for _ in range(STEPS):
        p = sigmoid(x @ theta)
        loss = float(w @ (y - p) ** 2)
        penalty = loss / tau**2
        current = loss + penalty * float(theta[1:] @ theta[1:])
        jac = x * (p * (1.0 - p))[:, None]
        jtw = jac.T * w
        step = _solve(jtw @ jac, jtw @ (y - p) - penalty * np.r_[0.0, theta[1:]], penalty)
        for _ in range(12):  # halve the step until the objective decreases
            value = _objective(x, y, w, theta + step, penalty)
            if value <= current:
                break
            step = step / 2
        else:
            break
        theta = theta + step
        if current - value <= TOLERANCE * max(current, 1e-300):
            break
    return np.asarray(theta)


def _objective(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, theta: np.ndarray, penalty: float
) -> float:
    return float(w @ (y - sigmoid(x @ theta)) ** 2) + penalty * float(theta[1:] @ theta[1:])


def _solve(gram: np.ndarray, rhs: np.ndarray, ridge: float) -> np.ndarray:
    """(gram + ridge · I on the slopes) ⁻¹ rhs; the intercept unpenalised."""
    a = gram.copy()
    idx = np.arange(1, len(a))
    a[idx, idx] += ridge + 1e-12
    a[0, 0] += 1e-12
    return np.linalg.solve(a, rhs)


def surrogate(theta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """h (n, k) at coalitions z (n, m)."""
    return sigmoid(theta[:, 0][None, :] + z.astype(np.float64) @ theta[:, 1:].T)


@dataclass(frozen=True)
class Population:
    """Coalitions drawn from q (seeded) and what the surrogate's LIME weights need of them:
    z (N, m) bool, w (N,) LIME's kernel, solve (m + 1, m + 1) the pseudo-inverse of their
    weighted gram [1, z]ᵀ W [1, z]. Built once per (m, keep probability, kernel)."""

    z: np.ndarray
    w: np.ndarray
    solve: np.ndarray


def population(
    m: int, keep_probability: float, kernel: Callable[[np.ndarray], np.ndarray]
) -> Population:
    """POPULATION_ROWS coalitions of q (fewer above 80 superpixels: about 8·10⁶ entries),
    each superpixel kept with keep_probability, weighted by kernel (z -> (n,))."""
    rows = max(min(POPULATION_ROWS, (1 << 23) // max(m, 1)), 10_000)
    z = np.random.default_rng(POPULATION_SEED).random((rows, m)) < keep_probability
    w = kernel(z)
    gram = np.zeros((m + 1, m + 1))
    step = chunk_rows(m + 1)
    for start in range(0, rows, step):
        x = _design(z[start : start + step])
        gram += (x.T * w[start : start + step]) @ x
    return Population(z, w, np.linalg.pinv(gram, hermitian=True))


def population_fit(theta: np.ndarray, pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """The surrogate's LIME weights under q: the kernel-weighted least-squares line through
    h over the population's coalitions. Returns coef (k, m), intercept (k,)."""
    m = pop.z.shape[1]
    moment = np.zeros((m + 1, len(theta)))
    step = chunk_rows(m + 1)
    for start in range(0, len(pop.z), step):
        z = pop.z[start : start + step]
        moment += (_design(z).T * pop.w[start : start + step]) @ surrogate(theta, z)
    beta = pop.solve @ moment  # (m + 1, k)
    return beta[1:].T, beta[0]


def _design(z: np.ndarray) -> np.ndarray:
    return np.hstack([np.ones((len(z), 1)), z.astype(np.float64)])
