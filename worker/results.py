"""Turning the engine's numbers into the `result` object of docs/api.md."""

from __future__ import annotations

import numpy as np

from glimpse.images import DecodedImage
from glimpse.params import ExplainParams
from glimpse.result import (
    ClassExplanation,
    ComparedClass,
    ComparedMethod,
    Comparison,
    Completeness,
    ExplanationResult,
    ImageInfo,
    MethodAgreement,
    ModelRef,
    Prediction,
    Quality,
    SegmentsInfo,
    Stats,
    XraiRegion,
)
from worker.engine import compare
from worker.engine.explain import Explanation
from worker.engine.quality import Quality as EngineQuality
from worker.engine.uncertainty import settled as settled_within
from worker.engine.uncertainty import top_k
from worker.runtime.base import RuntimeInfo


def build_result(
    explanation: Explanation,
    *,
    model_name: str,
    runtime: RuntimeInfo,
    labels: list[str],
    image: DecodedImage,
    params: ExplainParams,
) -> ExplanationResult:
    score = explanation.r2
    se = explanation.weights_se
    separated = explanation.top_separated
    resolution = explanation.top_resolution
    settled = None if resolution is None else settled_within(resolution, params.tolerance)
    quality = explanation.quality
    return ExplanationResult(
        model=ModelRef(
            name=model_name,
            runtime=runtime.runtime,
            providers=list(runtime.providers),
            perturbation="fused" if runtime.fused else "host",
        ),
        method=params.method,
        image=ImageInfo(width=image.width, height=image.height, sha256=image.sha256),
        predictions=[
            Prediction(class_index=i, label=labels[i], probability=p)
            for i, p in explanation.predictions
        ],
        segments=SegmentsInfo(count=explanation.n_segments, algorithm=_regions(params)),
        explanations=[
            ClassExplanation(
                class_index=int(c),
                label=labels[int(c)],
                probability=float(explanation.target_probabilities[k]),
                weights=[float(w) for w in explanation.weights[k]],
                base_value=float(explanation.base_value[k]),
                score=None if score is None else float(np.nan_to_num(score[k])),
                weights_se=None
                if se is None or not np.isfinite(se[k]).all()
                else [float(v) for v in se[k]],
                quality=_quality(quality, k),
                top_separated=None if separated is None else bool(separated[k]),
                top_settled=None if settled is None else bool(settled[k]),
                top_resolution=None if resolution is None else _finite(resolution[k]),
                completeness=_completeness(explanation, k),
                regions=None
                if explanation.regions is None
                else [
                    XraiRegion(area=r.area, density=r.density, attribution=r.attribution)
                    for r in explanation.regions[k]
                ],
            )
            for k, c in enumerate(explanation.targets)
        ],
        stats=Stats(
            model_evaluations=explanation.model_evaluations,
            seconds=round(explanation.seconds, 4),
            batch_size=explanation.batch_size,
            segmentation_seconds=round(explanation.segmentation_seconds, 4),
            evaluation_seconds=round(explanation.evaluation_seconds, 4),
            converged=explanation.converged,
            rounds=explanation.rounds,
            backward_passes=explanation.backward_passes,
            quality_evaluations=None if quality is None else quality.evaluations,
        ),
        hierarchy=None
        if explanation.hierarchy is None
        else [(int(a), int(b)) for a, b in explanation.hierarchy],
        layer=explanation.layer,
        comparison=None
        if explanation.comparison is None
        else comparison_result(explanation.comparison, explanation.targets),
        warnings=budget_warnings(explanation, params, labels)
        + completeness_warnings(explanation, params, labels),
    )


def _quality(found: EngineQuality | None, k: int) -> Quality | None:
    """Class k's deletion/insertion AUC, where they were measured."""
    if found is None:
        return None
    return Quality(
        deletion_auc=float(found.deletion_auc[k]),
        insertion_auc=float(found.insertion_auc[k]),
        steps=found.steps,
    )


def comparison_result(found: compare.Comparison, targets: np.ndarray) -> Comparison:
    return Comparison(
        methods=[
            ComparedMethod(
                method=run.method,
                seconds=round(run.seconds, 4),
                model_evaluations=run.model_evaluations,
                backward_passes=run.backward_passes,
                explanations=[
                    ComparedClass(
                        class_index=int(c),
                        importance=[float(v) for v in run.importance[k]],
                        quality=_quality(run.quality, k),
                    )
                    for k, c in enumerate(targets)
                ],
            )
            for run in found.runs
        ],
        agreement=[
            MethodAgreement(
                methods=(pair.a, pair.b),
                class_index=int(c),
                spearman=float(pair.spearman[k]),
                top_k_overlap=float(pair.top_overlap[k]),
                k=pair.k,
            )
            for pair in found.agreement
            for k, c in enumerate(targets)
        ],
    )


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unknown resolution (all-zero weights, some noise) is null."""
    return float(value) if np.isfinite(value) else None


def _percent(share: float) -> str:
    return f"{100 * share:,.1f} %" if np.isfinite(share) else "an unknown share"


def budget_warnings(
    explanation: Explanation, params: ExplainParams, labels: list[str]
) -> list[str]:
    """One line per explained class whose top superpixels are not settled (the sampled
    methods: LIME, Kernel SHAP), saying what was spent on how many superpixels and what to
    do; and one when `auto` stopped at max_samples."""
    resolution = explanation.top_resolution
    if resolution is None:
        return []
    m, spent = explanation.n_segments, explanation.model_evaluations
    k = top_k(m)
    found = []
    ok = settled_within(resolution, params.tolerance)
    for c, share, done in zip(explanation.targets, resolution, ok, strict=True):
        if done:
            continue
        found.append(
            f"class {int(c)} ({labels[int(c)]}): its top {k} superpixels are not settled after "
            f"{spent} model evaluations for {m} superpixels: a superpixel outside them may "
            f"exceed one inside by up to {_percent(share)} of Σ|weights| (tolerance "
            f"{_percent(params.tolerance)}); their order is within the sampling noise "
            '(weights_se). Spend more (num_samples "auto" stops once they are settled), '
            "raise params.tolerance, or use fewer superpixels (e.g. slic with n_segments 20-50)."
        )
    if explanation.converged is False:
        found.append(
            f'num_samples "auto" reached max_samples ({params.max_samples}) before the top '
            f"{k} superpixels settled: raise max_samples or use fewer superpixels."
        )
    return found


#: A relative completeness gap above this is worth a warning: the integral has not closed.
COMPLETENESS_TOLERANCE = 0.05


def _completeness(explanation: Explanation, k: int) -> Completeness | None:
    if explanation.attribution_sum is None or explanation.target_scores is None:
        return None
    total = float(explanation.attribution_sum[k])
    difference = float(explanation.target_scores[k] - explanation.base_value[k])
    gap = total - difference
    relative = abs(gap) / abs(difference) if difference else (0.0 if gap == 0 else float("inf"))
    return Completeness(
        attribution_sum=total, score_difference=difference, gap=gap, relative_gap=relative
    )


def completeness_warnings(
    explanation: Explanation, params: ExplainParams, labels: list[str]
) -> list[str]:
    """One line per explained class whose Integrated Gradients did not close within
    COMPLETENESS_TOLERANCE of f(image) − f(baseline)."""
    found = []
    for k, c in enumerate(explanation.targets):
        closed = _completeness(explanation, k)
        if closed is None or closed.relative_gap <= COMPLETENESS_TOLERANCE:
            continue
        options = params.integrated_gradients
        found.append(
            f"class {int(c)} ({labels[int(c)]}): the attributions add up to "
            f"{closed.attribution_sum:.4g}, not f(image) - f(baseline) = "
            f"{closed.score_difference:.4g} (gap {closed.relative_gap:.0%}) after "
            f"{options.steps} steps: raise integrated_gradients.steps"
            + (" or lower noise_sigma" if options.noise_samples else "")
            + "."
        )
    return found


def _regions(params: ExplainParams) -> str:
    """What the segments are: superpixels of the chosen algorithm, occlusion's window cells
    or Grad-CAM's feature-map cells (a comparison's are always the superpixels)."""
    if params.methods is not None:
        return params.segmentation.algorithm
    if params.method == "occlusion":
        return "occlusion_cells"
    if params.method == "gradcam":
        return "feature_cells"
    return params.segmentation.algorithm
