"""bench/quality_scale.py's parts on synthetic games whose Shapley values are known exactly
(no ONNX model, no network, a few seconds): the oracle evaluates each distinct coalition
once and its disk cache round-trips; the antithetic permutation reference lands within its
reported SE of the exact values and the LIME reference near the enumerated estimand; the
metrics give hand-computed answers; Glimpse's Kernel SHAP and shapiq's approximators, run
through the estimator functions, land near the exact values; one configuration runs end
to end into the targets block. Run: `.venv/bin/python -m pytest -q
tests/bench/test_quality_scale.py`."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.scale import metrics as mt  # noqa: E402
from bench.scale import report  # noqa: E402
from bench.scale.estimators import METHODS, Method, glimpse_auto  # noqa: E402
from bench.scale.oracle import Oracle  # noqa: E402
from bench.scale.reference import (  # noqa: E402
    lime_regression,
    shapley_permutations,
    weighted_regression,
)
from bench.scale.runner import Settings, attempt, run_config  # noqa: E402
from worker.engine.lime import Lime  # noqa: E402

M = 30
PAIRS = [(0, 1, 0.8), (2, 5, -0.6), (3, 4, 0.5)]
TRIPLE = (6, 7, 8, 0.9)


class Game:
    """v(z) = 0.2 + z·a + Σ b·z_i z_j + c·z_6 z_7 z_8, counting the rows it evaluates.
    Exact Shapley values: a_i, plus b/2 to each player of a pair, c/3 to each of the triple."""

    def __init__(self, m: int = M, seed: int = 0) -> None:
        self.m = m
        self.a = np.random.default_rng(seed).normal(0.0, 1.0, m)
        self.evaluated = 0
        self.batches: list[int] = []

    def __call__(self, z: np.ndarray) -> np.ndarray:
        x = np.asarray(z, np.float64)
        self.evaluated += len(x)
        self.batches.append(len(x))
        v = 0.2 + x @ self.a
        for i, j, b in PAIRS:
            v += b * x[:, i] * x[:, j]
        i, j, k, c = TRIPLE
        return v + c * x[:, i] * x[:, j] * x[:, k]

    def shapley(self) -> np.ndarray:
        phi = self.a.copy()
        for i, j, b in PAIRS:
            phi[[i, j]] += b / 2
        phi[list(TRIPLE[:3])] += TRIPLE[3] / 3
        return phi


def all_coalitions(m: int) -> np.ndarray:
    return (np.arange(2**m)[:, None] >> np.arange(m)[None, :]) & 1 == 1


def test_oracle_evaluates_each_distinct_coalition_once_and_the_cache_round_trips(
    tmp_path: Path,
) -> None:
    game = Game()
    rng = np.random.default_rng(1)
    distinct = rng.random((50, M)) < 0.5
    z = distinct[rng.integers(0, 50, 400)]
    n_distinct = len(np.unique(z, axis=0))
    path = tmp_path / "game.npz"
    oracle = Oracle(game, M, path=path, fingerprint="v1", batch=16)
    with oracle.tally() as tally:
        values = oracle(z)
    np.testing.assert_allclose(values, game(z))
    game.batches.pop()  # the check above
    assert oracle.calls == n_distinct == sum(game.batches)
    assert max(game.batches) <= 16
    assert (tally.rows, tally.distinct) == (400, n_distinct)
    oracle(z[:7])
    oracle(z[3])  # one coalition as (m,)
    assert oracle.calls == n_distinct and oracle.rows == 408
    oracle.save()

    again = Oracle(None, M, path=path, fingerprint="v1")  # no model: all from the file
    assert again.loaded == n_distinct
    np.testing.assert_array_equal(again(z), values)
    assert again.calls == 0 and len(again.disk_hits) == n_distinct

    stale = Oracle(None, M, path=path, fingerprint="v2")  # other superpixels: not read
    assert stale.loaded == 0
    with pytest.raises(RuntimeError, match="no model"):
        stale(z[:1])
    with pytest.raises(ValueError, match="players"):
        again(np.ones((1, M + 1), bool))


def test_permutation_reference_lands_within_its_standard_error() -> None:
    game = Game()
    oracle = Oracle(game, M)
    ref = shapley_permutations(oracle, M, pairs=200, seed=3)
    exact = game.shapley()
    assert np.all(np.abs(ref.values - exact) <= 4 * ref.se + 1e-9)
    assert 0 < ref.rel_se < 0.05
    assert ref.evaluations == oracle.calls <= 2 * 200 * (M - 1) + 2
    # a permutation's contributions sum to v(all) - v(empty), whatever the permutation
    assert ref.values.sum() == pytest.approx(exact.sum(), abs=1e-9)

    additive = Oracle(lambda z: np.asarray(z, float) @ game.a, M)
    exact_additive = shapley_permutations(additive, M, pairs=5, seed=0)
    np.testing.assert_allclose(exact_additive.values, game.a, atol=1e-12)
    np.testing.assert_allclose(exact_additive.se, 0, atol=1e-12)


def test_lime_reference_estimates_the_enumerated_estimand() -> None:
    game = Game(m=10)
    z = all_coalitions(10)
    exact = weighted_regression(z, game(z), Lime().kernel(z))  # every coalition, p = 0.5
    ref = lime_regression(Oracle(game, 10), 10, samples=20_000, seed=5)
    error = np.linalg.norm(ref.values - exact) / np.linalg.norm(exact)
    assert error < 0.02 and ref.rel_se < 0.02
    assert error <= 4 * ref.rel_se + 1e-3
    assert ref.evaluations == 2**10  # 20,000 draws cover all 1024 coalitions


def test_metrics_give_hand_computed_answers() -> None:
    assert mt.rel_l2(np.array([3.0, 4.0, 5.0]), np.array([3.0, 4.0, 0.0])) == 1.0
    assert mt.rel_l2_beyond_reference(0.5, 0.3) == pytest.approx(0.4)
    assert mt.se_ratio(0.1, 0.4) == pytest.approx(0.25)
    ref = np.arange(20.0)
    assert mt.top_k_recall(ref[::-1], ref, 5) == 0.0
    assert mt.top_k_recall(ref, ref, 10) == 1.0
    est = ref.copy()
    est[[19, 18]] = -1.0  # two of the top 5 fall out; 14 and 13 come in
    assert mt.top_k_recall(est, ref, 5) == pytest.approx(3 / 5)
    assert mt.spearman(ref, np.exp(ref)) == pytest.approx(1.0)
    assert mt.spearman(ref, -ref) == pytest.approx(-1.0)
    assert math.isnan(mt.spearman(ref, np.ones(20)))
    assert mt.mean_pairwise_spearman([ref, ref, -ref]) == pytest.approx(-1 / 3)
    w = np.array([1.0, 3.0, 0.0, 2.0])  # additive game: deletion 6, 3, 1, 0, 0

    def additive(z):
        return np.asarray(z, float) @ w

    deletion, insertion = mt.deletion_insertion(additive, w)
    assert deletion == pytest.approx(0.25 * ((6 + 3) + (3 + 1) + (1 + 0) + 0) / 2)
    assert insertion == pytest.approx(0.25 * ((0 + 3) + (3 + 5) + (5 + 6) + (6 + 6)) / 2)
    assert mt.nanmean([1.0, float("nan"), 3.0]) == 2.0


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("glimpse_kernel_shap", 0.05),
        ("glimpse_kernel_shap_order1", 0.05),
        ("shapiq_kernel_shap", 0.05),
        ("shapiq_permutation", 0.1),
    ],
)
def test_shapley_estimators_land_near_the_exact_values(name: str, tolerance: float) -> None:
    game = Game()
    oracle = Oracle(game, M)
    method = METHODS[name]
    first = method.run(oracle, M, 1500, 0)
    assert first.shape == (M,)
    assert mt.rel_l2(first, game.shapley()) < tolerance
    np.testing.assert_array_equal(method.run(oracle, M, 1500, 0), first)  # seed fixes it
    outcome = attempt(method, oracle, M, 1500, 1)
    assert outcome.failure is None and outcome.evaluations <= 1500


def test_lime_family_lands_near_the_lime_estimand() -> None:
    game = Game(m=10)
    z = all_coalitions(10)
    exact = weighted_regression(z, game(z), Lime().kernel(z))
    oracle = Oracle(game, 10)
    for name in ("glimpse_lime", "lime_image"):
        assert mt.rel_l2(METHODS[name].run(oracle, 10, 2000, 0), exact) < 0.1, name


def test_auto_and_a_failing_peer_are_recorded() -> None:
    game = Game()
    oracle = Oracle(game, M)
    weights, evaluations, converged, rounds = glimpse_auto(oracle, M, 0, max_samples=2000)
    assert evaluations <= 2000 and rounds >= 1 and isinstance(converged, bool)
    assert mt.rel_l2(weights, game.shapley()) < 0.1

    def broken(game, m, budget, seed):
        raise RuntimeError("peer exploded")

    outcome = attempt(Method("broken", broken, "shapley", False), oracle, M, 500, 0)
    assert outcome.weights is None and outcome.failure == "RuntimeError: peer exploded"


def test_one_configuration_runs_into_the_targets_block() -> None:
    game = Game()
    scene = SimpleNamespace(
        name="synthetic/none/none",
        photo="synthetic",
        segmentation="none",
        background="none",
        m=M,
        target=0,
        label="toy",
        target_probability=1.0,
    )
    settings = Settings(
        budgets=[500, 1000],
        seeds=[0, 1],
        pairs=30,
        lime_samples=2000,
        methods=["glimpse_kernel_shap", "glimpse_lime", "shapiq_kernel_shap"],
    )
    cfg = run_config(scene, Oracle(game, M), settings, None)
    assert cfg["m"] == M and cfg["reference"]["shapley"]["samples"] == 30
    row = cfg["methods"]["glimpse_kernel_shap"]["1000"]
    assert row["rel_l2"] < 0.2 and row["failed"] == 0 and row["se_ratio"] > 0
    assert -1 <= row["seed_to_seed_spearman"] <= 1 and row["evaluations"] <= 1000
    block = report.estimators_block([cfg])
    assert block["glimpse_lime"]["500"]["estimand"] == "lime"
    goals = report.targets([cfg], settings.budgets)
    a = goals["a_kernel_shap_500_vs_best_peer_1000"]["per_config"]["synthetic/none/none"]
    assert a["best_peer_1000"] == "shapiq_kernel_shap"
    assert a["met"] == (a["glimpse_kernel_shap_500"] <= a["best_peer_1000_rel_l2"])
    assert set(goals["d_auto"]["per_config"]) == {"synthetic/none/none"}
    assert report.targets([cfg], [1000])["evaluated"] is False
    assert "glimpse_kernel_shap" in report.table(block, [cfg], settings.budgets)
