"""One explanation, end to end: segment → perturb → evaluate → fit.

The model is any callable `f(batch) -> scores` on its input grid, with the card that says
how to build that grid; ONNX Runtime is one implementation (worker/runtime).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from glimpse.cards import ModelCard
from glimpse.errors import InvalidParams
from glimpse.params import Classes, ExplainParams
from worker.engine.coalitions import Estimator
from worker.engine.grid import InputGrid
from worker.engine.kernel_shap import KernelShap
from worker.engine.lime import Lime
from worker.engine.perturb import Composer, background_image
from worker.engine.segment import segment

TOP_PREDICTIONS = 5


class Model(Protocol):
    card: ModelCard

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """batch: (n, 3, h, w) float32 on the input grid -> (n, num_classes) raw outputs."""
        ...


@runtime_checkable
class FusedModel(Model, Protocol):
    """A model that composes perturbed images itself (inside its graph, on its device)."""

    fused: bool

    def bind(
        self, image: np.ndarray, background: np.ndarray, segments: np.ndarray
    ) -> Callable[[np.ndarray], np.ndarray]:
        """(3, h, w), (3, h, w), (h, w) -> f(z: (n, m) {0,1}) -> (n, num_classes) raw outputs."""
        ...


def coalition_evaluator(
    model: Model, image: np.ndarray, background: np.ndarray, segments: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """f(z) -> raw outputs: fused in the model where it can, else composed on the host."""
    if isinstance(model, FusedModel) and model.fused:
        return model.bind(image, background, segments)
    compose = Composer(image, background, segments)
    return lambda z: model(compose(z))


class Cancelled(Exception):
    """Raised by a progress callback to stop an explanation between batches."""


Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Explanation:
    """The numbers of one explanation; k targets, m superpixels."""

    segments: np.ndarray  # (H, W) int32 superpixel ids 0..m-1
    predictions: list[tuple[int, float]]  # top 5 (class_index, probability), unperturbed image
    targets: np.ndarray  # (k,) class indices
    target_probabilities: np.ndarray  # (k,)
    weights: np.ndarray  # (k, m)
    base_value: np.ndarray  # (k,)
    score: np.ndarray | None  # (k,) or None
    model_evaluations: int
    batch_size: int
    seconds: float
    segmentation_seconds: float
    evaluation_seconds: float

    @property
    def n_segments(self) -> int:
        return int(self.weights.shape[1])

    def attribution(self) -> np.ndarray:
        """(k, H, W) float32: each superpixel's weight painted on its pixels."""
        return self.weights.astype(np.float32)[:, self.segments]


def estimator_for(params: ExplainParams) -> Estimator:
    if params.method == "lime":
        return Lime(
            kernel_width=params.lime.kernel_width,
            alpha=params.lime.alpha,
            keep_probability=params.lime.keep_probability,
        )
    if params.method == "kernel_shap":
        return KernelShap()
    raise InvalidParams(f"method {params.method!r} is not available")


def to_output_space(raw: np.ndarray, card: ModelCard, space: str) -> np.ndarray:
    """Raw model outputs (n, C) -> probabilities or logits (n, C), float64."""
    raw = raw.astype(np.float64)
    if card.output_kind == "logits":
        if space == "logit":
            return raw
        shifted = raw - raw.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
    if space == "probability":
        return raw
    return np.log(np.clip(raw, 1e-12, None))


def explain(
    image: np.ndarray,
    model: Model,
    params: ExplainParams,
    *,
    batch_size: int,
    segment_max_side: int = 640,
    progress: Progress | None = None,
) -> Explanation:
    """image: (H, W, 3) uint8 RGB. Same image, params and seed give the same numbers,
    whatever the batch size."""
    started = time.perf_counter()
    card = model.card
    segments = segment(image, params.segmentation, max_side=segment_max_side, seed=params.seed)
    n_segments = int(segments.max()) + 1
    segmented = time.perf_counter()

    grid = InputGrid(card, image.shape[:2])
    x = grid.image(image)
    evaluate = coalition_evaluator(
        model, x, grid.image(background_image(image, params.background)), grid.labels(segments)
    )

    raw_full = model(x[None])
    probabilities = to_output_space(raw_full, card, "probability")[0]
    targets = _targets(params, probabilities, card.num_classes)
    f_full = to_output_space(raw_full, card, params.output_space)[0, targets]

    estimator = estimator_for(params)
    rng = np.random.default_rng(params.seed)
    coalitions = estimator.sample(n_segments, params.num_samples, rng)
    z = coalitions.z
    full_rows = z.all(axis=1)
    todo = np.flatnonzero(~full_rows)
    empty = (
        np.zeros((1, n_segments), bool)
        if coalitions.needs_empty
        else np.zeros((0, n_segments), bool)
    )
    queue = np.vstack([empty, z[todo]])
    total = 1 + len(queue)

    def score(rows: np.ndarray) -> np.ndarray:
        return to_output_space(evaluate(rows), card, params.output_space)[:, targets]

    done = 1
    if progress:
        progress(done, total)
    evaluated = np.empty((len(queue), len(targets)), np.float64)
    for start in range(0, len(queue), batch_size):
        stop = min(start + batch_size, len(queue))
        evaluated[start:stop] = score(queue[start:stop])
        done += stop - start
        if progress:
            progress(done, total)
    evaluation_done = time.perf_counter()

    f_empty = evaluated[0] if coalitions.needs_empty else None
    y = np.empty((len(z), len(targets)), np.float64)
    y[full_rows] = f_full
    y[todo] = evaluated[len(empty) :]
    fit = estimator.fit(coalitions, y, f_full, f_empty)

    order = np.argsort(-probabilities, kind="stable")[:TOP_PREDICTIONS]
    return Explanation(
        segments=segments,
        predictions=[(int(i), float(probabilities[i])) for i in order],
        targets=targets,
        target_probabilities=probabilities[targets],
        weights=fit.weights,
        base_value=fit.base_value,
        score=fit.score,
        model_evaluations=total,
        batch_size=batch_size,
        seconds=time.perf_counter() - started,
        segmentation_seconds=segmented - started,
        evaluation_seconds=evaluation_done - segmented,
    )


def _targets(params: ExplainParams, probabilities: np.ndarray, num_classes: int) -> np.ndarray:
    if isinstance(params.targets, Classes):
        bad = [c for c in params.targets.classes if c >= num_classes]
        if bad:
            raise InvalidParams(
                f"classes {bad} out of range: the model has {num_classes} classes",
                errors=[
                    {"loc": ["params", "targets", "classes"], "msg": f"must be < {num_classes}"}
                ],
            )
        return np.asarray(params.targets.classes, np.intp)
    k = min(params.targets.top_k, num_classes)
    return np.argsort(-probabilities, kind="stable")[:k].astype(np.intp)
