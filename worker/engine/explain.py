"""One explanation, end to end: segment → perturb → evaluate → fit.

The model is any callable `f(batch) -> scores` on its input grid, with the card that says
how to build that grid; ONNX Runtime is one implementation (worker/runtime).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from glimpse.cards import ModelCard
from glimpse.errors import InvalidParams
from glimpse.limits import check_design, check_occlusion_budget
from glimpse.params import Background, Classes, ExplainParams, InpaintBackground
from worker.engine import gradcam, occlusion, partition_shap
from worker.engine.coalitions import Estimator
from worker.engine.grid import InputGrid
from worker.engine.kernel_shap import KernelShap
from worker.engine.lime import Lime
from worker.engine.perturb import Composer, Inpainter, background_image
from worker.engine.quality import Quality, faithfulness
from worker.engine.rounds import adaptive, fixed
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


def perturbed_evaluator(
    model: Model,
    image: np.ndarray,
    x: np.ndarray,
    grid: InputGrid,
    background: Background,
    segments: np.ndarray,
) -> Callable[[np.ndarray], np.ndarray]:
    """f(z) -> raw outputs for superpixels `segments` ((H, W), original size) hidden behind
    `background`. A fixed background composes on the input grid (fused where the model can);
    inpainting depends on what is hidden, so each image is composed at the original size and
    preprocessed on the host (as shap's inpaint maskers do, at their cost)."""
    if isinstance(background, InpaintBackground):
        inpaint = Inpainter(image, segments, background, grid.image)
        return lambda z: model(inpaint(z))
    bg = grid.image(background_image(image, background))
    return coalition_evaluator(model, x, bg, grid.labels(segments))


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
    weights_se: np.ndarray | None = None  # (k, m) standard errors of weights
    top_separated: np.ndarray | None = None  # (k,) bool, see uncertainty.py
    top_settled: np.ndarray | None = None  # (k,) bool, see uncertainty.py
    quality: Quality | None = None  # deletion/insertion AUC, see quality.py
    rounds: int | None = None  # num_samples "auto": rounds run
    converged: bool | None = None  # num_samples "auto": stopped before max_samples
    pixel_maps: np.ndarray | None = None  # (k, H, W) float32: gradcam's smooth per-pixel maps
    hierarchy: np.ndarray | None = None  # (m - 1, 2) partition_shap's tree (glimpse/hierarchy.py)
    layer: str | None = None  # gradcam: the feature map's tensor name

    @property
    def n_segments(self) -> int:
        return int(self.weights.shape[1])

    def attribution(self) -> np.ndarray:
        """(k, H, W) float32: each superpixel's weight painted on its pixels, or the
        method's own per-pixel maps where it has them (gradcam)."""
        if self.pixel_maps is not None:
            return self.pixel_maps.astype(np.float32)
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
    max_design_size: int | None = None,
    progress: Progress | None = None,
) -> Explanation:
    """image: (H, W, 3) uint8 RGB. Same image, params and seed give the same numbers,
    whatever the batch size. `max_design_size`: refuse (InvalidParams) a LIME or Kernel SHAP
    budget × superpixels above it, once the superpixels are counted (glimpse/limits.py)."""
    started = time.perf_counter()
    if params.method in METHODS_OF_THEIR_OWN:
        structured = explain_structured(
            image,
            model,
            params,
            batch_size=batch_size,
            segment_max_side=segment_max_side,
            progress=progress,
        )
        return (
            with_quality(structured, image, model, params, batch_size)
            if params.quality
            else structured
        )
    card = model.card
    segments = segment(image, params.segmentation, max_side=segment_max_side, seed=params.seed)
    n_segments = int(segments.max()) + 1
    if max_design_size is not None:
        check_design(params, n_segments, max_design_size)
    segmented = time.perf_counter()

    grid = InputGrid(card, image.shape[:2])
    x = grid.image(image)
    evaluate = perturbed_evaluator(model, image, x, grid, params.background, segments)

    probabilities, targets, f_full = predict(model, x, params)

    def score(rows: np.ndarray) -> np.ndarray:
        return to_output_space(evaluate(rows), card, params.output_space)[:, targets]

    estimator = estimator_for(params)
    rng = np.random.default_rng(params.seed)
    if params.num_samples == "auto":
        spent = adaptive(
            estimator,
            n_segments,
            score,
            f_full,
            rng,
            max_samples=params.max_samples,
            batch_size=batch_size,
            progress=progress,
        )
    else:
        spent = fixed(
            estimator,
            n_segments,
            score,
            f_full,
            rng,
            budget=params.budget,
            batch_size=batch_size,
            progress=progress,
        )
    fit = spent.fit
    evaluation_done = time.perf_counter()

    quality = None
    if params.quality:  # after whatever produced fit.weights, on the same evaluate()
        quality = faithfulness(fit.weights, score, f_full, spent.f_empty, batch_size=batch_size)

    order = np.argsort(-probabilities, kind="stable")[:TOP_PREDICTIONS]
    return Explanation(
        segments=segments,
        predictions=[(int(i), float(probabilities[i])) for i in order],
        targets=targets,
        target_probabilities=probabilities[targets],
        weights=fit.weights,
        base_value=fit.base_value,
        score=fit.score,
        model_evaluations=spent.evaluations,
        batch_size=batch_size,
        seconds=time.perf_counter() - started,
        segmentation_seconds=segmented - started,
        evaluation_seconds=evaluation_done - segmented,
        weights_se=fit.se,
        top_separated=fit.separated,
        top_settled=fit.settled,
        quality=quality,
        rounds=spent.rounds,
        converged=spent.converged,
    )


def predict(
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


def with_quality(
    explanation: Explanation,
    image: np.ndarray,
    model: Model,
    params: ExplainParams,
    batch_size: int,
) -> Explanation:
    """`explanation` with deletion/insertion quality measured on its own regions (any method
    whose weights are one per region of `segments`); f(image) is evaluated again and counted
    in quality_evaluations."""
    segments = explanation.segments
    if explanation.weights.shape[1] != int(segments.max()) + 1:
        return explanation
    card = model.card
    grid = InputGrid(card, image.shape[:2])
    x = grid.image(image)
    evaluate = perturbed_evaluator(model, image, x, grid, params.background, segments)
    targets = explanation.targets
    f_full = to_output_space(model(x[None]), card, params.output_space)[0, targets]

    def score(rows: np.ndarray) -> np.ndarray:
        return to_output_space(evaluate(rows), card, params.output_space)[:, targets]

    quality = faithfulness(explanation.weights, score, f_full, None, batch_size=batch_size)
    quality = replace(quality, evaluations=quality.evaluations + 1)
    return replace(explanation, quality=quality)


# --- the methods with a procedure of their own (worker/engine/{partition_shap,occlusion,gradcam})
METHODS_OF_THEIR_OWN = frozenset({"partition_shap", "occlusion", "gradcam"})


def explain_structured(
    image: np.ndarray,
    model: Model,
    params: ExplainParams,
    *,
    batch_size: int,
    segment_max_side: int = 640,
    progress: Progress | None = None,
) -> Explanation:
    """partition_shap (Owen values over a split tree of the superpixels), occlusion (sliding
    windows) and gradcam (the feature map's cells): same prefix as LIME and Kernel SHAP
    (regions, input grid, the unperturbed prediction, targets), then the method's module."""
    started = time.perf_counter()
    card = model.card
    height, width = image.shape[:2]
    grid = InputGrid(card, (height, width))
    windows = None
    if params.method == "partition_shap":
        segments = segment(image, params.segmentation, max_side=segment_max_side, seed=params.seed)
    elif params.method == "occlusion":
        windows = occlusion.sliding_windows(
            height, width, params.occlusion.window, params.occlusion.stride
        )
        segments = windows.segments
        check_occlusion_budget(params, windows.count, height, width)
    segmented = time.perf_counter()

    x = grid.image(image)
    probabilities, targets, f_full = predict(model, x, params)
    k = len(targets)
    pixel_maps = None
    hierarchy = None
    layer = None
    score = None
    f_empty: np.ndarray | None = None
    space = params.output_space
    evaluate: Callable[[np.ndarray], np.ndarray] | None = None

    def scores(rows: np.ndarray) -> np.ndarray:
        """Coalitions over `segments` -> (n, k) target scores, run batch_size at a time."""
        assert evaluate is not None
        out = np.empty((len(rows), k), np.float64)
        for start in range(0, len(rows), batch_size):
            raw = to_output_space(evaluate(rows[start : start + batch_size]), card, space)
            out[start : start + batch_size] = raw[:, targets]
        return out

    if params.method == "gradcam":
        cam = gradcam.gradcam(model, x, targets, params.gradcam.layer)
        cells = cam.maps.shape[1:]
        segments = gradcam.cell_segments(grid, (int(cells[0]), int(cells[1])))
        weights = cam.maps.reshape(k, -1)
        pixel_maps = gradcam.pixel_maps(grid, cam.maps)
        layer = cam.layer
        base_value = np.zeros(k)
        evaluations = 1 + cam.forward_passes
        if progress:
            progress(evaluations, evaluations)
    else:
        evaluate = perturbed_evaluator(model, image, x, grid, params.background, segments)
        n_segments = int(segments.max()) + 1

        if params.method == "occlusion":
            assert windows is not None
            total = windows.count + 1
            f_occluded = np.empty((windows.count, k), np.float64)
            done = 1
            for start in range(0, windows.count, batch_size):
                rows = ~windows.covered[start : start + batch_size]
                f_occluded[start : start + len(rows)] = scores(rows)
                done += len(rows)
                if progress:
                    progress(done, total)
            weights = occlusion.occlusion_weights(windows, f_full, f_occluded)
            base_value = np.zeros(k)
            evaluations = total
        else:
            tree = partition_shap.partition_tree(segments)
            total = max(params.budget, 2)
            f_empty = scores(np.zeros((1, n_segments), bool))[0]
            if progress:
                progress(2, total)

            def on_round(spent: int) -> None:
                if progress:
                    progress(2 + spent, total)

            weights, spent = partition_shap.owen_values(
                scores, tree, f_empty, f_full, params.budget - 2, on_round=on_round
            )
            if progress:
                progress(2 + spent, 2 + spent)
            base_value = f_empty
            evaluations = 2 + spent
            hierarchy = tree.children
    evaluation_done = time.perf_counter()

    quality = None
    if params.quality:  # the same deletion/insertion curves as LIME and Kernel SHAP get
        if evaluate is None:
            evaluate = perturbed_evaluator(model, image, x, grid, params.background, segments)
        quality = faithfulness(weights, scores, f_full, f_empty, batch_size=batch_size)

    order = np.argsort(-probabilities, kind="stable")[:TOP_PREDICTIONS]
    return Explanation(
        segments=segments.astype(np.int32),
        predictions=[(int(i), float(probabilities[i])) for i in order],
        targets=targets,
        target_probabilities=probabilities[targets],
        weights=np.asarray(weights, np.float64),
        base_value=np.asarray(base_value, np.float64),
        score=score,
        model_evaluations=evaluations,
        batch_size=batch_size,
        seconds=time.perf_counter() - started,
        segmentation_seconds=segmented - started,
        evaluation_seconds=evaluation_done - segmented,
        quality=quality,
        pixel_maps=pixel_maps,
        hierarchy=hierarchy,
        layer=layer,
    )
