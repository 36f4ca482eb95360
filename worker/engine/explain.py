"""One explanation, end to end: segment → perturb → evaluate → fit.

`explain` runs the shared prefix (regions, input grid, the unperturbed prediction, targets),
then the method's step, which returns an `Attribution` (weights, base value and what the
method has besides: standard errors, maps, a hierarchy), then one quality pass and one
`Explanation`. Every model evaluation goes through one `Evaluator` (evaluate.py), so batching,
progress, cancellation and the count live in one place.

The model is any callable `f(batch) -> scores` on its input grid, with the card that says
how to build that grid (worker/runtime/base.py); ONNX Runtime and PyTorch implement it.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from glimpse.errors import InvalidParams
from glimpse.limits import DESIGN_METHODS, check_design, check_occlusion_budget
from glimpse.params import ExplainParams
from worker.engine import (
    compare,
    gradcam,
    integrated_gradients,
    occlusion,
    partition_shap,
    xrai,
)
from worker.engine.coalitions import Estimator
from worker.engine.evaluate import Progress
from worker.engine.input_grid import InputGrid
from worker.engine.kernel_shap import KernelShap
from worker.engine.lime import Lime
from worker.engine.prefix import Attribution, Prefix, Region, classify, to_output_space
from worker.engine.quality import Quality, faithfulness
from worker.engine.rounds import adaptive, fixed
from worker.engine.segment import segment
from worker.runtime.base import GradientModel, GradientSource, Model, OutputsModel

__all__ = ["Explanation", "classify", "explain", "to_output_space"]

TOP_PREDICTIONS = 5


@dataclass(frozen=True)
class Explanation:
    """The numbers of one explanation; k targets, m superpixels."""

    segments: np.ndarray  # (H, W) int32 superpixel ids 0..m-1
    predictions: list[tuple[int, float]]  # top 5 (class_index, probability), unperturbed image
    targets: np.ndarray  # (k,) class indices
    target_probabilities: np.ndarray  # (k,)
    weights: np.ndarray  # (k, m)
    base_value: np.ndarray  # (k,)
    r2: np.ndarray | None  # (k,) the surrogate's weighted R² (LIME), or None
    model_evaluations: int
    batch_size: int
    seconds: float
    segmentation_seconds: float
    evaluation_seconds: float
    weights_se: np.ndarray | None = None  # (k, m) standard errors of weights
    top_separated: np.ndarray | None = None  # (k,) bool, see uncertainty.py
    top_resolution: np.ndarray | None = None  # (k,) share of Σ|w|, see uncertainty.py
    quality: Quality | None = None  # deletion/insertion AUC, see quality.py
    rounds: int | None = None  # num_samples "auto": rounds run
    converged: bool | None = None  # num_samples "auto": stopped before max_samples
    pixel_maps: np.ndarray | None = None  # (k, H, W) float32: gradcam's smooth per-pixel maps
    hierarchy: np.ndarray | None = None  # (m - 1, 2) partition_shap's tree (glimpse/hierarchy.py)
    layer: str | None = None  # gradcam: the feature map's tensor name
    target_scores: np.ndarray | None = None  # (k,) f(image) in params.output_space
    attribution_sum: np.ndarray | None = None  # (k,) gradient methods: Σ IG (completeness)
    backward_passes: int | None = None  # gradient methods: forward+backward passes
    regions: tuple[tuple[Region, ...], ...] | None = None  # xrai: per target, best first
    comparison: compare.Comparison | None = None  # params.methods: every method, side by side

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
            # a logistic curve is a model of probabilities, not of logits
            surrogate=params.lime.surrogate if params.output_space == "probability" else "none",
        )
    if params.method == "kernel_shap":
        return KernelShap()
    raise InvalidParams(f"method {params.method!r} is not available")


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
    height, width = image.shape[:2]
    grid = InputGrid(model.card, (height, width))
    regions, windows = _regions(image, params, segment_max_side, max_design_size)
    segmented = time.perf_counter()

    x = grid.image(image)
    probabilities, targets, f_full = classify(model, x, params)
    prefix = Prefix(image, model, params, grid, x, targets, f_full, batch_size, progress)
    comparison = None
    if params.methods is None:
        found = _step(params, regions, windows)(prefix)
    else:
        assert regions is not None  # a comparison always segments
        steps = [(one, _step(one, regions, windows)) for one in params.each_method()]
        found, comparison = compare.compare(prefix, regions, steps)
    evaluation_done = time.perf_counter()

    quality = None
    if comparison is not None:
        quality = comparison.runs[0].quality  # the same curves on the same superpixels
    elif params.quality:  # one pass for every method, on the regions its weights are over
        quality = faithfulness(found.weights, found.evaluate.quietly, f_full, found.f_empty)

    fit = found.fit
    order = np.argsort(-probabilities, kind="stable")[:TOP_PREDICTIONS]
    return Explanation(
        segments=found.segments.astype(np.int32),
        predictions=[(int(i), float(probabilities[i])) for i in order],
        targets=targets,
        target_probabilities=probabilities[targets],
        weights=np.asarray(found.weights, np.float64),
        base_value=np.asarray(found.base_value, np.float64),
        r2=fit.score if fit else None,
        model_evaluations=found.evaluate.evaluations
        if comparison is None
        else comparison.evaluations(),
        batch_size=batch_size,
        seconds=time.perf_counter() - started,
        segmentation_seconds=segmented - started,
        evaluation_seconds=evaluation_done - segmented,
        weights_se=fit.se if fit else None,
        top_separated=fit.separated if fit else None,
        top_resolution=fit.resolution if fit else None,
        quality=quality,
        rounds=found.rounds,
        converged=found.converged,
        pixel_maps=found.pixel_maps,
        hierarchy=found.hierarchy,
        layer=found.layer,
        target_scores=f_full,
        attribution_sum=found.attribution_sum,
        backward_passes=found.backward_passes,
        regions=found.regions,
        comparison=comparison,
    )


def _regions(
    image: np.ndarray,
    params: ExplainParams,
    segment_max_side: int,
    max_design_size: int | None,
) -> tuple[np.ndarray | None, occlusion.Windows | None]:
    """The regions the methods attribute to, checked against the limits: superpixels (for
    a comparison always: its methods are compared on them), occlusion's windows, neither
    for gradcam alone, whose cells come from the model."""
    methods = params.methods or [params.method]
    windows = None
    if "occlusion" in methods:
        height, width = image.shape[:2]
        windows = occlusion.sliding_windows(
            height, width, params.occlusion.window, params.occlusion.stride
        )
        check_occlusion_budget(params, windows.count, height, width)
    if params.methods is None and params.method in ("occlusion", "gradcam"):
        return None, windows
    segments = segment(image, params.segmentation, max_side=segment_max_side, seed=params.seed)
    if max_design_size is not None:
        for one in params.each_method():
            if one.method in DESIGN_METHODS:
                check_design(one, int(segments.max()) + 1, max_design_size)
    return segments, windows


def _step(
    params: ExplainParams, regions: np.ndarray | None, windows: occlusion.Windows | None
) -> compare.Step:
    """The method's step on the shared prefix: prefix -> Attribution."""
    method = params.method
    on_superpixels = {
        "lime": _sampled,
        "kernel_shap": _sampled,
        "partition_shap": _partition,
        "integrated_gradients": integrated_gradients.step,
        "xrai": xrai.step,
    }
    if method in on_superpixels:
        assert regions is not None
        return functools.partial(on_superpixels[method], segments=regions)
    if method == "occlusion":
        assert windows is not None
        return functools.partial(_occlusion, windows=windows)
    return _gradcam


def _sampled(prefix: Prefix, segments: np.ndarray) -> Attribution:
    """LIME and Kernel SHAP: a design of coalitions, evaluated, then fitted."""
    params = prefix.params
    evaluate = prefix.evaluator(segments)
    n_segments = int(segments.max()) + 1
    estimator = estimator_for(params)
    rng = np.random.default_rng(params.seed)
    if params.num_samples == "auto":
        spent = adaptive(
            estimator,
            n_segments,
            evaluate,
            prefix.f_full,
            rng,
            max_samples=params.max_samples,
            tolerance=params.tolerance,
        )
    else:
        spent = fixed(estimator, n_segments, evaluate, prefix.f_full, rng, budget=params.budget)
    fit = spent.fit
    return Attribution(
        segments=segments,
        weights=fit.weights,
        base_value=fit.base_value,
        evaluate=evaluate,
        f_empty=spent.f_empty,
        fit=fit,
        rounds=spent.rounds,
        converged=spent.converged,
    )


def _partition(prefix: Prefix, segments: np.ndarray) -> Attribution:
    """Owen values over a split tree of the superpixels (partition_shap.py)."""
    evaluate = prefix.evaluator(segments)
    tree = partition_shap.partition_tree(segments)
    budget = prefix.params.budget
    evaluate.expect(max(budget, 2))
    f_empty = evaluate(np.zeros((1, tree.n_leaves), bool))[0]
    weights, _ = partition_shap.owen_values(evaluate, tree, f_empty, prefix.f_full, budget - 2)
    evaluate.finish()
    return Attribution(
        segments=segments,
        weights=weights,
        base_value=f_empty,
        evaluate=evaluate,
        f_empty=f_empty,
        hierarchy=tree.children,
    )


def _occlusion(prefix: Prefix, windows: occlusion.Windows) -> Attribution:
    """Captum's sliding windows, each hidden on its own (occlusion.py)."""
    evaluate = prefix.evaluator(windows.segments)
    evaluate.expect(windows.count + 1)
    f_occluded = evaluate(~windows.covered)
    return Attribution(
        segments=windows.segments,
        weights=occlusion.occlusion_weights(windows, prefix.f_full, f_occluded),
        base_value=np.zeros(len(prefix.targets)),
        evaluate=evaluate,
    )


def _gradcam(prefix: Prefix) -> Attribution:
    """Grad-CAM of a feature map (gradcam.py): its cells are the regions."""
    model = prefix.model
    if not isinstance(model, OutputsModel | GradientModel | GradientSource):
        raise InvalidParams("gradcam needs the model's graph: this runtime does not expose it")
    cam = gradcam.gradcam(model, prefix.x, prefix.targets, prefix.params.gradcam.layer)
    cells = cam.maps.shape[1:]
    segments = gradcam.cell_segments(prefix.grid, (int(cells[0]), int(cells[1])))
    evaluate = prefix.evaluator(segments)
    evaluate.count(cam.forward_passes)
    evaluate.finish()
    return Attribution(
        segments=segments,
        weights=cam.maps.reshape(len(prefix.targets), -1),
        base_value=np.zeros(len(prefix.targets)),
        evaluate=evaluate,
        pixel_maps=gradcam.pixel_maps(prefix.grid, cam.maps),
        layer=cam.layer,
    )
