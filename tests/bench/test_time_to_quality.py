"""bench/time_to_quality.py's arithmetic (no model, no timing): where an error curve crosses
a peer's error, the time line through measured seconds, and the race that joins them, on
hand-computed curves; the figure is written from such a result."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import time_to_quality as ttq  # noqa: E402


def test_the_crossing_is_interpolated_log_log_between_measured_budgets() -> None:
    # error halves from 250 to 1000 (slope -1/2 in log-log): 1/sqrt(2) of the way is 500
    budgets, errs = [250, 1000, 2000], [1.0, 0.5, 0.4]
    assert ttq.budget_reaching(budgets, errs, 1 / math.sqrt(2)) == pytest.approx(500)
    assert ttq.budget_reaching(budgets, errs, 0.5) == pytest.approx(1000)
    assert ttq.budget_reaching(budgets, errs, 2.0) == 250  # below it from the start
    assert ttq.budget_reaching(budgets, errs, 0.1) is None  # never reached


def test_a_curve_that_rises_before_it_falls_crosses_where_it_first_falls_below() -> None:
    budgets, errs = [100, 250, 500, 1000], [3.0, 4.0, 2.0, 1.0]
    # between (500, 2.0) and (1000, 1.0) the error is 1000/b: it is 1.5 at b = 2000/3
    assert ttq.budget_reaching(budgets, errs, 1.5) == pytest.approx(2000 / 3)


def test_the_time_line_is_the_least_squares_line_in_the_budget() -> None:
    intercept, slope = ttq.time_line([100, 200, 400], [1.5, 2.0, 3.0])
    assert (intercept, slope) == (pytest.approx(1.0), pytest.approx(0.005))


def result() -> dict:
    budgets = [250, 500, 1000]
    return {
        "config": "synthetic/grid/black",
        "m": 12,
        "budgets": budgets,
        "references": {"lime": {"rel_se": 0.01}, "shapley": {"rel_se": 0.02}},
        "curves": {
            "glimpse_lime": {"budgets": budgets, "rel_l2": [0.4, 0.2, 0.1]},
            "lime_image": {"budgets": budgets, "rel_l2": [0.8, 0.4, 0.2]},
            "glimpse_kernel_shap": {"budgets": budgets, "rel_l2": [0.9, 0.6, 0.3]},
            "shap_kernel_explainer": {"budgets": budgets, "rel_l2": [0.5, 0.3, 0.1]},
        },
        "seconds": {
            "glimpse_lime": [2.0, 3.0, 5.0],
            "lime_image": [4.0, 6.0, 10.0],
            "glimpse_kernel_shap": [2.0, 3.0, 5.0],
            "shap_kernel_explainer": [3.0, 4.0, 6.0],
        },
    }


def test_the_race_reads_glimpses_time_at_the_budget_of_the_peers_error() -> None:
    res = result()
    races = ttq.races(res["budgets"], res, res["seconds"])
    lime = races["glimpse_lime_vs_lime_image"]
    assert lime["peer_rel_l2_at_1000"] == 0.2 and lime["peer_seconds_at_1000"] == 10.0
    assert lime["glimpse_budget_needed"] == 500 and not lime["glimpse_reached_at_smallest_budget"]
    assert lime["glimpse_seconds_needed"] == pytest.approx(3.0)  # on the line 1 + 0.004·b
    assert lime["ratio"] == pytest.approx(0.3)
    shap = races["glimpse_kernel_shap_vs_shap_kernel_explainer"]
    assert shap["glimpse_budget_needed"] is None and shap["ratio"] is None  # never reached


def test_the_figure_is_written(tmp_path: Path) -> None:
    res = result()
    res["races"] = ttq.races(res["budgets"], res, res["seconds"])
    path = tmp_path / "ttq.png"
    ttq.figure(path, [res])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
