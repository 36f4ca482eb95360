"""Several methods on one photo, side by side (params.methods): the comparison that
practitioners make by hand between Grad-CAM, LIME and SHAP, in one job.

Every method runs on the shared prefix (the same targets, the unperturbed scores) and, where
it explains superpixels, the same superpixels. To compare them, each method's answer is read
on those superpixels as an *importance* per superpixel: its weight where it explains them
(lime, kernel_shap, partition_shap, integrated_gradients, xrai), else the mean of its
per-pixel map over each superpixel (gradcam's feature cells, occlusion's windows). On the
importances, with one evaluator on the shared superpixels:

- deletion and insertion AUC (quality.py) of each method, so that the curves move the same
  regions for every method and their areas compare;
- between every two methods, the Spearman rank correlation of their importances and the
  overlap of their top-k superpixels (k = min(TOP_K, m)), per explained class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
from scipy.stats import rankdata

from glimpse.limits import method_evaluations
from glimpse.params import ExplainParams
from glimpse.shrink import shrink_maps
from worker.engine.evaluate import Progress
from worker.engine.integrated_gradients import superpixel_means
from worker.engine.prefix import Attribution, Prefix
from worker.engine.quality import Quality, faithfulness

#: The superpixels whose overlap is counted between two methods (at most m).
TOP_K = 10
#: The longest side of the per-method maps kept for the comparison figure.
MAP_SIDE = 512


@dataclass(frozen=True)
class MethodRun:
    """One method of a comparison."""

    method: str
    seconds: float  # its step, quality not included
    model_evaluations: int  # its own, f(image) included
    backward_passes: int | None
    importance: np.ndarray  # (k, m) on the shared superpixels
    quality: Quality | None  # on the shared superpixels
    maps: np.ndarray  # (k, h, w) float32 its per-pixel maps, shrunk to MAP_SIDE
    f_empty: np.ndarray | None = None  # (k,) the background's scores, where it evaluated them


@dataclass(frozen=True)
class Agreement:
    """Two methods' agreement on the shared superpixels, per explained class."""

    a: str
    b: str
    spearman: np.ndarray  # (k,)
    top_overlap: np.ndarray  # (k,) |top-k of a ∩ top-k of b| / k
    k: int


@dataclass(frozen=True)
class Comparison:
    runs: tuple[MethodRun, ...]  # in params.methods order
    agreement: tuple[Agreement, ...]  # every pair, in order

    def evaluations(self) -> int:
        """Every method's model evaluations, the shared f(image) counted once."""
        return sum(r.model_evaluations for r in self.runs) - (len(self.runs) - 1)


Step = Callable[[Prefix], Attribution]


class Stages:
    """The job's progress across its methods, run one after another: done = what earlier
    methods spent (the shared f(image) once) + this one's done; total = that + this one's
    total + the planned budgets of the methods still to run."""

    def __init__(self, progress: Progress | None, planned: list[int]) -> None:
        self._progress, self._planned, self._spent = progress, planned, 0

    def progress(self, i: int) -> Progress | None:
        outer = self._progress
        if outer is None:
            return None
        rest = sum(self._planned[i + 1 :])

        def report(done: int, total: int) -> None:
            outer(self._spent + done, self._spent + total + rest)

        return report

    def advance(self, evaluations: int) -> None:
        """A method ended having spent `evaluations` (its f(image) included)."""
        self._spent += evaluations - 1


def importance(found: Attribution, segments: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(k, m): the method's weights where it explains `segments`, else its per-pixel maps
    (k, H, W) averaged over each superpixel."""
    if found.segments is segments or np.array_equal(found.segments, segments):
        return np.asarray(found.weights, np.float64)
    return superpixel_means(maps.astype(np.float64), segments, int(segments.max()) + 1)


def compare(
    prefix: Prefix, segments: np.ndarray, steps: list[tuple[ExplainParams, Step]]
) -> tuple[Attribution, Comparison]:
    """Run every method on the shared prefix, one after another, and read each on the shared
    superpixels as it ends (only its importances and small maps are kept, but for the first
    method's whole Attribution: the job's own explanation), then their quality curves.
    -> (the first method's Attribution, the comparison)."""
    stages = Stages(prefix.progress, [method_evaluations(params) for params, _ in steps])
    first: Attribution | None = None
    runs = []
    for i, (params, step) in enumerate(steps):
        started = time.perf_counter()
        found = step(replace(prefix, params=params, progress=stages.progress(i)))
        runs.append(_read(params.method, found, time.perf_counter() - started, segments))
        stages.advance(found.evaluate.evaluations)
        if first is None:
            first = found
    assert first is not None
    if first.segments is not segments:  # gradcam's cells, occlusion's windows: the job's
        # own explanation is over the shared superpixels too, its weights their importances
        first = replace(
            first, segments=segments, weights=runs[0].importance, pixel_maps=first.maps()
        )
    if prefix.params.quality:
        shared = replace(prefix, progress=None).evaluator(segments)  # quality's: no progress
        runs = [
            replace(
                run,
                quality=faithfulness(run.importance, shared.quietly, prefix.f_full, run.f_empty),
            )
            for run in runs
        ]
    done = tuple(runs)
    return first, Comparison(runs=done, agreement=agreements(done))


def _read(method: str, found: Attribution, seconds: float, segments: np.ndarray) -> MethodRun:
    maps = found.maps()
    return MethodRun(
        method=method,
        seconds=seconds,
        model_evaluations=found.evaluate.evaluations,
        backward_passes=found.backward_passes,
        importance=importance(found, segments, maps),
        quality=None,
        maps=shrink_maps(maps, MAP_SIDE).astype(np.float32),
        f_empty=found.f_empty,
    )


def agreements(runs: tuple[MethodRun, ...]) -> tuple[Agreement, ...]:
    return tuple(agreement(a, b) for a, b in combinations(runs, 2))


def agreement(a: MethodRun, b: MethodRun) -> Agreement:
    """Spearman (average ranks for ties; 0 where either is constant) and top-k overlap of
    two methods' importances, per class."""
    m = a.importance.shape[1]
    k = min(TOP_K, m)
    ra, rb = rankdata(a.importance, axis=1), rankdata(b.importance, axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    norms = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    rho = np.where(norms > 0, (ra * rb).sum(axis=1) / np.where(norms > 0, norms, 1), 0.0)
    top_a = np.argsort(-a.importance, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-b.importance, axis=1, kind="stable")[:, :k]
    hits = (top_a[:, :, None] == top_b[:, None, :]).any(axis=2).sum(axis=1)
    return Agreement(a=a.method, b=b.method, spearman=rho, top_overlap=hits / k, k=k)
