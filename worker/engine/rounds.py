"""Spending the budget: a fixed number of evaluations, or "auto" rounds that stop once the
top-k superpixels are settled.

`auto` samples in rounds of growing cumulative budget (max(4·M, 200) first, then ×GROWTH
rounded up to even, capped at max_samples). Each round asks the estimator for its design at
the new budget, keeping what earlier rounds drew (`Estimator.grow`); every distinct
coalition is evaluated once, so a round costs only its new coalitions. After each round's
fit it stops, converged, when for every target the top-k set is settled (uncertainty.py:
each top-k/rest pair separated at 95 % or measured to within δ = tolerance · Σ|weights|)
and nothing left the previous round's top-k set except for members now within δ of the
k-th weight (a swap inside the indifference zone); else at max_samples, not converged.
All draws come from the one Generator in a fixed order, so the seed fixes the rounds and
the numbers, whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import ceil

import numpy as np

from glimpse.params import TOLERANCE
from worker.engine.coalitions import Estimator, Fit
from worker.engine.evaluate import Evaluator
from worker.engine.uncertainty import kept_up_to_ties, settled, top_sets

GROWTH = 1.5
FIRST_PER_SEGMENT = 4
FIRST_MIN = 200


@dataclass(frozen=True)
class Spent:
    fit: Fit
    evaluations: int  # model evaluations, f(image) included
    f_empty: np.ndarray | None  # (k,) where the design evaluated it
    rounds: int | None = None
    converged: bool | None = None


def fixed(
    estimator: Estimator,
    n_segments: int,
    evaluate: Evaluator,
    f_full: np.ndarray,
    rng: np.random.Generator,
    *,
    budget: int,
) -> Spent:
    """One design of `budget` evaluations (f(image) counted by `evaluate` already)."""
    coalitions = estimator.sample(n_segments, budget, rng)
    z = coalitions.z
    full_rows = z.all(axis=1)
    todo = np.flatnonzero(~full_rows)
    empty = np.zeros((1 if coalitions.needs_empty else 0, n_segments), bool)
    queue = np.vstack([empty, z[todo]])
    evaluate.expect(evaluate.evaluations + len(queue))
    evaluated = evaluate(queue)

    f_empty = evaluated[0] if coalitions.needs_empty else None
    y = np.empty((len(z), len(f_full)), np.float64)
    y[full_rows] = f_full
    y[todo] = evaluated[len(empty) :]
    return Spent(estimator.fit(coalitions, y, f_full, f_empty), evaluate.evaluations, f_empty)


def first_budget(n_segments: int, max_samples: int) -> int:
    return min(max(FIRST_PER_SEGMENT * n_segments, FIRST_MIN), max_samples)


def adaptive(
    estimator: Estimator,
    n_segments: int,
    evaluate: Evaluator,
    f_full: np.ndarray,
    rng: np.random.Generator,
    *,
    max_samples: int,
    tolerance: float = TOLERANCE,
    on_round: Callable[[int, Fit], None] | None = None,
) -> Spent:
    """Rounds until the top-k is settled within `tolerance` or max_samples is spent;
    progress total is max_samples while it runs, then (used, used). Each distinct coalition
    is evaluated once (`Evaluator.distinct`); f(image) is known already. `on_round` sees
    each round's (evaluations so far, fit) (bench/settled.py)."""
    m = n_segments
    evaluate.remember(np.ones((1, m), bool), f_full[None])
    evaluate.expect(max_samples)
    budget = first_budget(m, max_samples)
    coalitions = None
    previous_top: list[frozenset[int]] | None = None
    rounds = 0
    while True:
        rounds += 1
        coalitions = estimator.grow(coalitions, m, budget, rng)
        z = coalitions.z
        empty = np.zeros((1 if coalitions.needs_empty else 0, m), bool)
        values = evaluate.distinct(np.vstack([empty, z]))
        y = values[len(empty) :]
        f_empty = values[0] if coalitions.needs_empty else None
        fit = estimator.fit(coalitions, y, f_full, f_empty)
        if on_round is not None:
            on_round(evaluate.evaluations, fit)
        top = top_sets(fit.weights)
        converged = m < 2 or (
            fit.resolution is not None
            and bool(settled(fit.resolution, tolerance).all())
            and previous_top is not None
            and kept_up_to_ties(fit.weights, previous_top, tolerance)
        )
        if converged or budget >= max_samples:
            break
        previous_top = top
        # even budgets: Kernel SHAP's designs are then whole pairs, all kept by the next round
        budget = min(2 * ceil(budget * GROWTH / 2), max_samples)
    evaluate.finish()
    return Spent(fit, evaluate.evaluations, f_empty, rounds=rounds, converged=converged)
