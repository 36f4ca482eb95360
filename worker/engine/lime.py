"""LIME as lime_image does it: Bernoulli coalitions, cosine-distance kernel, weighted Ridge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.engine.coalitions import Coalitions, Fit
from worker.engine.regression import weighted_ridge
from worker.engine.uncertainty import ridge_errors


@dataclass(frozen=True)
class Lime:
    """kernel_width 0.25, alpha 1 and keep_probability 0.5 are lime_image's defaults."""

    kernel_width: float = 0.25
    alpha: float = 1.0
    keep_probability: float = 0.5

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
        coef, intercept, r2 = weighted_ridge(coalitions.z, y, coalitions.weights, self.alpha)
        errors = ridge_errors(
            coalitions.z, y, coalitions.weights, self.alpha, coef, intercept, coalitions.groups
        )
        return Fit(coef, intercept, r2, errors.se, errors.separated, errors.settled)
