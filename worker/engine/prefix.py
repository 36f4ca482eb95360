"""The shared prefix of every explanation and what a method's step gives back.

`classify` is the prefix's one model call (the unperturbed prediction and the targets);
`Prefix` holds what every method's step starts from and builds its `Evaluator`; a step
returns an `Attribution` (explain.py turns it into an `Explanation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glimpse.cards import ModelCard
from glimpse.errors import InvalidParams
from glimpse.params import Classes, ExplainParams
from worker.engine.coalitions import Fit
from worker.engine.evaluate import Evaluator, Progress, perturbed_evaluator
from worker.engine.input_grid import InputGrid
from worker.runtime.base import Model


@dataclass(frozen=True)
class Attribution:
    """What a method's step gives back: weights over `segments`' regions and what else the
    method knows."""

    segments: np.ndarray  # (H, W) region ids 0..m-1
    weights: np.ndarray  # (k, m)
    base_value: np.ndarray  # (k,)
    evaluate: Evaluator  # on these regions, f(image) counted
    f_empty: np.ndarray | None = None  # (k,) the background's scores, where evaluated
    fit: Fit | None = None  # LIME and Kernel SHAP: R², standard errors, settledness
    rounds: int | None = None
    converged: bool | None = None
    pixel_maps: np.ndarray | None = None
    hierarchy: np.ndarray | None = None
    layer: str | None = None
    attribution_sum: np.ndarray | None = None  # (k,) gradient methods: Σ of every input's
    # attribution, against f(image) − f_empty (completeness)
    backward_passes: int | None = None  # gradient methods: forward+backward passes
    regions: tuple[tuple[Region, ...], ...] | None = None  # xrai: per target, best first

    def maps(self) -> np.ndarray:
        """(k, H, W) float32: the method's own per-pixel maps, or its weights painted on its
        regions."""
        if self.pixel_maps is not None:
            return np.asarray(self.pixel_maps, np.float32)
        return np.asarray(self.weights, np.float32)[:, self.segments]


@dataclass(frozen=True)
class Region:
    """An XRAI region: the pixels it added when chosen (of the input grid)."""

    area: float  # fraction of the input grid
    density: float  # mean attribution over its pixels (XRAI's gain)
    attribution: float  # Σ attribution over its pixels


@dataclass(frozen=True)
class Prefix:
    """The shared prefix: what every method's step starts from."""

    image: np.ndarray  # (H, W, 3) uint8
    model: Model
    params: ExplainParams
    grid: InputGrid
    x: np.ndarray  # (3, h, w) the image on the input grid
    targets: np.ndarray  # (k,)
    f_full: np.ndarray  # (k,) the targets' scores on the image, in the output space
    batch_size: int
    progress: Progress | None

    def evaluator(self, segments: np.ndarray) -> Evaluator:
        """Coalitions over `segments` ((H, W) region ids) -> target scores; f(image) is
        counted (the prefix evaluated it). The perturbation (a background, a fused binding)
        is set up on the first batch: Grad-CAM without quality never asks for one."""
        card, space, targets = self.model.card, self.params.output_space, self.targets
        raw: Callable[[np.ndarray], np.ndarray] | None = None

        def score(z: np.ndarray) -> np.ndarray:
            nonlocal raw
            if raw is None:
                raw = perturbed_evaluator(
                    self.model,
                    self.image,
                    self.x,
                    self.grid,
                    self.params.background,
                    segments,
                    seed=self.params.seed,
                )
            return to_output_space(raw(z), card, space)[:, targets]

        evaluate = Evaluator(
            score, len(targets), batch_size=self.batch_size, progress=self.progress
        )
        evaluate.count(1)
        return evaluate


def to_output_space(raw: np.ndarray, card: ModelCard, space: str) -> np.ndarray:
    """Raw model outputs (n, C) -> probabilities or logits (n, C), float64."""
    raw = raw.astype(np.float64)
    if card.output_kind == "logits":
        if space == "logit":
            return raw
        shifted = raw - raw.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return np.asarray(e / e.sum(axis=1, keepdims=True))
    if space == "probability":
        return raw
    return np.asarray(np.log(np.clip(raw, 1e-12, None)))


def classify(
    model: Model, x: np.ndarray, params: ExplainParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shared prefix's model call: x (3, h, w) -> (probabilities (C,), targets (k,),
    f_full (k,) the targets' scores in params.output_space)."""
    card = model.card
    raw_full = model(x[None])
    probabilities = to_output_space(raw_full, card, "probability")[0]
    targets = _targets(params, probabilities, card.num_classes)
    return probabilities, targets, to_output_space(raw_full, card, params.output_space)[0, targets]


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
