"""LIME as lime_image does it: Bernoulli coalitions, cosine-distance kernel, weighted Ridge;
by default with a logistic surrogate as control variate (same estimand, far less variance:
logistic_surrogate.py)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from worker.engine.coalitions import Coalitions, Fit
from worker.engine.logistic_surrogate import (
    Population,
    fit_logistic,
    population,
    population_fit,
    refit,
    surrogate,
)
from worker.engine.regression import weighted_r2, weighted_ridge
from worker.engine.uncertainty import jackknife_groups, jackknife_variance, ridge_errors


@dataclass(frozen=True)
class Lime:
    """kernel_width 0.25, alpha 1 and keep_probability 0.5 are lime_image's defaults.
    surrogate: "logistic" (default) adjusts the fit with a logistic surrogate where the
    outputs are probabilities (logistic_surrogate.py); "none" is lime_image's fit exactly."""

    kernel_width: float = 0.25
    alpha: float = 1.0
    keep_probability: float = 0.5
    surrogate: str = "logistic"

    def sample(self, n_segments: int, budget: int, rng: np.random.Generator) -> Coalitions:
        """Row 0 is the unperturbed image (as in lime_image); others keep each superpixel with p."""
        z = rng.random((budget, n_segments)) < self.keep_probability
        z[0] = True
        groups = np.arange(budget)
        groups[:1] = -1  # the image itself is not drawn
        return Coalitions(z=z, weights=self.kernel(z), groups=groups)

    def grow(
        self, previous: Coalitions | None, n_segments: int, budget: int, rng: np.random.Generator
    ) -> Coalitions:
        """`previous` and budget − len(previous) more rows drawn as `sample` draws them."""
        if previous is None:
            return self.sample(n_segments, budget, rng)
        more = rng.random((max(budget - len(previous.z), 0), n_segments)) < self.keep_probability
        z = np.vstack([previous.z, more])
        groups = np.arange(len(z))
        groups[:1] = -1
        return Coalitions(z=z, weights=self.kernel(z), groups=groups)

    def kernel(self, z: np.ndarray) -> np.ndarray:
        """sqrt(exp(-d²/width²)) of the cosine distance d between each row and all-on."""
        on = z.sum(axis=1)
        distance = 1.0 - np.sqrt(on / z.shape[1])
        return np.asarray(np.sqrt(np.exp(-(distance**2) / self.kernel_width**2)))

    def fit(
        self, coalitions: Coalitions, y: np.ndarray, f_full: np.ndarray, f_empty: np.ndarray | None
    ) -> Fit:
        z, w = coalitions.z, coalitions.weights
        if self.surrogate == "logistic" and _probabilities(y):
            return self._adjusted(coalitions, y)
        coef, intercept, r2 = weighted_ridge(z, y, w, self.alpha)
        errors = ridge_errors(z, y, w, self.alpha, coef, intercept, coalitions.groups)
        return Fit(coef, intercept, r2, errors.se, errors.separated, errors.resolution)

    def _adjusted(self, coalitions: Coalitions, y: np.ndarray) -> Fit:
        """β_q(h) + lime's regression of y − h, h the logistic surrogate fitted to (z, y).
        Standard errors: the residual regression's sandwich (each residual from the
        cross-validation surrogate that did not see its row) scaled to the total variance of
        a delete-a-group jackknife of the whole estimate (the surrogate refitted at its τ
        with each group of rows left out); logistic_surrogate.py."""
        z, w = coalitions.z, coalitions.weights
        k, m = y.shape[1], z.shape[1]
        fitted = fit_logistic(z, y, w)
        groups = jackknife_groups(coalitions.groups, len(z))
        left_out = [groups != g for g in range(groups.max() + 1)]
        thetas = [refit(z[keep], y[keep], w[keep], fitted.tau, fitted.theta) for keep in left_out]
        pop = _population(m, self.keep_probability, self.kernel_width)
        # the surrogates' LIME weights in one pass: the estimate's, then each replicate's
        coef_h, intercept_h = population_fit(np.vstack([fitted.theta, *thetas]), pop)
        coef_h = coef_h.reshape(-1, k, m)
        # the estimate's residual regression, with the held-out residuals beside it
        residuals = np.hstack([y - surrogate(fitted.theta, z), y - fitted.held_out])
        coef_r, intercept_r, _ = weighted_ridge(z, residuals, w, self.alpha)
        coef, intercept = coef_h[0] + coef_r[:k], intercept_h[:k] + intercept_r[:k]
        replicates = np.empty((len(left_out), k, m))
        for r, (keep, theta) in enumerate(zip(left_out, thetas, strict=True)):
            z_r = z[keep]
            residual = y[keep] - surrogate(theta, z_r)
            replicates[r] = coef_h[r + 1] + weighted_ridge(z_r, residual, w[keep], self.alpha)[0]
        errors = ridge_errors(
            z, residuals[:, k:], w, self.alpha, coef_r[k:], intercept_r[k:], coalitions.groups,
            ranked=coef, total=jackknife_variance(replicates) if len(replicates) > 1 else None,
        )  # fmt: skip
        score = weighted_r2(z, y, w, coef, intercept)
        return Fit(coef, intercept, score, errors.se, errors.separated, errors.resolution)


@lru_cache(maxsize=4)
def _population(m: int, keep_probability: float, kernel_width: float) -> Population:
    """q's coalitions for the surrogate's own LIME weights, kept across fits (a worker
    explains many photos with the same superpixel counts)."""
    kernel = Lime(kernel_width=kernel_width, keep_probability=keep_probability).kernel
    return population(m, keep_probability, kernel)


def _probabilities(y: np.ndarray) -> bool:
    return bool(len(y)) and bool(np.all(np.isfinite(y))) and bool((y >= 0).all() & (y <= 1).all())
