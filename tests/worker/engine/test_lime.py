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


def test_lime_fit_is_the_weighted_ridge_of_its_sample() -> None:
    lime = Lime()
    z = lime.sample(10, 300, np.random.default_rng(0)).z
    y = np.random.default_rng(1).random((300, 2))
    fit = lime.fit(Coalitions(z=z, weights=lime.kernel(z)), y, y[0], None)
    coef, intercept, r2 = weighted_ridge(z, y, lime.kernel(z), 1.0)
    np.testing.assert_array_equal(fit.weights, coef)
    np.testing.assert_array_equal(fit.base_value, intercept)
    np.testing.assert_array_equal(fit.score, r2)


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
    assert not np.allclose(a.weights, c.weights, atol=1e-6)


def test_lime_budget_counts_the_unperturbed_image_once(region, tmp_path: Path) -> None:
    img, model = region
    e = explain(img, model, lime_params(100), batch_size=64)
    assert e.model_evaluations <= 100
    assert e.r2 is not None and e.r2.shape == (1,)
