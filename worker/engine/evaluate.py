"""Evaluating coalitions: the one place the engine runs the model.

Every method's evaluations pass through an `Evaluator`: it runs coalitions batch_size at a
time through one function (z (n, m) bool -> (n, k) target scores in the output space),
counts what it evaluated, reports progress after each batch (the job's progress callback,
which raises `Cancelled` when the job is canceled or its worker stops, so cancellation is
checked between batches) and, for designs that repeat coalitions (`num_samples: "auto"`
rounds), evaluates each distinct coalition once (`distinct`).

Batches are cut from the rows in order, so the numbers do not depend on batch_size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glimpse.params import Background, InpaintBackground
from worker.engine.input_grid import InputGrid
from worker.engine.perturb import Composer, Inpainter, background_image
from worker.runtime.base import FusedModel, Model

Score = Callable[[np.ndarray], np.ndarray]  # z (n, m) bool -> (n, k) target scores
Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised by a progress callback to stop an explanation between batches."""


class Evaluator:
    """score: one model call on a batch of coalitions; k: targets; progress(done, total).

    `evaluations` counts the model evaluations made through it (and those `count`ed, such
    as f(image), made before it existed); `total` is the progress denominator, set with
    `expect` (0 until then: progress then shows done/done)."""

    def __init__(
        self, score: Score, k: int, *, batch_size: int, progress: Progress | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self._score = score
        self.k = k
        self.batch_size = batch_size
        self._progress = progress
        self.evaluations = 0
        self.total = 0
        self._known: dict[bytes, np.ndarray] = {}

    def expect(self, total: int) -> None:
        """Progress is reported against `total` from now on (and reported once)."""
        self.total = total
        self.report()

    def count(self, n: int = 1) -> None:
        """n evaluations made elsewhere (f(image) by the shared prefix); reported with the
        next batch."""
        self.evaluations += n

    def report(self) -> None:
        if self._progress:
            self._progress(self.evaluations, max(self.total, self.evaluations))

    def finish(self) -> None:
        """Progress shows done = total = what was spent."""
        self.total = self.evaluations
        self.report()

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """(n, m) bool -> (n, k) float64: every row evaluated, batch_size at a time."""
        return self._batches(z, counted=True)

    def quietly(self, z: np.ndarray) -> np.ndarray:
        """As __call__, counted apart (returns the scores; `evaluations` is unchanged) and
        reporting the progress as it stands between batches, which still lets a cancel
        stop it: for the quality pass after the explanation's own budget."""
        return self._batches(z, counted=False)

    def _batches(self, z: np.ndarray, *, counted: bool) -> np.ndarray:
        out = np.empty((len(z), self.k), np.float64)
        for start in range(0, len(z), self.batch_size):
            stop = min(start + self.batch_size, len(z))
            out[start:stop] = self._score(z[start:stop])
            if counted:
                self.evaluations += stop - start
            self.report()
        return out

    def remember(self, z: np.ndarray, values: np.ndarray) -> None:
        """Record known scores (f(image)) so that `distinct` never evaluates them."""
        for key, value in zip(_keys(z), values, strict=True):
            self._known[key] = value

    def distinct(self, z: np.ndarray) -> np.ndarray:
        """(n, m) bool -> (n, k): rows already known (from earlier calls of `distinct` or
        `remember`) are looked up; each new distinct row is evaluated once, in order of first
        appearance."""
        keys = _keys(z)
        new: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._known and key not in new:
                new[key] = i
        values = self(z[list(new.values())]) if new else np.empty((0, self.k))
        for key, value in zip(new, values, strict=True):
            self._known[key] = value
        return np.array([self._known[key] for key in keys]).reshape(len(z), self.k)


def _keys(z: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in np.packbits(np.asarray(z, bool), axis=1)]


def coalition_evaluator(
    model: Model, image: np.ndarray, background: np.ndarray, segments: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """f(z) -> raw outputs: fused in the model where it can, else composed on the host."""
    if isinstance(model, FusedModel) and model.fused:
        return model.bind(image, background, segments)
    compose = Composer(image, background, segments)
    return lambda z: model(compose(z))


def perturbed_evaluator(
    model: Model,
    image: np.ndarray,
    x: np.ndarray,
    grid: InputGrid,
    background: Background,
    segments: np.ndarray,
    *,
    seed: int = 0,
) -> Callable[[np.ndarray], np.ndarray]:
    """f(z) -> raw outputs for superpixels `segments` ((H, W), original size) hidden behind
    `background`. A fixed background composes on the input grid (fused where the model can);
    inpainting depends on what is hidden, so each image is composed at the original size and
    preprocessed on the host (as shap's inpaint maskers do, at their cost)."""
    if isinstance(background, InpaintBackground):
        inpaint = Inpainter(image, segments, background, grid.image)
        return lambda z: model(inpaint(z))
    bg = grid.image(background_image(image, background, seed=seed))
    return coalition_evaluator(model, x, bg, grid.labels(segments))
