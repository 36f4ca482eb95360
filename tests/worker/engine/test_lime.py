"""LIME: parity with the `lime` package's regression, its sampler and kernel, known answers."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics
from lime.lime_base import LimeBase
from onnx_models import load, region_model, tiny_card

from glimpse.params import parse_params
from worker.engine.coalitions import Coalitions
from worker.engine.explain import explain
from worker.engine.lime import Lime
from worker.engine.regression import weighted_ridge


def lime_image_kernel(d: np.ndarray, kernel_width: float) -> np.ndarray:
    """lime_image.LimeImageExplainer's kernel, as lime 0.2.0.1 defines it."""
    return np.sqrt(np.exp(-(d**2) / kernel_width**2))


def lime_data(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Coalitions as lime_image draws them (row 0 all on) and labels of a nonlinear model."""
    rs = np.random.RandomState(seed)
    data = rs.randint(0, 2, n * m).reshape((n, m))
    data[0, :] = 1
    w = rs.normal(size=(m, 3))
    labels = 1 / (1 + np.exp(-(data @ w - 0.5 * data[:, :1] * data[:, 1:2])))
    return data, labels


@pytest.mark.parametrize(
    ("m", "n", "kernel_width", "feature_selection"),
    [
        (12, 200, 0.25, "auto"),
        (40, 1000, 0.25, "none"),
        (60, 50, 0.25, "none"),  # more superpixels than samples: the dual solve
        (20, 300, 0.5, "highest_weights"),
    ],
)
def test_weighted_ridge_equals_lime_base(
    m: int, n: int, kernel_width: float, feature_selection: str
) -> None:
    data, labels = lime_data(m, n, seed=m)
    distances = sklearn.metrics.pairwise_distances(
        data, data[0].reshape(1, -1), metric="cosine"
    ).ravel()
    base = LimeBase(
        partial(lime_image_kernel, kernel_width=kernel_width), verbose=False, random_state=0
    )
    ours = Lime(kernel_width=kernel_width)
    weights = ours.kernel(data.astype(bool))
    np.testing.assert_allclose(
        weights, lime_image_kernel(distances, kernel_width), rtol=1e-12, atol=1e-14
    )
    coef, intercept, r2 = weighted_ridge(data, labels, weights, alpha=1.0)
    for label in range(labels.shape[1]):
        their_intercept, pairs, their_score, _ = base.explain_instance_with_data(
            data, labels, distances, label, num_features=100000, feature_selection=feature_selection
        )
        their_coef = np.zeros(m)
        for feature, value in pairs:
            their_coef[feature] = value
        np.testing.assert_allclose(coef[label], their_coef, rtol=0, atol=1e-8)
        assert intercept[label] == pytest.approx(their_intercept, abs=1e-8)
        assert r2[label] == pytest.approx(their_score, abs=1e-8)


@pytest.mark.parametrize(
    ("surrogate", "low"),
    [("none", 0.0), ("logistic", -3.0)],  # logistic: outputs that are not probabilities
    ids=["surrogate-none", "logits"],
)
def test_lime_fit_is_the_weighted_ridge_of_its_sample(surrogate: str, low: float) -> None:
    lime = Lime(surrogate=surrogate)
    z = lime.sample(10, 300, np.random.default_rng(0)).z
    y = low + np.random.default_rng(1).random((300, 2))
    fit = lime.fit(Coalitions(z=z, weights=lime.kernel(z)), y, y[0], None)
    coef, intercept, r2 = weighted_ridge(z, y, lime.kernel(z), 1.0)
    np.testing.assert_array_equal(fit.weights, coef)
    np.testing.assert_array_equal(fit.base_value, intercept)
    np.testing.assert_array_equal(fit.score, r2)


def lime_estimand(game, m: int, rows: int = 400_000, seed: int = 99) -> np.ndarray:
    """LIME's estimand of `game` (z -> (n, k)) by a large i.i.d. sample: (k, m)."""
    lime = Lime(surrogate="none")
    z = np.random.default_rng(seed).random((rows, m)) < 0.5
    coef, _, _ = weighted_ridge(z, game(z), lime.kernel(z), 0.0)
    return coef


def logistic_game(m: int, interactions: float):
    """Probabilities a class might give: a logistic curve of the superpixels (two classes),
    plus pairwise interactions a logistic curve does not have (interactions > 0)."""
    rng = np.random.default_rng(m)
    a = rng.normal(0, 1.5, (m, 2))
    pairs = rng.integers(0, m, (m, 2))

    def game(z: np.ndarray) -> np.ndarray:
        x = z.astype(np.float64)
        eta = (
            x @ a
            - 0.3 * m / 2
            + interactions
            * (x[:, pairs[:, 0]] * x[:, pairs[:, 1]]).sum(axis=1, keepdims=True)
            / np.sqrt(m)
        )
        return 1 / (1 + np.exp(-eta))

    return game


def fits(game, m: int, n: int, seeds: range, surrogate: str):
    lime = Lime(surrogate=surrogate)
    out = []
    for seed in seeds:
        c = lime.sample(m, n, np.random.default_rng(seed))
        y = game(c.z)
        out.append(lime.fit(c, y, y[0], None))
    return out


def rel_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def test_a_logistic_game_is_recovered_almost_exactly_where_lime_is_noise() -> None:
    m, n = 60, 400
    game = logistic_game(m, interactions=0.0)
    truth = lime_estimand(game, m)
    adjusted = fits(game, m, n, range(3), "logistic")
    plain = fits(game, m, n, range(3), "none")
    for a, p in zip(adjusted, plain, strict=True):
        assert rel_error(a.weights, truth) < 0.03  # the Monte Carlo error of `truth` and q's
        assert rel_error(p.weights, truth) > 0.2
        assert np.all(a.se < p.se)  # the residuals are all but zero


def test_the_adjusted_fit_estimates_limes_estimand_whatever_the_surrogate_misses() -> None:
    """Interactions a logistic curve cannot follow: the residual term corrects for them (no
    bias beyond noise), the error is still lower than lime's own, and the standard errors
    say how large it is."""
    m, n, seeds = 30, 500, range(24)
    game = logistic_game(m, interactions=2.0)
    truth = lime_estimand(game, m)
    adjusted = fits(game, m, n, seeds, "logistic")
    plain = fits(game, m, n, seeds, "none")
    a = np.stack([f.weights for f in adjusted])
    p = np.stack([f.weights for f in plain])
    assert np.mean([rel_error(w, truth) for w in a]) < 0.6 * np.mean(
        [rel_error(w, truth) for w in p]
    )
    bias = np.linalg.norm(a.mean(axis=0) - truth) / np.linalg.norm(truth)
    spread = np.mean([rel_error(w, truth) for w in a])
    assert bias < 0.5 * spread  # mostly variance, which averages away: no systematic error
    z = (a - truth) / np.stack([f.se for f in adjusted])
    assert np.mean(np.abs(z) < 2.58) > 0.9  # 99 % intervals cover most of the time


def test_the_adjusted_fits_standard_errors_are_its_seed_to_seed_spread() -> None:
    """The surrogate is fitted to the same rows, so the residual regression's own variance
    is not the estimate's: the jackknife of the whole estimate (uncertainty.py) states the
    spread the weights really have from seed to seed, neither much more nor less."""
    m, n, seeds = 30, 500, range(24)
    adjusted = fits(logistic_game(m, interactions=2.0), m, n, seeds, "logistic")
    spread = np.std([f.weights for f in adjusted], axis=0, ddof=1)
    stated = np.sqrt(np.mean([f.se**2 for f in adjusted], axis=0))
    ratio = np.sqrt(np.mean(stated**2) / np.mean(spread**2))
    assert 0.8 < ratio < 1.4, ratio


def test_the_score_is_the_weighted_r2_of_the_returned_line() -> None:
    m, n = 20, 300
    game = logistic_game(m, interactions=1.0)
    lime = Lime()
    c = lime.sample(m, n, np.random.default_rng(0))
    y = game(c.z)
    fit = lime.fit(c, y, y[0], None)
    fitted = c.z @ fit.weights.T + fit.base_value
    w = c.weights
    for j in range(2):
        mean = w @ y[:, j] / w.sum()
        r2 = 1 - w @ (y[:, j] - fitted[:, j]) ** 2 / (w @ (y[:, j] - mean) ** 2)
        assert fit.score is not None and fit.score[j] == pytest.approx(r2, rel=1e-9)


def test_sampler_keeps_row_zero_whole_and_each_superpixel_with_probability_p() -> None:
    z = Lime(keep_probability=0.3).sample(40, 5000, np.random.default_rng(0)).z
    assert z.shape == (5000, 40) and z.dtype == bool
    assert z[0].all()
    assert z[1:].mean() == pytest.approx(0.3, abs=0.01)


def test_kernel_of_the_empty_coalition_is_distance_one() -> None:
    w = Lime(kernel_width=0.25).kernel(np.zeros((1, 8), bool))
    assert w[0] == pytest.approx(np.sqrt(np.exp(-1 / 0.25**2)))


def lime_params(num_samples: int = 400, **extra: object):
    return parse_params(
        {
            "method": "lime",
            "num_samples": num_samples,
            "segmentation": {"algorithm": "grid", "cell_size": 4},
            **extra,
        }
    )


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory):
    """16x16 image, 4x4 cells (16 superpixels); class 0 looks only at rows 4..8, cols 8..16,
    i.e. superpixels 6 and 7."""
    path = region_model(
        tmp_path_factory.mktemp("region") / "m.onnx", 16, 16, slice(4, 8), slice(8, 16)
    )
    img = np.random.default_rng(0).integers(60, 256, (16, 16, 3), dtype=np.uint8)
    return img, load(path, tiny_card(16, 16, 2))


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_a_model_that_looks_at_one_region_is_explained_by_that_region(region, method: str) -> None:
    img, model = region
    params = lime_params(400, method=method, targets={"classes": [0, 1]}, output_space="logit")
    e = explain(img, model, params, batch_size=64)
    assert set(np.argsort(-e.weights[0])[:2]) == {6, 7}
    others = np.delete(e.weights[0], [6, 7])
    assert np.abs(others).max() < 0.05 * e.weights[0, [6, 7]].min()
    np.testing.assert_allclose(e.weights[1], 0, atol=1e-6)  # the constant class


def test_lime_on_a_linear_model_recovers_it_up_to_ridge_shrinkage(region) -> None:
    img, model = region
    e = explain(
        img,
        model,
        lime_params(2000, targets={"classes": [0]}, output_space="logit", lime={"alpha": 0.0}),
        batch_size=64,
    )
    truth = np.zeros(16)
    for j in (6, 7):
        truth[j] = img[4:8, (j - 4) * 4 : (j - 3) * 4, 0].mean() / 255 / 2
    np.testing.assert_allclose(e.weights[0], truth, atol=1e-6)
    assert e.r2[0] == pytest.approx(1.0, abs=1e-9)


def test_same_seed_same_numbers_different_seed_different_numbers(region) -> None:
    img, model = region
    a = explain(img, model, lime_params(200, seed=3), batch_size=64)
    b = explain(img, model, lime_params(200, seed=3), batch_size=64)
    c = explain(img, model, lime_params(200, seed=4), batch_size=64)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.base_value, b.base_value)
    # another sample: other numbers (close ones here: the class probability of this model is
    # a logistic curve of the superpixels, which the surrogate recovers from either sample)
    assert not np.array_equal(a.weights, c.weights)


def test_lime_budget_counts_the_unperturbed_image_once(region, tmp_path: Path) -> None:
    img, model = region
    e = explain(img, model, lime_params(100), batch_size=64)
    assert e.model_evaluations <= 100
    assert e.r2 is not None and e.r2.shape == (1,)
