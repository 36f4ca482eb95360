"""Kernel SHAP: exact Shapley values with full enumeration, efficiency, the sampler."""

from __future__ import annotations

from itertools import combinations, product
from math import comb, factorial
from pathlib import Path

import numpy as np
import pytest
from onnx_models import interaction_model, load, segment_means_model, tiny_card

from glimpse.params import ExplainParams, parse_params
from worker.engine.explain import explain
from worker.engine.input_grid import InputGrid
from worker.engine.kernel_shap import KernelShap
from worker.engine.perturb import Composer, background_image
from worker.engine.segment import segment


def shap_params(num_samples: int, cell: int = 4, **extra: object) -> ExplainParams:
    return parse_params(
        {
            "method": "kernel_shap",
            "num_samples": num_samples,
            "segmentation": {"algorithm": "grid", "cell_size": cell},
            "targets": {"classes": [0]},
            "output_space": "logit",
            **extra,
        }
    )


def image(height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def brute_force_shapley(img: np.ndarray, model, params: ExplainParams) -> tuple[np.ndarray, float]:
    """Exact Shapley values by evaluating the model on all 2^M coalitions."""
    segments = segment(img, params.segmentation)
    m = int(segments.max()) + 1
    grid = InputGrid(model.card, img.shape[:2])
    compose = Composer(
        grid.image(img),
        grid.image(background_image(img, params.background)),
        grid.labels(segments),
    )
    z = np.array(list(product([False, True], repeat=m)))[:, ::-1]  # row r = bits of r
    f = np.concatenate([model(compose(z[i : i + 512]))[:, 0] for i in range(0, len(z), 512)])
    f = f.astype(np.float64)
    index = z @ (1 << np.arange(m))
    f_by_index = np.empty(2**m)
    f_by_index[index] = f
    phi = np.zeros(m)
    for j in range(m):
        without = index[~z[:, j]]
        sizes = z[~z[:, j]].sum(axis=1)
        weight = np.array([factorial(s) * factorial(m - s - 1) / factorial(m) for s in sizes])
        phi[j] = np.sum(weight * (f_by_index[without | (1 << j)] - f_by_index[without]))
    return phi, float(f_by_index[0])


@pytest.fixture(scope="module")
def additive(tmp_path_factory: pytest.TempPathFactory):
    """16x8 image, 4x4 cells -> M = 8 superpixels; f = Σ a_j · mean_j."""
    img = image(16, 8)
    segments = segment(img, shap_params(256).segmentation)
    a = np.random.default_rng(2).normal(size=8)
    path = segment_means_model(tmp_path_factory.mktemp("add") / "m.onnx", segments, a)
    model = load(path, tiny_card(16, 8, 1))
    means = np.array([img[segments == j].mean() / 255 for j in range(8)])
    return img, model, a, means


def test_exact_shapley_values_of_an_additive_model(additive) -> None:
    img, model, a, means = additive
    e = explain(img, model, shap_params(2**8), batch_size=64)
    # black background: b̄_j = 0, so φ_j = a_j · (x̄_j − 0)
    np.testing.assert_allclose(e.weights[0], a * means, atol=1e-6)
    assert e.base_value[0] == pytest.approx(0.0, abs=1e-7)
    assert e.model_evaluations == 2**8
    assert e.r2 is None


def test_exact_shapley_values_with_a_mean_background(additive) -> None:
    img, model, a, means = additive
    e = explain(img, model, shap_params(2**8, background={"kind": "mean"}), batch_size=64)
    background = img.reshape(-1, 3).astype(np.float64).mean(axis=0).mean() / 255
    np.testing.assert_allclose(e.weights[0], a * (means - background), atol=1e-6)


def test_additive_model_with_sampled_coalitions_is_still_exact(tmp_path: Path) -> None:
    """M = 32 with 600 of 2^32 coalitions: a linear model is fitted exactly by any full-rank
    design, so the stated tolerance is 1e-5."""
    img = image(32, 16, seed=3)
    params = shap_params(600)
    segments = segment(img, params.segmentation)
    a = np.random.default_rng(4).normal(size=32)
    model = load(segment_means_model(tmp_path / "m.onnx", segments, a), tiny_card(32, 16, 1))
    e = explain(img, model, params, batch_size=64)
    means = np.array([img[segments == j].mean() / 255 for j in range(32)])
    np.testing.assert_allclose(e.weights[0], a * means, atol=1e-5)


def regions_for(height: int, width: int) -> list[np.ndarray]:
    masks = [np.zeros((height, width), bool) for _ in range(3)]
    masks[0][0:4, 0:4] = True  # superpixel 0
    masks[1][4:8, 0:8] = True  # superpixels 2 and 3 (two cells)
    masks[2][8:12, 4:8] = True  # superpixel 5
    return masks


def test_non_additive_model_matches_brute_force_shapley(tmp_path: Path) -> None:
    img = image(16, 8, seed=5)
    model = load(interaction_model(tmp_path / "m.onnx", regions_for(16, 8)), tiny_card(16, 8, 1))
    params = shap_params(2**8)
    exact, f_empty = brute_force_shapley(img, model, params)
    e = explain(img, model, params, batch_size=64)
    np.testing.assert_allclose(e.weights[0], exact, atol=1e-6)
    assert e.base_value[0] == pytest.approx(f_empty, abs=1e-7)
    # the superpixels outside every region get nothing; the interaction is shared
    assert np.all(np.abs(exact[[1, 4, 6, 7]]) < 1e-7)
    assert np.all(exact[[0, 2, 3, 5]] > 0.01)


def test_non_additive_model_sampled_budget_within_tolerance(tmp_path: Path) -> None:
    """M = 16 with 1000 of 65536 coalitions: within 0.1 · max|φ| of the exact values."""
    img = image(16, 16, seed=6)
    model = load(interaction_model(tmp_path / "m.onnx", regions_for(16, 16)), tiny_card(16, 16, 1))
    params = shap_params(1000)
    exact, _ = brute_force_shapley(img, model, params)
    e = explain(img, model, params, batch_size=64)
    assert np.abs(e.weights[0] - exact).max() < 0.1 * np.abs(exact).max()
    assert set(np.argsort(-e.weights[0])[:4]) == set(np.argsort(-exact)[:4])


def test_efficiency_base_value_plus_weights_is_the_prediction(tmp_path: Path) -> None:
    img = image(16, 16, seed=7)
    model = load(interaction_model(tmp_path / "m.onnx", regions_for(16, 16)), tiny_card(16, 16, 1))
    e = explain(img, model, shap_params(300), batch_size=32)
    f_x = model(InputGrid(model.card, (16, 16)).image(img)[None])[0, 0]
    assert e.weights[0].sum() + e.base_value[0] == pytest.approx(float(f_x), abs=1e-6)


def test_same_seed_same_numbers_different_seed_different_numbers(tmp_path: Path) -> None:
    img = image(16, 16, seed=8)
    model = load(interaction_model(tmp_path / "m.onnx", regions_for(16, 16)), tiny_card(16, 16, 1))
    first = explain(img, model, shap_params(200, seed=1), batch_size=64)
    again = explain(img, model, shap_params(200, seed=1), batch_size=64)
    other = explain(img, model, shap_params(200, seed=2), batch_size=64)
    np.testing.assert_array_equal(first.weights, again.weights)
    assert not np.array_equal(first.weights, other.weights)


# --- the sampler ----------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 3, 5, 8, 10])
def test_budget_of_2_to_the_m_enumerates_every_coalition_with_shapley_kernel_weights(
    m: int,
) -> None:
    c = KernelShap().sample(m, 2**m, np.random.default_rng(0))
    assert c.needs_empty
    rows = {tuple(r) for r in c.z}
    assert len(c.z) == len(rows) == 2**m - 2  # every proper, non-empty coalition once
    sizes = c.z.sum(axis=1)
    n_of_size = np.array([comb(m, int(s)) for s in sizes])
    kernel = (m - 1) / (n_of_size * sizes * (m - sizes))  # per-coalition Shapley kernel
    np.testing.assert_allclose(c.weights / c.weights.sum(), kernel / kernel.sum(), rtol=1e-12)


@pytest.mark.parametrize(("m", "budget"), [(20, 100), (20, 1000), (50, 501), (6, 30)])
def test_sampled_coalitions_fit_the_budget_and_come_with_complements(m: int, budget: int) -> None:
    c = KernelShap().sample(m, budget, np.random.default_rng(0))
    assert len(c.z) == budget - 2
    sizes = c.z.sum(axis=1)
    assert sizes.min() >= 1 and sizes.max() <= m - 1
    assert np.all(c.weights > 0)
    complements = {tuple(~r) for r in c.z}
    paired = sum(tuple(r) in complements for r in c.z)
    assert paired >= len(c.z) - 1


def test_tiny_budget_spreads_the_difference_evenly() -> None:
    c = KernelShap().sample(5, 2, np.random.default_rng(0))
    assert len(c.z) == 0
    fit = KernelShap().fit(c, np.zeros((0, 1)), np.array([1.0]), np.array([0.5]))
    np.testing.assert_allclose(fit.weights, [[0.1] * 5])


# --- the order-3 surrogate -------------------------------------------------------------------
def exact_of_table(values: np.ndarray, m: int) -> np.ndarray:
    """Exact Shapley values of a game given on all 2^m coalitions (index = bits of z)."""
    index = np.arange(2**m)
    sizes = np.zeros(2**m, np.intp)
    for j in range(m):
        sizes += (index >> j) & 1
    coef = np.array([factorial(s) * factorial(m - s - 1) / factorial(m) for s in range(m)])
    phi = np.zeros(m)
    for j in range(m):
        without = index[(index >> j) & 1 == 0]
        phi[j] = np.sum(coef[sizes[without]] * (values[without | (1 << j)] - values[without]))
    return phi


def every_coalition(m: int) -> np.ndarray:
    return (np.arange(2**m)[:, None] >> np.arange(m)[None, :]) & 1 == 1


def sigmoid_game(m: int, seed: int):
    """A probability-like game: sigmoid of main effects (one dominant) and random pairs, so
    every interaction order is present."""
    rng = np.random.default_rng(seed)
    a = rng.standard_t(2, m) * 0.8
    a[0] += 4.0
    c = np.triu(rng.normal(0, 0.6, (m, m)) * (rng.random((m, m)) < 0.15), 1)

    def f(z: np.ndarray) -> np.ndarray:
        x = z.astype(np.float64)
        return (1 / (1 + np.exp(3 - x @ a - np.einsum("ni,ij,nj->n", x, c, x))))[:, None]

    return f


def fit_game(estimator: KernelShap, f, m: int, budget: int, seed: int):
    c = estimator.sample(m, budget, np.random.default_rng(seed))
    f_full, f_empty = f(np.ones((1, m), bool))[0], f(np.zeros((1, m), bool))[0]
    return estimator.fit(c, f(c.z), f_full, f_empty)


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize(("m", "budget"), [(12, 200), (20, 400)])
def test_a_game_with_only_pairwise_interactions_is_recovered_exactly(
    order: int, m: int, budget: int
) -> None:
    """v(S) = c + Σ a_i + Σ b_ij over S: φ_i = a_i + ½ Σ_j b_ij, from budget ≪ 2^m (paired
    sampling makes the even part drop out of the regression; at m = 20 the order-3 fit
    screens 12 members)."""
    rng = np.random.default_rng(m)
    a = rng.normal(size=m)
    b = np.triu(rng.normal(size=(m, m)), 1)

    def f(z: np.ndarray) -> np.ndarray:
        x = z.astype(np.float64)
        return (0.3 + x @ a + np.einsum("ni,ij,nj->n", x, b, x))[:, None]

    fit = fit_game(KernelShap(order=order), f, m, budget, seed=0)
    np.testing.assert_allclose(fit.weights[0], a + 0.5 * (b + b.T).sum(axis=1), atol=1e-8)
    assert fit.se is not None and fit.se.max() < 1e-6


def test_order_3_recovers_a_three_way_game_far_better_than_order_1() -> None:
    """Sparse three-way interactions: not exact (the ridge shrinks the triples' terms), but a
    fraction of order 1's error."""
    m = 12
    rng = np.random.default_rng(1)
    a = rng.normal(size=m)
    triples = np.array([t for t in combinations(range(m), 3)])
    d = rng.normal(size=len(triples)) * (rng.random(len(triples)) < 0.1)

    def f(z: np.ndarray) -> np.ndarray:
        x = z.astype(np.float64)
        return (x @ a + (x[:, triples].prod(axis=2) @ d))[:, None]

    exact = a.copy()
    np.add.at(exact, triples.ravel(), np.repeat(d / 3, 3))
    errors = {
        order: np.linalg.norm(fit_game(KernelShap(order=order), f, m, 1000, 0).weights[0] - exact)
        for order in (1, 3)
    }
    assert errors[3] < 0.35 * errors[1]


def test_error_shrinks_with_the_budget_and_order_3_beats_order_1() -> None:
    """m = 14 (exact values from all 16384 coalitions), mean over 4 seeds."""
    m = 14
    f = sigmoid_game(m, 3)
    exact = exact_of_table(f(every_coalition(m))[:, 0], m)

    def error(order: int, budget: int) -> float:
        fits = [fit_game(KernelShap(order=order), f, m, budget, s) for s in range(4)]
        return float(np.mean([np.linalg.norm(x.weights[0] - exact) for x in fits]))

    third = [error(3, n) for n in (300, 1200, 4800)]
    first = [error(1, n) for n in (300, 1200, 4800)]
    assert third[0] > 1.5 * third[1] > 1.5**2 * third[2]
    assert all(t < o for t, o in zip(third, first, strict=True))


def test_order_3_is_reproducible_and_keeps_efficiency() -> None:
    f = sigmoid_game(12, 4)
    one, again, other = (fit_game(KernelShap(), f, 12, 500, s) for s in (7, 7, 8))
    np.testing.assert_array_equal(one.weights, again.weights)
    np.testing.assert_array_equal(one.se, again.se)
    assert not np.array_equal(one.weights, other.weights)
    delta = f(np.ones((1, 12), bool))[0, 0] - f(np.zeros((1, 12), bool))[0, 0]
    assert one.weights[0].sum() == pytest.approx(delta, abs=1e-12)


def test_targets_screen_their_own_superpixels_above_12() -> None:
    """m = 20: each target's order-3 fit takes the 12 superpixels of its own largest order-1
    weights; two targets at once equal each fitted alone."""
    m = 20
    first, second = sigmoid_game(m, 5), sigmoid_game(m, 6)

    def both(z: np.ndarray) -> np.ndarray:
        return np.hstack([first(z), second(z)])

    together = fit_game(KernelShap(), both, m, 600, 0)
    for t, f in enumerate((first, second)):
        alone = fit_game(KernelShap(), f, m, 600, 0)
        np.testing.assert_allclose(together.weights[t], alone.weights[0], atol=1e-12)
        assert together.se is not None and alone.se is not None
        np.testing.assert_allclose(together.se[t], alone.se[0], atol=1e-12)


@pytest.mark.parametrize("m", [12, 20])
def test_the_fit_does_not_depend_on_how_its_rows_are_chunked(
    m: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order-3 design and the sandwich are reduced a chunk of rows at a time (flat
    memory): chunks of a few rows, units of a pair cut at no chunk edge, give the weights
    and standard errors of one chunk holding every row."""
    from worker.engine import regression

    f = sigmoid_game(m, 3)
    whole = fit_game(KernelShap(), f, m, 700, 0)
    monkeypatch.setattr(regression, "CHUNK", 7 * 300)  # ~7 rows of a 300-column design
    chunked = fit_game(KernelShap(), f, m, 700, 0)
    np.testing.assert_allclose(chunked.weights, whole.weights, rtol=1e-9, atol=1e-12)
    assert chunked.se is not None and whole.se is not None
    np.testing.assert_allclose(chunked.se, whole.se, rtol=1e-7, atol=1e-12)
    assert (chunked.separated == whole.separated).all()
    np.testing.assert_allclose(chunked.resolution, whole.resolution, rtol=1e-7, atol=1e-12)
