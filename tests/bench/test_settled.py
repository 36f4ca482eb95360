"""bench/settled.py's parts without a model: the indifference-zone check on hand-made
vectors, the log-log reading at 1000 evaluations, and auto's recorded rounds on a synthetic
game whose Shapley values are known exactly (the guarantee holds in every round)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import settled  # noqa: E402
from bench.scale.oracle import Oracle  # noqa: E402
from bench.scale.reference import Reference  # noqa: E402


def reference(values, se=None) -> Reference:
    values = np.asarray(values, np.float64)
    se = np.zeros_like(values) if se is None else np.asarray(se, np.float64)
    return Reference("shapley", values, se, samples=1, evaluations=1)


def test_the_guarantee_allows_a_miss_up_to_the_resolution_and_the_reference_noise() -> None:
    w = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.5])  # Σ|w| = 16; top 5 = 0..4
    assert settled.holds(w, 0.0, reference(w), noise=False)
    truth = reference([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 1.8])  # 6 beats 4 by 0.8 = 5 % of 16
    assert not settled.holds(w, 0.04, truth, noise=False)
    assert settled.holds(w, 0.05, truth, noise=False)
    noisy = reference(truth.values, se=[0.0] * 4 + [0.3, 0.0, 0.3])  # 1.96 · 0.42 = 0.83
    assert settled.holds(w, 0.0, noisy, noise=True) and not settled.holds(
        w, 0.0, noisy, noise=False
    )


def test_the_resolution_at_1000_is_read_log_log_between_rounds() -> None:
    rounds = [{"evaluations": 676, "resolution": 0.04}, {"evaluations": 1014, "resolution": 0.02}]
    t = np.log(1000 / 676) / np.log(1014 / 676)
    assert settled.at_budget(rounds, 1000) == pytest.approx(0.04 * 0.5**t)
    assert settled.at_budget(rounds, 676) == 0.04
    assert settled.at_budget(rounds, 2000) is None  # not reached
    assert settled.at_budget([{"evaluations": 1000, "resolution": 0.0}], 1000) == 0.0
    separated = [rounds[0], {"evaluations": 1014, "resolution": 0.0}]  # every pair apart
    assert settled.at_budget(separated, 1000) == 0.04  # not yet at 1000: the round before


def test_auto_rounds_on_a_known_game_hold_the_guarantee_and_sum_up() -> None:
    m = 20
    a = np.random.default_rng(0).normal(0.0, 1.0, m)

    def game(z: np.ndarray) -> np.ndarray:
        x = np.asarray(z, np.float64)
        return 0.2 + x @ a + 0.8 * x[:, 0] * x[:, 1] + 0.6 * x[:, 2] * x[:, 3] * x[:, 4]

    exact = a.copy()
    exact[[0, 1]] += 0.4
    exact[[2, 3, 4]] += 0.2
    runs = [
        settled.auto_rounds(Oracle(game, m), m, "kernel_shap", s, 1000, reference(exact))
        for s in range(2)
    ]
    for rounds in runs:
        spent = [r["evaluations"] for r in rounds]
        assert spent == sorted(spent) and spent[0] >= 200 and spent[-1] <= 1000
        assert all(r["holds"] and r["holds_raw"] for r in rounds)
    out = settled.summary(runs)
    assert out["rounds_judged"] == sum(len(r) for r in runs) == out["guarantee_held"]
    assert set(out["evaluations_to_reach"]) == {"0.03", "0.02", "0.01"}
    assert len(out["resolution_at_1000"]) == 2
