"""One configuration (photo, segmentation, background) of bench/quality_scale.py, end to end:
references, every estimator at every budget and seed, the metrics, auto, and (optionally)
noise-to-noise stability. Returns one JSON-ready dict; all model evaluations go through the
configuration's `Oracle` (oracle.py), so a rerun reads its cache.

Each estimator run is wrapped: a failure is recorded (type and message) instead of ending
the run, warnings are collected (first message kept), and the rows it asked the oracle for
are counted (`evaluations`, what the method would spend on its own, repeats included;
`distinct`, what it cost here), with f(image) counted for methods that take it as known.

Not run on its own; see bench/quality_scale.py.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.scale import metrics as mt
from bench.scale.estimators import METHODS, Method, glimpse_auto
from bench.scale.oracle import Oracle
from bench.scale.reference import Reference, lime_regression, shapley_permutations

REFERENCE_SEED = 1_000_003  # far from the estimators' seeds 0..N: no shared random stream
LIME_SEED = 2_000_003
NOISE_SEEDS = (1, 2)


@dataclass
class Settings:
    budgets: list[int]
    seeds: list[int]
    pairs: int  # antithetic permutation pairs of the Shapley reference
    lime_samples: int  # coalitions of the LIME-estimand reference
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    noise: bool = False
    noise_budgets: list[int] = field(default_factory=lambda: [1000])
    noise_sigma: float = 2.0
    auto_max: int = 2000


@dataclass
class Outcome:
    weights: np.ndarray | None
    evaluations: int
    distinct: int
    seconds: float
    failure: str | None
    warning: str | None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def attempt(method: Method, oracle: Oracle, m: int, budget: int, seed: int) -> Outcome:
    full = np.packbits(np.ones(m, bool)).tobytes()
    started = time.perf_counter()
    weights, failure = None, None
    with warnings.catch_warnings(record=True) as caught, oracle.tally() as tally:
        warnings.simplefilter("always")
        try:
            out = np.asarray(method.run(oracle, m, budget, seed), np.float64).reshape(-1)
            if out.shape != (m,) or not np.all(np.isfinite(out)):
                raise ValueError(f"returned shape {out.shape}, finite: {np.isfinite(out).all()}")
            weights = out
        except Exception as error:  # a peer's failure is a result, not the end of the run
            failure = f"{type(error).__name__}: {str(error)[:300]}"
    first = next((f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught), None)
    missing_full = int(full not in tally.keys)
    return Outcome(
        weights,
        tally.rows + missing_full,
        tally.distinct + missing_full,
        time.perf_counter() - started,
        failure,
        first,
    )


def judge(
    weights: np.ndarray, ref: Reference, oracle: Oracle, with_auc: bool = True
) -> dict[str, float]:
    error = mt.rel_l2(weights, ref.values)
    row = {
        "rel_l2": error,
        "rel_l2_beyond_reference": mt.rel_l2_beyond_reference(error, ref.rel_se),
        "se_ratio": mt.se_ratio(ref.rel_se, error),
        "top5": mt.top_k_recall(weights, ref.values, 5),
        "top10": mt.top_k_recall(weights, ref.values, 10),
        "spearman": mt.spearman(weights, ref.values),
    }
    if with_auc:
        row["deletion_auc"], row["insertion_auc"] = mt.deletion_insertion(oracle, weights)
    return row


METRICS = (
    "rel_l2",
    "rel_l2_beyond_reference",
    "se_ratio",
    "top5",
    "top10",
    "spearman",
    "deletion_auc",
    "insertion_auc",
)


def run_config(scene, oracle: Oracle, settings: Settings, noisy: list[Oracle] | None) -> dict:
    m = scene.m
    started = time.perf_counter()
    calls_before = oracle.calls
    refs = {
        "shapley": shapley_permutations(oracle, m, settings.pairs, REFERENCE_SEED),
        "lime": lime_regression(oracle, m, settings.lime_samples, LIME_SEED),
    }
    oracle.save()
    ref_seconds = time.perf_counter() - started
    log(
        f"  references: shapley rel SE {refs['shapley'].rel_se:.3f}, lime rel SE "
        f"{refs['lime'].rel_se:.3f}, {oracle.calls - calls_before} model calls, "
        f"{ref_seconds:.0f} s"
    )
    reference_auc = {}
    for kind, ref in refs.items():
        d, i = mt.deletion_insertion(oracle, ref.values)
        reference_auc[kind] = {"deletion_auc": d, "insertion_auc": i}

    methods: dict[str, dict] = {}
    fixed_1000: dict[int, np.ndarray] = {}
    for name in settings.methods:
        method = METHODS[name]
        ref = refs[method.estimand]
        t0, c0 = time.perf_counter(), oracle.calls
        rows: dict[str, dict] = {}
        for budget in settings.budgets:
            outcomes = [attempt(method, oracle, m, budget, s) for s in settings.seeds]
            pairs = zip(settings.seeds, outcomes, strict=True)
            ok = [(s, o.weights) for s, o in pairs if o.weights is not None]
            judged = [judge(w, ref, oracle) for _, w in ok]
            row: dict = {k: mt.nanmean([j[k] for j in judged]) for k in METRICS}
            row["seed_to_seed_spearman"] = mt.mean_pairwise_spearman([w for _, w in ok])
            row["evaluations"] = float(np.mean([o.evaluations for o in outcomes]))
            row["distinct"] = float(np.mean([o.distinct for o in outcomes]))
            row["over_budget"] = bool(any(o.evaluations > budget for o in outcomes))
            row["seconds"] = float(np.mean([o.seconds for o in outcomes]))
            row["runs"] = len(outcomes)
            row["failed"] = len(outcomes) - len(ok)
            row["per_seed"] = {
                "seeds": [s for s, _ in ok],
                "rel_l2": [j["rel_l2"] for j in judged],
                "top10": [j["top10"] for j in judged],
                "evaluations": [o.evaluations for o in outcomes],
            }
            failures = sorted({o.failure for o in outcomes if o.failure})
            if failures:
                row["failures"] = failures
            first = next((o.warning for o in outcomes if o.warning), None)
            if first:
                row["warning"] = first
            if settings.noise and budget in settings.noise_budgets and noisy:
                row["noise_to_noise_spearman"] = noise_to_noise(method, noisy, m, budget, settings)
            if name == "glimpse_kernel_shap" and budget == 1000:
                fixed_1000 = dict(ok)
            rows[str(budget)] = row
        oracle.save()
        methods[name] = rows
        summary = ", ".join(
            f"{b}: rel L2 {r['rel_l2']:.3f} top10 {r['top10']:.2f}" for b, r in rows.items()
        )
        log(
            f"  {name}: {summary} ({time.perf_counter() - t0:.0f} s, "
            f"{oracle.calls - c0} model calls)"
        )

    auto = run_auto(oracle, m, refs["shapley"], settings, fixed_1000)
    oracle.save()
    return {
        "config": scene.name,
        "photo": scene.photo,
        "segmentation": scene.segmentation,
        "background": scene.background,
        "m": m,
        "target": scene.target,
        "target_label": scene.label,
        "target_probability": scene.target_probability,
        "f_image": oracle.full(),
        "f_background": oracle.empty(),
        "reference": {k: r.summary() for k, r in refs.items()},
        "reference_seconds": round(ref_seconds, 1),
        "reference_auc": reference_auc,
        "methods": methods,
        "auto": auto,
        "model_calls": oracle.calls,
        "cached_coalitions_used": len(oracle.disk_hits),
        "seconds": round(time.perf_counter() - started, 1),
    }


def noise_to_noise(
    method: Method, noisy: list[Oracle], m: int, budget: int, settings: Settings
) -> float:
    """Spearman between the method's weights on the two noisy copies at the same seed,
    mean over seeds (same seed: the same draw where the sampler does not look at values)."""
    values = []
    for seed in settings.seeds:
        pair = [attempt(method, o, m, budget, seed).weights for o in noisy]
        if pair[0] is not None and pair[1] is not None:
            values.append(mt.spearman(pair[0], pair[1]))
    for o in noisy:
        o.save()
    return mt.nanmean(values)


def run_auto(
    oracle: Oracle,
    m: int,
    ref: Reference,
    settings: Settings,
    fixed_1000: dict[int, np.ndarray],
) -> dict:
    """Glimpse Kernel SHAP with num_samples "auto" (max settings.auto_max) per seed, beside
    fixed 1000 at the same seed."""
    from bench.scale.estimators import glimpse_fixed
    from worker.engine.kernel_shap import KernelShap

    runs: list[dict[str, Any]] = []
    for seed in settings.seeds:
        weights, evaluations, converged, rounds = glimpse_auto(
            oracle, m, seed, max_samples=settings.auto_max
        )
        if seed not in fixed_1000:
            fixed_1000[seed] = glimpse_fixed(KernelShap(), oracle, m, 1000, seed)
        runs.append(
            {
                "seed": seed,
                "evaluations": evaluations,
                "converged": converged,
                "rounds": rounds,
                **judge(weights, ref, oracle, with_auc=False),
                "fixed_1000": judge(fixed_1000[seed], ref, oracle, with_auc=False),
                "weights": weights,
            }
        )
    all_weights = [r.pop("weights") for r in runs]
    return {
        "max_samples": settings.auto_max,
        "median_evaluations": float(np.median([r["evaluations"] for r in runs])),
        "converged_share": float(np.mean([r["converged"] for r in runs])),
        "rel_l2": mt.nanmean([r["rel_l2"] for r in runs]),
        "top10": mt.nanmean([r["top10"] for r in runs]),
        "spearman": mt.nanmean([r["spearman"] for r in runs]),
        "seed_to_seed_spearman": mt.mean_pairwise_spearman(all_weights),
        "fixed_1000_rel_l2": mt.nanmean([r["fixed_1000"]["rel_l2"] for r in runs]),
        "fixed_1000_top10": mt.nanmean([r["fixed_1000"]["top10"] for r in runs]),
        "runs": runs,
    }
