"""The weighted least squares shared by LIME and Kernel SHAP."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from worker.engine.regression import constrained_wls, weighted_ridge


@pytest.mark.parametrize(
    ("n", "m", "alpha"), [(200, 10, 1.0), (50, 80, 1.0), (300, 30, 0.01), (100, 5, 0.0)]
)
def test_weighted_ridge_equals_scikit_learn(n: int, m: int, alpha: float) -> None:
    rng = np.random.default_rng(n + m)
    x = (rng.random((n, m)) < 0.5).astype(float)
    y = rng.normal(size=(n, 3))
    w = rng.random(n) + 0.1
    coef, intercept, r2 = weighted_ridge(x, y, w, alpha)
    for k in range(3):
        ref = Ridge(alpha=alpha, fit_intercept=True).fit(x, y[:, k], sample_weight=w)
        np.testing.assert_allclose(coef[k], ref.coef_, atol=1e-8)
        assert intercept[k] == pytest.approx(ref.intercept_, abs=1e-8)
        assert r2[k] == pytest.approx(ref.score(x, y[:, k], sample_weight=w), abs=1e-8)


def test_weighted_ridge_of_a_constant_target_scores_zero() -> None:
    x = np.eye(4)
    coef, intercept, r2 = weighted_ridge(x, np.ones((4, 1)), np.ones(4), 1.0)
    np.testing.assert_allclose(coef, 0, atol=1e-12)
    assert intercept[0] == pytest.approx(1.0)
    assert r2[0] == 0.0


def test_constrained_wls_meets_the_constraint_and_recovers_linear_functions() -> None:
    rng = np.random.default_rng(0)
    m, n = 12, 400
    z = rng.random((n, m)) < 0.5
    phi = rng.normal(size=(2, m))
    f_empty = np.array([0.3, -1.0])
    y = f_empty + z @ phi.T
    out = constrained_wls(z, y, rng.random(n) + 0.1, f_empty, f_empty + phi.sum(axis=1))
    np.testing.assert_allclose(out, phi, atol=1e-10)

    noisy = y + rng.normal(scale=0.1, size=y.shape)
    f_full = np.array([1.0, 2.0])
    out = constrained_wls(z, noisy, np.ones(n), f_empty, f_full)
    np.testing.assert_allclose(out.sum(axis=1), f_full - f_empty, atol=1e-12)


def test_constrained_wls_with_one_feature_gives_it_everything() -> None:
    out = constrained_wls(
        np.ones((3, 1), bool), np.zeros((3, 1)), np.ones(3), np.array([0.2]), np.array([0.7])
    )
    np.testing.assert_allclose(out, [[0.5]])
