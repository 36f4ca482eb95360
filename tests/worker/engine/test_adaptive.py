"""num_samples "auto": early stop on an easy model, a true tie settled as a tie, the whole
max_samples on one that cannot settle, reproducible, batch-size independent, honest
progress."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_models import _io, _save, interaction_model, load, segment_means_model, tiny_card

from glimpse.params import parse_params
from worker.engine.explain import explain
from worker.engine.kernel_shap import KernelShap
from worker.engine.lime import Lime
from worker.engine.rounds import first_budget
from worker.engine.segment import segment

MAX = 1000


def auto(method: str, **extra: object):
    return parse_params(
        {
            "method": method,
            "num_samples": "auto",
            "max_samples": MAX,
            "segmentation": {"algorithm": "grid", "cell_size": 4},
            "targets": {"classes": [0]},
            "output_space": "logit",
            "quality": False,
            **extra,
        }
    )


@pytest.fixture(scope="module")
def easy(tmp_path_factory: pytest.TempPathFactory):
    """Additive, five dominant superpixels: settled after two rounds."""
    rng = np.random.default_rng(3)
    img = rng.integers(100, 256, (16, 16, 3), dtype=np.uint8)
    segments = segment(img, auto("lime").segmentation)
    a = np.r_[np.array([5.0, 4.0, 3.0, 2.0, 1.5]), rng.uniform(0, 0.2, 11)]
    path = segment_means_model(tmp_path_factory.mktemp("easy") / "m.onnx", segments, a)
    return img, load(path, tiny_card(16, 16, 1))


@pytest.fixture(scope="module")
def tied(tmp_path_factory: pytest.TempPathFactory):
    """A uniform image and f = r + 2r², r = mean of the image: all 16 superpixels are
    exchangeable (equal true weights), so the top 5 are a tie that no budget separates."""
    img = np.full((16, 16, 3), 200, np.uint8)
    everything = np.ones((16, 16), bool)
    path = interaction_model(tmp_path_factory.mktemp("tied") / "m.onnx", [everything] * 3)
    return img, load(path, tiny_card(16, 16, 1))


def wiggly_model(path, height: int, width: int, k: float):
    """One class: sin(k · mean of the image), a score that oscillates with what is shown."""
    inp, out = _io(height, width, 1)
    w = np.full((3 * height * width, 1), k / (3 * height * width), np.float32)
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["r"]),
        helper.make_node("Sin", ["r"], ["y"]),
    ]
    initializer = [numpy_helper.from_array(w, "W")]
    return _save(helper.make_graph(nodes, "wiggly", [inp], [out], initializer=initializer), path)


@pytest.fixture(scope="module")
def hopeless(tmp_path_factory: pytest.TempPathFactory):
    """A uniform image and f = sin(40 · mean), five periods between the background and the
    image, which end at nearly the same score: the 16 exchangeable superpixels' true weights
    are equal and near 0, and every interaction order is present, so estimates stay noise
    (standard errors larger than the weights' spread, δ = 1 % of Σ|weights| below the noise):
    neither separated nor measured to within δ in 1000 evaluations."""
    img = np.full((16, 16, 3), 200, np.uint8)
    path = wiggly_model(tmp_path_factory.mktemp("hopeless") / "m.onnx", 16, 16, 40.06)
    return img, load(path, tiny_card(16, 16, 1))


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_auto_stops_early_on_an_easy_model(easy, method: str) -> None:
    img, model = easy
    e = explain(img, model, auto(method), batch_size=64)
    assert e.converged is True and e.rounds == 2
    assert e.model_evaluations <= 300 < MAX  # 200, then 300 cumulative
    assert e.top_separated is not None and e.top_separated.all()
    assert set(np.argsort(-e.weights[0])[:5]) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_auto_runs_to_max_samples_when_it_cannot_settle(hopeless, method: str) -> None:
    img, model = hopeless
    e = explain(img, model, auto(method), batch_size=64)
    assert e.converged is False
    assert e.rounds == 5  # 200, 300, 450, 676, 1000
    assert 0.9 * MAX <= e.model_evaluations <= MAX
    assert e.top_separated is not None and not e.top_separated.any()


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_a_wider_tolerance_stops_sooner_at_the_resolution_it_reached(hopeless, method: str) -> None:
    """params.tolerance is the promise auto keeps: where 1 % of Σ|weights| is out of reach
    within MAX, a zone wide enough stops in an earlier round with top_resolution inside it."""
    img, model = hopeless
    strict = explain(img, model, auto(method), batch_size=64)
    assert strict.top_resolution is not None and strict.top_resolution[0] > 0.01
    tolerance = 1.5 * float(strict.top_resolution[0])  # reachable: it was at MAX already
    wide = explain(img, model, auto(method, tolerance=tolerance), batch_size=64)
    assert wide.converged is True and wide.rounds is not None and strict.rounds is not None
    assert wide.rounds < strict.rounds and wide.model_evaluations < strict.model_evaluations
    assert wide.top_resolution is not None and wide.top_resolution[0] <= tolerance


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_auto_settles_a_true_tie_as_a_tie(tied, method: str) -> None:
    """Equal true weights are never separated, but their differences are measured to within
    the indifference zone: settled within three rounds (450 evaluations), the tie reported
    by top_separated."""
    img, model = tied
    e = explain(img, model, auto(method), batch_size=64)
    assert e.converged is True and e.rounds <= 3 and e.model_evaluations <= 450
    assert e.top_separated is not None and not e.top_separated.any()


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_auto_is_reproducible_and_batch_size_independent(tied, method: str) -> None:
    """On the tied model (the wiggly one's float32 scores move with the batch size)."""
    img, model = tied
    runs = [explain(img, model, auto(method, seed=4), batch_size=b) for b in (1, 7, 64, 64)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.weights, runs[0].weights)
        np.testing.assert_array_equal(other.weights_se, runs[0].weights_se)
        assert (other.rounds, other.model_evaluations) == (
            runs[0].rounds,
            runs[0].model_evaluations,
        )
    different = explain(img, model, auto(method, seed=5), batch_size=64)
    assert not np.array_equal(different.weights, runs[0].weights)


def test_progress_reports_rounds_against_max_samples(easy) -> None:
    img, model = easy
    seen: list[tuple[int, int]] = []
    e = explain(
        img, model, auto("kernel_shap"), batch_size=32, progress=lambda d, t: seen.append((d, t))
    )
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[0] == 1
    assert all(t == MAX for _, t in seen[:-1])
    assert seen[-1] == (e.model_evaluations, e.model_evaluations)


@pytest.mark.parametrize("estimator", [Lime(), KernelShap()], ids=["lime", "kernel_shap"])
def test_growing_keeps_earlier_draws(estimator) -> None:
    """A round's design contains the previous round's random coalitions (Kernel SHAP: those
    whose sizes are still sampled), so their evaluations are reused."""
    rng = np.random.default_rng(0)
    first = estimator.grow(None, 12, 200, rng)
    second = estimator.grow(first, 12, 300, rng)
    rows = {r.tobytes() for r in second.z}
    kept = [r for r in first.z if r.tobytes() in rows]
    assert len(kept) >= 0.9 * len(first.z)
    assert len(second.z) == (300 if isinstance(estimator, Lime) else 298)
    assert first_budget(12, 20_000) == 200 and first_budget(100, 20_000) == 400


@pytest.mark.parametrize(("m", "budget"), [(12, 300), (12, 1001), (30, 500), (6, 40)])
def test_the_stratified_design_is_distinct_paired_and_carries_the_kernel_mass(
    m: int, budget: int
) -> None:
    c = KernelShap().sample(m, budget, np.random.default_rng(0))
    assert len(c.z) <= budget - 2
    keys = [r.tobytes() for r in c.z]
    assert len(set(keys)) == len(keys)  # without replacement
    assert c.weights.sum() == pytest.approx(1.0)  # the whole Shapley kernel mass
    random = c.groups >= 0
    assert c.strata is not None and c.fraction is not None
    assert np.all(c.strata[~random] == -1) and np.all((c.fraction > 0) <= random)
    for g in np.unique(c.groups[random]):
        rows = c.z[c.groups == g]
        assert len(rows) == 1 or np.array_equal(rows[0], ~rows[1])
    sizes = np.minimum(c.z.sum(axis=1), m - c.z.sum(axis=1))
    for h in np.unique(c.strata[random]):  # one size per stratum, equal weights in it
        assert len(set(sizes[c.strata == h])) == 1
        assert len(set(c.weights[c.strata == h])) == 1


def test_standard_errors_apply_the_finite_population_correction() -> None:
    """M = 6, budget 60: sizes 1 and 2 are enumerated, 8 of the 10 pairs of size 3 drawn:
    their variance is scaled by 1 − 8/10."""
    c = KernelShap().sample(6, 60, np.random.default_rng(0))
    random = c.groups >= 0
    assert c.fraction is not None and np.allclose(c.fraction[random], 0.8)
    z = c.z.astype(float)
    y = (z @ np.arange(6.0) + 2 * z[:, 0] * z[:, 1] * z[:, 2])[:, None]
    f_full, f_empty = np.array([17.0]), np.array([0.0])
    with_fpc = KernelShap().fit(c, y, f_full, f_empty).se
    without = KernelShap().fit(replace(c, fraction=None), y, f_full, f_empty).se
    assert with_fpc is not None and without is not None and without.min() > 0
    np.testing.assert_allclose(with_fpc, np.sqrt(0.2) * without, rtol=1e-10)
