"""worker/engine/evaluate.py: the one batch loop — batches cut in order, every evaluation
counted once, progress after each batch against the expected total, a cancel between batches,
each distinct coalition evaluated once by `distinct`, and quality's pass counted apart."""

from __future__ import annotations

import numpy as np
import pytest

from worker.engine.evaluate import Cancelled, Evaluator


class Scores:
    """z (n, m) -> (n, 2): the count of shown superpixels and the first one, recording calls."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, z: np.ndarray) -> np.ndarray:
        self.batches.append(len(z))
        return np.stack([z.sum(axis=1), z[:, 0]], axis=1).astype(np.float64)


def coalitions(n: int, m: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, m)) < 0.5


def test_rows_are_scored_in_batches_cut_in_order() -> None:
    scores = Scores()
    evaluate = Evaluator(scores, 2, batch_size=4)
    z = coalitions(10)
    out = evaluate(z)
    np.testing.assert_array_equal(out, scores.__class__()(z))
    assert scores.batches == [4, 4, 2] and evaluate.evaluations == 10


def test_progress_reports_each_batch_against_the_expected_total() -> None:
    seen: list[tuple[int, int]] = []
    evaluate = Evaluator(Scores(), 2, batch_size=3, progress=lambda d, t: seen.append((d, t)))
    evaluate.count(1)  # f(image): counted, not reported on its own
    assert seen == []
    evaluate.expect(8)
    evaluate(coalitions(7))
    evaluate.finish()
    assert seen == [(1, 8), (4, 8), (7, 8), (8, 8), (8, 8)]


def test_a_progress_callback_stops_it_between_batches() -> None:
    scores = Scores()

    def stop(done: int, total: int) -> None:
        if done >= 4:
            raise Cancelled

    evaluate = Evaluator(scores, 2, batch_size=4, progress=stop)
    with pytest.raises(Cancelled):
        evaluate(coalitions(12))
    assert scores.batches == [4]


def test_distinct_evaluates_each_coalition_once_and_remembers() -> None:
    scores = Scores()
    evaluate = Evaluator(scores, 2, batch_size=64)
    ones = np.ones((1, 6), bool)
    evaluate.remember(ones, np.array([[99.0, 99.0]]))
    z = np.vstack([coalitions(5), coalitions(5), ones])  # each of 5 rows twice, and f(image)
    out = evaluate.distinct(z)
    assert scores.batches == [len(np.unique(coalitions(5), axis=0))]
    np.testing.assert_array_equal(out[:5], out[5:10])
    np.testing.assert_array_equal(out[10], [99.0, 99.0])  # known: not evaluated
    again = evaluate.distinct(coalitions(5))
    np.testing.assert_array_equal(again, out[:5])
    assert len(scores.batches) == 1 and evaluate.evaluations == scores.batches[0]


def test_the_quality_pass_is_counted_apart() -> None:
    seen: list[tuple[int, int]] = []
    evaluate = Evaluator(Scores(), 2, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    evaluate.expect(3)
    evaluate(coalitions(3))
    evaluate.finish()
    before = list(seen)
    out = evaluate.quietly(coalitions(5, seed=1))
    assert out.shape == (5, 2) and evaluate.evaluations == 3
    assert seen[len(before) :] == [(3, 3)] * 3  # the numbers as they stand, once per batch


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Evaluator(Scores(), 1, batch_size=0)
