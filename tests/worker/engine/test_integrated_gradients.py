"""Integrated Gradients: exact on a linear model, complete on EfficientNet, the same numbers
whatever the batch size, and refused clearly where the worker has no autodiff."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import EFFICIENTNET, efficientnet_card
from onnx_models import linear_model, load, tiny_card
from skimage import data

from glimpse.errors import InvalidParams
from glimpse.params import parse_params
from worker.engine.explain import explain
from worker.engine.input_grid import InputGrid
from worker.engine.integrated_gradients import path
from worker.results import COMPLETENESS_TOLERANCE

SIZE = 16
CLASSES = [0, 2]


def image() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def ig_params(**options):
    extra = options.pop("params", {})
    return parse_params(
        {
            "method": "integrated_gradients",
            "targets": {"classes": CLASSES},
            "segmentation": {"algorithm": "grid", "cell_size": 8},
            "output_space": "logit",
            "integrated_gradients": options,
            **extra,
        }
    )


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory):
    w = np.random.default_rng(3).normal(size=(3, SIZE, SIZE, 3)).astype(np.float32)
    path_ = linear_model(tmp_path_factory.mktemp("ig") / "linear.onnx", w)
    return load(path_, tiny_card(SIZE, SIZE, 3)), w


@pytest.mark.parametrize("rule", ["riemann", "gauss_legendre"])
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_on_a_linear_model_ig_is_the_input_difference_times_the_weights(
    linear, rule: str, steps: int
) -> None:
    model, w = linear
    params = ig_params(steps=steps, rule=rule, params={"background": {"kind": "mean"}})
    e = explain(image(), model, params, batch_size=5)
    grid = InputGrid(model.card, (SIZE, SIZE))
    x = grid.image(image()).astype(np.float64)
    x_base = grid.image(np.broadcast_to(image().mean(axis=(0, 1)), image().shape))
    exact = (x - x_base)[None] * np.moveaxis(w, -1, 0)[CLASSES]  # (k, 3, h, w)
    per_pixel = exact.sum(axis=1)
    cells = (np.arange(SIZE)[:, None] // 8) * 2 + np.arange(SIZE)[None, :] // 8
    expected = np.stack([np.bincount(cells.ravel(), p.ravel(), minlength=4) for p in per_pixel])
    np.testing.assert_allclose(e.weights, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(e.pixel_maps, per_pixel, rtol=1e-4, atol=1e-4)
    # completeness is exact for a linear model, whatever the steps
    assert e.attribution_sum is not None and e.target_scores is not None
    np.testing.assert_allclose(
        e.attribution_sum, e.target_scores - e.base_value, rtol=1e-4, atol=1e-4
    )
    assert e.backward_passes == steps * len(CLASSES)
    assert e.model_evaluations == steps * len(CLASSES) + 2  # and f(image), f(baseline)


def test_quadrature_weights_sum_to_one_and_integrate_polynomials() -> None:
    for rule in ("riemann", "gauss_legendre"):
        alphas, weights = path(20, rule)
        assert np.isclose(weights.sum(), 1.0)
        assert ((alphas > 0) & (alphas < 1)).all()
    alphas, weights = path(5, "gauss_legendre")
    assert np.isclose(weights @ alphas**9, 1 / 10)  # exact up to degree 2·5 − 1


@pytest.mark.parametrize("noise_samples", [0, 3])
def test_batch_size_does_not_change_the_numbers(linear, noise_samples: int) -> None:
    model, _ = linear
    params = ig_params(steps=9, noise_samples=noise_samples, params={"output_space": "probability"})
    runs = [explain(image(), model, params, batch_size=b) for b in (1, 4, 64)]
    for other in runs[1:]:
        np.testing.assert_allclose(other.weights, runs[0].weights, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(other.pixel_maps, runs[0].pixel_maps, rtol=1e-5, atol=1e-7)


def test_smoothgrad_noise_depends_on_the_seed(linear) -> None:
    model, _ = linear
    params = ig_params(steps=4, noise_samples=2, params={"output_space": "probability"})
    a = explain(image(), model, params, batch_size=8)
    b = explain(image(), model, params.model_copy(update={"seed": 1}), batch_size=8)
    assert not np.allclose(a.weights, b.weights)
    assert a.backward_passes == 4 * 2 * len(CLASSES)


def test_a_noise_baseline_is_drawn_from_the_seed(linear) -> None:
    model, _ = linear
    params = ig_params(steps=2, params={"background": {"kind": "noise"}})
    a, b = (explain(image(), model, params, batch_size=8) for _ in range(2))
    np.testing.assert_array_equal(a.weights, b.weights)
    c = explain(image(), model, params.model_copy(update={"seed": 5}), batch_size=8)
    assert not np.allclose(a.base_value, c.base_value)


def test_without_autodiff_the_method_is_refused_naming_what_is_missing(linear, monkeypatch) -> None:
    model, _ = linear
    monkeypatch.setattr(model, "gradients", lambda: None)  # what it answers without torch
    for method in ("integrated_gradients", "xrai"):
        params = ig_params(steps=2).model_copy(update={"method": method})
        with pytest.raises(InvalidParams) as info:
            explain(image(), model, params, batch_size=4)
        assert info.value.status == 422
        assert info.value.errors[0]["loc"] == ["params", "method"]
        assert "PyTorch" in info.value.detail and "glimpse[torch]" in info.value.detail


def test_completeness_holds_on_efficientnet(tmp_path: Path) -> None:
    """On a real network the quadrature closes the integral to within the tolerance the
    result warns above, at the steps the README recommends raising to."""
    model = load(EFFICIENTNET, efficientnet_card())
    photo = data.chelsea()[::2, ::2]
    params = parse_params(
        {
            "method": "integrated_gradients",
            "segmentation": {"algorithm": "slic", "n_segments": 20},
            "integrated_gradients": {"steps": 200},
            "quality": False,
        }
    )
    e = explain(photo, model, params, batch_size=32)
    assert e.attribution_sum is not None and e.target_scores is not None
    difference = e.target_scores - e.base_value
    gap = np.abs(e.attribution_sum - difference) / np.abs(difference)
    assert gap.max() < COMPLETENESS_TOLERANCE / 2, (e.attribution_sum, difference)
    np.testing.assert_allclose(e.weights.sum(axis=1), e.attribution_sum, rtol=1e-6)
