"""bench/calibration.py's measurement without a model: on a synthetic probability game (the
adjusted LIME fit) and a game with interactions (Kernel SHAP), the ratio of stated standard
errors to the seed-to-seed spread is near 1, and the JSON holds what the README quotes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import calibration  # noqa: E402

M = 16
A = np.random.default_rng(3).normal(0.0, 1.2, M)


def game(z: np.ndarray) -> np.ndarray:
    """A class probability: mostly near 0, a logistic curve plus one interaction."""
    x = np.asarray(z, np.float64)
    return 1.0 / (1.0 + np.exp(-(x @ A - 0.5 * A.sum() - 2.0 + 1.5 * x[:, 0] * x[:, 1])))


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_the_stated_errors_are_the_spread_from_seed_to_seed(method: str) -> None:
    out = calibration.calibration(game, M, method, budget=300, seeds=16)
    assert set(out) == {"se_ratio", "median_se_ratio", "median_resolution", "median_seconds"}
    assert 0.7 < out["se_ratio"] < 1.5, out
    assert 0.6 < out["median_se_ratio"] < 1.6, out
    assert 0 < out["median_resolution"] < 1 and out["median_seconds"] > 0


def test_the_command_line_filters_the_configurations() -> None:
    args = calibration.parse(["--photos", "chelsea", "--methods", "lime", "--seeds", "4"])
    assert args.photos == ["chelsea"] and args.methods == ["lime"] and args.seeds == 4
    assert args.budget == 1000 and args.out == calibration.OUT
