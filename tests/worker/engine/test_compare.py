"""params.methods: several methods in one job on the same superpixels and targets. On an
additive model every exact method finds the same importances, so their ranks agree
perfectly; each method's numbers are those it gives alone; the progress runs once from 0 to
the total across the methods."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_models import conv_gap_model, load, segment_means_model, tiny_card

from glimpse.errors import InvalidParams
from glimpse.params import parse_params
from worker.engine.compare import TOP_K, MethodRun, agreement
from worker.engine.explain import explain

SIDE, CELL = 64, 16
CELLS = (SIDE // CELL) ** 2
#: Exact on an additive model: Kernel SHAP (a noise-free regression), Owen values, occlusion
#: with windows on the grid's cells, Integrated Gradients from black on a linear model.
EXACT = ["kernel_shap", "partition_shap", "occlusion", "integrated_gradients"]


def photo() -> np.ndarray:
    return np.random.default_rng(5).integers(30, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def cells() -> np.ndarray:
    rows, cols = np.indices((SIDE, SIDE)) // CELL
    return rows * (SIDE // CELL) + cols


@pytest.fixture(scope="module")
def additive(tmp_path_factory: pytest.TempPathFactory):
    a = np.random.default_rng(11).normal(size=CELLS)
    path = segment_means_model(tmp_path_factory.mktemp("compare") / "additive.onnx", cells(), a)
    return load(path, tiny_card(SIDE, SIDE, 1))


def compared(methods: list[str], **extra: object):
    return parse_params(
        {
            "methods": methods,
            "num_samples": 400,
            "targets": {"classes": [0]},
            "segmentation": {"algorithm": "grid", "cell_size": CELL},
            "occlusion": {"window": CELL, "stride": CELL},
            "integrated_gradients": {"steps": 4},
            "output_space": "logit",
            **extra,
        }
    )


def test_exact_methods_agree_on_an_additive_model_and_cost_what_each_spends(additive) -> None:
    seen: list[tuple[int, int]] = []
    e = explain(
        photo(),
        additive,
        compared([*EXACT, "lime"]),
        batch_size=16,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert e.comparison is not None
    runs = {r.method: r for r in e.comparison.runs}
    assert [r.method for r in e.comparison.runs] == [*EXACT, "lime"]
    # the shared truth: each cell's contribution a_j · mean_j(x) over a black background
    truth = runs["kernel_shap"].importance[0]
    for method in EXACT:
        np.testing.assert_allclose(runs[method].importance[0], truth, rtol=1e-4, atol=1e-6)
    pairs = {(p.a, p.b): p for p in e.comparison.agreement}
    assert len(pairs) == 5 * 4 // 2
    for (a, b), pair in pairs.items():
        assert pair.k == min(TOP_K, CELLS)
        if a in EXACT and b in EXACT:
            assert pair.spearman[0] == pytest.approx(1.0) and pair.top_overlap[0] == 1.0
    assert pairs[("kernel_shap", "lime")].spearman[0] > 0.9  # LIME's ridge shrinks, in order
    # the job's evaluations: every method's, the shared f(image) once
    spent = sum(r.model_evaluations for r in e.comparison.runs) - (len(runs) - 1)
    assert e.model_evaluations == spent
    assert runs["occlusion"].model_evaluations == CELLS + 1
    assert runs["integrated_gradients"].backward_passes == 4
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1] == (spent, spent)
    # quality on the shared superpixels: equal importances give equal curves
    q = {
        m: (r.quality.deletion_auc[0], r.quality.insertion_auc[0])
        for m, r in runs.items()
        if r.quality
    }
    assert len(q) == 5 and len({tuple(np.round(v, 9)) for m, v in q.items() if m in EXACT}) == 1
    assert all(r.maps.shape == (1, SIDE, SIDE) for r in runs.values())


def test_each_method_gives_in_a_comparison_what_it_gives_alone(additive) -> None:
    methods = ["lime", "kernel_shap", "partition_shap"]
    together = explain(photo(), additive, compared(methods), batch_size=7)
    assert together.comparison is not None
    for run, one in zip(together.comparison.runs, compared(methods).each_method(), strict=True):
        alone = explain(photo(), additive, one, batch_size=32)
        np.testing.assert_allclose(run.importance, alone.weights, rtol=1e-9, atol=1e-12)
    # the result's own explanation is the first method's
    first = explain(photo(), additive, compared(methods).each_method()[0], batch_size=5)
    np.testing.assert_allclose(together.weights, first.weights, rtol=1e-9, atol=1e-12)
    assert together.quality is not None and first.quality is not None
    np.testing.assert_allclose(together.quality.deletion_auc, first.quality.deletion_auc)


def test_region_methods_are_read_on_the_shared_superpixels(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path, _ = conv_gap_model(tmp_path_factory.mktemp("cnn") / "cnn.onnx", SIDE, SIDE)
    cnn = load(path, tiny_card(SIDE, SIDE, 3))
    e = explain(photo(), cnn, compared(["gradcam", "occlusion"], quality=False), batch_size=16)
    assert e.comparison is not None
    gradcam, occlusion = e.comparison.runs
    assert gradcam.importance.shape == occlusion.importance.shape == (1, CELLS)
    # gradcam's map (feature cells, upsampled) averaged over each grid cell
    maps = gradcam.maps[0]
    expected = [maps[cells() == j].mean() for j in range(CELLS)]
    np.testing.assert_allclose(gradcam.importance[0], expected, rtol=1e-5, atol=1e-7)
    assert gradcam.quality is None and e.quality is None
    # the job's own explanation is gradcam's, its weights over the shared superpixels
    assert e.n_segments == CELLS and e.pixel_maps is not None
    np.testing.assert_array_equal(e.weights, gradcam.importance)
    np.testing.assert_array_equal(e.segments, cells())


def test_agreement_of_reversed_ranks_is_minus_one_and_of_constants_zero() -> None:
    def run(values: list[float]) -> MethodRun:
        v = np.asarray([values], np.float64)
        return MethodRun("m", 0.0, 1, None, v, None, np.zeros((1, 1, 1), np.float32))

    up = run([float(i) for i in range(20)])
    pair = agreement(up, run([float(-i) for i in range(20)]))
    assert pair.spearman[0] == pytest.approx(-1.0) and pair.top_overlap[0] == 0.0
    assert agreement(up, run([1.0] * 20)).spearman[0] == 0.0


def test_a_comparison_is_refused_as_its_methods_would_be(additive) -> None:
    with pytest.raises(InvalidParams) as info:  # occlusion's 16 windows need 17 evaluations
        explain(photo(), additive, compared(["lime", "occlusion"], num_samples=10), batch_size=8)
    assert "occlusion" in info.value.detail
