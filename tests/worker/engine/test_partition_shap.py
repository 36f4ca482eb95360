"""Partition SHAP: shap's split tree, efficiency, the region that matters, Owen = Shapley for
an additive model, the exact Owen recursion at full budget, batch-size independence."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from onnx_models import interaction_model, load, region_model, segment_means_model, tiny_card

from glimpse.hierarchy import level_maps
from glimpse.params import ExplainParams, parse_params
from worker.engine.explain import explain
from worker.engine.input_grid import InputGrid
from worker.engine.partition_shap import depths, partition_tree
from worker.engine.perturb import Composer, background_image
from worker.engine.segment import segment


def partition_params(num_samples: int, cell: int = 4, **extra: object) -> ExplainParams:
    return parse_params(
        {
            "method": "partition_shap",
            "num_samples": num_samples,
            "segmentation": {"algorithm": "grid", "cell_size": cell},
            "targets": {"classes": [0]},
            "output_space": "logit",
            "quality": False,
            **extra,
        }
    )


def image(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def leaves(tree, node: int) -> frozenset[int]:
    return frozenset(int(i) for i in tree.order[tree.start[node] : tree.stop[node]])


def test_the_tree_is_shaps_axis_aligned_split_at_cell_resolution() -> None:
    cells = segment(
        image(), parse_params({"segmentation": {"algorithm": "grid", "cell_size": 4}}).segmentation
    )
    tree = partition_tree(cells)
    m = 16
    assert tree.children.shape == (15, 2) and tree.root == m
    # Rows split first (height >= width), then columns, alternating down to single cells.
    left, right = (int(c) for c in tree.children[0])
    assert leaves(tree, left) == frozenset(range(8)) and leaves(tree, right) == frozenset(
        range(8, 16)
    )
    ll, lr = (int(c) for c in tree.children[left - m])
    assert leaves(tree, ll) == frozenset({0, 1, 4, 5}) and leaves(tree, lr) == frozenset(
        {2, 3, 6, 7}
    )
    assert (depths(tree)[:m] == 4).all()
    assert tree.area[tree.root] == 256


def test_irregular_superpixels_get_a_tree_too() -> None:
    seg = segment(
        image(), parse_params({"segmentation": {"algorithm": "slic", "n_segments": 9}}).segmentation
    )
    tree = partition_tree(seg)
    m = int(seg.max()) + 1
    assert sorted(tree.order.tolist()) == list(range(m))
    assert leaves(tree, tree.root) == frozenset(range(m))
    for i, (a, b) in enumerate(tree.children):
        assert leaves(tree, m + i) == leaves(tree, int(a)) | leaves(tree, int(b))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("partition")
    masks = [np.zeros((16, 16), bool) for _ in range(3)]
    masks[0][:8, :8] = True
    masks[1][8:, 4:12] = True
    masks[2][2:14, 10:16] = True
    card = tiny_card(16, 16, 1)
    return {
        "interaction": load(interaction_model(folder / "i.onnx", masks), card),
        "region": load(
            region_model(folder / "r.onnx", 16, 16, slice(4, 8), slice(8, 16)), tiny_card(16, 16, 2)
        ),
    }


@pytest.mark.parametrize("budget", [10, 40, 400])
def test_efficiency_sum_is_f_x_minus_f_background(models, budget: int) -> None:
    p = partition_params(budget, background={"kind": "constant", "rgb": [20, 200, 90]})
    e = explain(image(), models["interaction"], p, batch_size=16)
    f_x = float(
        models["interaction"](InputGrid(models["interaction"].card, (16, 16)).image(image())[None])[
            0, 0
        ]
    )
    assert e.weights.sum() == pytest.approx(f_x - e.base_value[0], abs=1e-9)
    assert e.model_evaluations <= budget
    assert e.hierarchy is not None and e.hierarchy.shape == (15, 2)


def test_recovers_the_region_that_matters_within_a_small_budget(models) -> None:
    e = explain(image(), models["region"], partition_params(40), batch_size=8)
    weights = e.weights[0].reshape(4, 4)
    inside = np.zeros((4, 4), bool)
    inside[1, 2:] = True  # rows 4..8, cols 8..16 at cell size 4
    assert (weights[inside] > 0).all()
    np.testing.assert_allclose(weights[~inside], 0, atol=1e-9)


def test_additive_model_owen_values_are_the_shapley_values(tmp_path: Path) -> None:
    img = image(3)
    p = partition_params(400)
    segments = segment(img, p.segmentation)
    a = np.random.default_rng(5).normal(size=16)
    model = load(segment_means_model(tmp_path / "a.onnx", segments, a), tiny_card(16, 16, 1))
    grid = InputGrid(model.card, (16, 16))
    compose = Composer(grid.image(img), grid.image(background_image(img, p.background)), segments)
    singles = np.vstack([np.zeros((1, 16), bool), np.eye(16, dtype=bool)])
    f = model(compose(singles))[:, 0].astype(np.float64)
    shapley = f[1:] - f[0]  # additive: φ_j = f({j}) - f(∅)
    e = explain(img, model, p, batch_size=32)
    np.testing.assert_allclose(e.weights[0], shapley, atol=1e-5)


def test_full_budget_gives_the_exact_owen_values_of_the_tree(models) -> None:
    img = image()
    p = partition_params(2000)
    model = models["interaction"]
    segments = segment(img, p.segmentation)
    grid = InputGrid(model.card, (16, 16))
    compose = Composer(grid.image(img), grid.image(background_image(img, p.background)), segments)
    tree = partition_tree(segments)
    m = 16

    @cache
    def f(shown: frozenset[int]) -> float:
        z = np.zeros((1, m), bool)
        z[0, list(shown)] = True
        return float(model(compose(z))[0, 0])

    def owen(node: int, ctx: frozenset[int]) -> dict[int, float]:
        if node < m:
            return {node: f(ctx | {node}) - f(ctx)}
        left, right = (int(c) for c in tree.children[node - m])
        out: dict[int, float] = {}
        for child, sibling in ((left, right), (right, left)):
            for with_sibling in (frozenset(), leaves(tree, sibling)):
                for leaf, v in owen(child, ctx | with_sibling).items():
                    out[leaf] = out.get(leaf, 0.0) + v / 2
        return out

    exact = owen(tree.root, frozenset())
    e = explain(img, model, p, batch_size=64)
    np.testing.assert_allclose(e.weights[0], [exact[j] for j in range(m)], atol=1e-5)


def test_batch_size_does_not_change_the_numbers(models) -> None:
    p = partition_params(60)
    runs = [explain(image(), models["interaction"], p, batch_size=b).weights for b in (1, 7, 64)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_level_maps_run_from_the_whole_image_to_the_attribution(models) -> None:
    e = explain(image(), models["interaction"], partition_params(100), batch_size=16)
    maps = level_maps(e.weights, e.hierarchy, e.segments)
    assert maps.shape == (1, 5, 16, 16)
    np.testing.assert_allclose(maps[0, 0], e.weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(maps[0, -1], e.attribution()[0], rtol=1e-6)
    np.testing.assert_allclose(maps[0, 1, :8].max(), maps[0, 1, :8].min())
