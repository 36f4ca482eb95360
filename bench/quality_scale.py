"""Estimator quality at the superpixel counts users run (m = 20..200), where 2^m enumeration
is impossible (GitHub issue #18): every estimator against sampled references that carry
their own standard errors. Prints a compact table; writes bench/results/quality-scale.json.

Run: `.venv/bin/python bench/quality_scale.py --quick` (4 photos × SLIC-50 × black, budgets
500 and 1000, 3 seeds, a 150-pair antithetic reference: about 50 min on this 2-core machine,
65 with `--quickshift-chelsea`; no model calls on a rerun; `--show` prints the saved table
and targets again), or without `--quick` for the full preset (8 photos ×
{quickshift, slic50, slic20} × {black, blur}, budgets 250..2000, 10 seeds, noise-to-noise
stability: a GPU-sized run). `--photos`, `--segmentations`, `--backgrounds`, `--budgets`,
`--seeds`, `--pairs`, `--lime-samples`, `--methods` override a preset;
`--quickshift-chelsea` adds chelsea with lime's quickshift (m = 97) to the quick preset;
`--estimate` runs the pipeline on a synthetic game of each configuration's m (no model
calls) and prints how many evaluations the real run would make.

How (bench/scale/): one `Oracle` per configuration evaluates the model's top-1 probability
on coalition matrices, each distinct coalition once, cached on disk under
/tmp/glimpse-quality-scale (oracle.py); references: Shapley values by antithetic permutation
sampling and LIME's estimand by a 20,000-coalition regression, each with its SE
(reference.py); the estimators: Glimpse's Kernel SHAP (default, leverage, order 1, auto),
Glimpse's LIME, shap's KernelExplainer, lime_image, eight shapiq approximators, captum's
KernelShap and Lime, all on the same oracle (estimators.py); metrics (metrics.py), one
configuration end to end (runner.py), targets and table (report.py). The model and its
preprocessing come from bench/quality.py (`load_model`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale import report  # noqa: E402
from bench.scale.estimators import METHODS  # noqa: E402
from bench.scale.oracle import CACHE, PHOTOS, Oracle, Scene  # noqa: E402
from bench.scale.runner import NOISE_SEEDS, Settings, log, run_config  # noqa: E402

OUT = REPO / "bench" / "results" / "quality-scale.json"
PRESETS: dict[str, dict] = {
    "quick": {
        "photos": ["chelsea", "coffee", "astronaut", "china"],
        "segmentations": ["slic50"],
        "backgrounds": ["black"],
        "budgets": [500, 1000],
        "seeds": 3,
        "pairs": 150,
        "lime_samples": 20_000,
        "noise": False,
    },
    "full": {
        "photos": list(PHOTOS),
        "segmentations": ["quickshift", "slic50", "slic20"],
        "backgrounds": ["black", "blur"],
        "budgets": [250, 500, 1000, 2000],
        "seeds": 10,
        "pairs": 500,
        "lime_samples": 20_000,
        "noise": True,
    },
}
VERSIONS = ("shap", "shapiq", "lime", "captum", "torch", "numpy", "scikit-image", "onnxruntime")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the small preset (run on CPU)")
    p.add_argument("--photos", nargs="+", choices=PHOTOS)
    p.add_argument("--segmentations", nargs="+", help="quickshift, slic50, slic20, slic<N>")
    p.add_argument("--backgrounds", nargs="+", choices=["black", "blur"])
    p.add_argument("--budgets", nargs="+", type=int)
    p.add_argument("--seeds", type=int, help="seeds 0..N-1")
    p.add_argument("--pairs", type=int, help="antithetic permutation pairs of the reference")
    p.add_argument("--lime-samples", type=int, help="coalitions of the LIME-estimand reference")
    p.add_argument("--methods", nargs="+", choices=list(METHODS))
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--quickshift-chelsea",
        action="store_true",
        help="also chelsea with lime's quickshift (m = 97), black background",
    )
    p.add_argument("--estimate", action="store_true", help="count evaluations, no model calls")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument(
        "--show",
        action="store_true",
        help="print the table and targets of the JSON at --out (no run)",
    )
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[str, dict, list[tuple[str, str, str]]]:
    name = "quick" if args.quick else "full"
    preset = dict(PRESETS[name])
    for key in ("photos", "segmentations", "backgrounds", "budgets", "seeds", "pairs", "noise"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    if args.lime_samples is not None:
        preset["lime_samples"] = args.lime_samples
    configs = [
        (photo, seg, bg)
        for photo in preset["photos"]
        for seg in preset["segmentations"]
        for bg in preset["backgrounds"]
    ]
    if args.quickshift_chelsea and ("chelsea", "quickshift", "black") not in configs:
        configs.append(("chelsea", "quickshift", "black"))
    return name, preset, configs


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "device": "cpu (ONNX Runtime, CPUExecutionProvider)",
    }


def versions() -> dict:
    out = {}
    for package in VERSIONS:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def synthetic(m: int, seed: int):
    """A probability-like game of m players for --estimate: a sigmoid of main effects and a
    few pairs and triples (its values shape auto's stopping and the curves' rows)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 4 / np.sqrt(m), m)
    pairs = rng.choice(m, size=(m // 2, 2))
    triples = rng.choice(m, size=(m // 4, 3))

    def game(z: np.ndarray) -> np.ndarray:
        x = np.asarray(z, np.float64)
        s = x @ a - 1.0 + 0.5 * np.prod(x[:, pairs], axis=2).sum(axis=1)
        s += 0.5 * np.prod(x[:, triples], axis=2).sum(axis=1)
        return 1 / (1 + np.exp(-s))

    return game


def clean(value):
    """JSON-safe: NaN and ±inf as null, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


NOTES = [
    "Budgets count model evaluations, f(image) included; `evaluations` is what a method asked "
    "the oracle for (repeats included: what it would spend on its own), `distinct` what it "
    "cost here; over_budget flags a method that asked for more rows than its budget.",
    "Shapley-family methods are judged against the antithetic permutation reference, LIME-"
    "family ones (glimpse_lime, lime_image, captum_lime) against the LIME estimand (lime's "
    "kernel, width 0.25, keep probability 0.5, weighted least squares over lime_samples "
    "coalitions). rel_l2 includes the reference's own error; rel_l2_beyond_reference = "
    "sqrt(max(rel_l2^2 - rel_se^2, 0)); se_ratio = reference rel SE / rel_l2 (small: the "
    "reference is sharp enough to judge that error).",
    "Reference SE: Shapley per feature = std over permutation pairs / sqrt(pairs); LIME = "
    "|half A - half B| / 2. rel_se = ||SE|| / ||phi||.",
    "top5/top10: recall of the reference's k largest (positive direction) among the "
    "estimate's k largest. seed_to_seed_spearman: mean over pairs of seeds. Deletion / "
    "insertion AUC: one superpixel per step in decreasing weight, trapezoid over the fraction "
    "moved, in probability; reference_auc gives the references' own.",
    "lime_image runs on a 1 x m image whose pixel j is superpixel j (hide_color 0): lime's "
    "sampler, kernel and Ridge unchanged, the background being the oracle's. shap "
    "KernelExplainer: l1_reg=False, background = all hidden. shapiq: first-order values via "
    "InteractionValues.get_n_order_values(1) (the empty coalition's value is the order-0 "
    "baseline, outside them); leverage = KernelSHAP(pairing_trick=True, sampling_weights "
    "uniform over sizes 1..m-1); kADDSHAP, SVARM, PermutationSamplingSV, UnbiasedKernelSHAP, "
    "OwenSamplingSV, StratifiedSamplingSV at their defaults. captum: feature_mask of m "
    "features, perturbations_per_eval 64, Lime with lime's kernel and Ridge(alpha=1).",
    "auto: Glimpse Kernel SHAP num_samples='auto' (rounds.adaptive, max_samples 2000), per "
    "seed, beside fixed 1000 at the same seed.",
]


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.show:
        saved = json.loads(args.out.read_text())
        budgets = [int(b) for b in saved["header"]["settings"]["budgets"]]
        print(report.table(saved["estimators"], saved["configs"], budgets))
        print(json.dumps(saved["targets"], indent=1))
        return
    name, preset, configs = plan(args)
    seeds = list(range(int(preset["seeds"])))
    settings = Settings(
        budgets=[int(b) for b in preset["budgets"]],
        seeds=seeds,
        pairs=int(preset["pairs"]),
        lime_samples=int(preset["lime_samples"]),
        methods=args.methods or list(METHODS),
        noise=bool(preset["noise"]),
    )
    from bench.quality import cached_model as model

    started = time.perf_counter()
    results, calls, served = [], 0, 0
    header = {
        "preset": name,
        "settings": {**preset, "seeds": seeds, "configs": ["/".join(c) for c in configs]},
        "reductions": (
            ["quickshift on chelsea not run (add --quickshift-chelsea)"]
            if name == "quick" and ("chelsea", "quickshift", "black") not in configs
            else []
        ),
        "machine": machine(),
        "versions": versions(),
        "command": "bench/quality_scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "cache": str(CACHE),
    }
    for i, (photo, seg, bg) in enumerate(configs):
        scene = Scene(photo, seg, bg, model)
        log(f"[{i + 1}/{len(configs)}] {scene.name}: m = {scene.m}, target {scene.target}")
        if args.estimate:
            oracle = Oracle(synthetic(scene.m, i), scene.m)
            noisy = [Oracle(synthetic(scene.m, i), scene.m) for _ in NOISE_SEEDS]
        else:
            oracle = scene.oracle()
            noisy = [scene.oracle(s, settings.noise_sigma) for s in NOISE_SEEDS]
        result = run_config(scene, oracle, settings, noisy if settings.noise else None)
        calls += oracle.calls + sum(o.calls for o in noisy)
        served += oracle.rows - oracle.calls + sum(o.rows - o.calls for o in noisy)
        results.append(result)
        log(f"  {oracle.calls} model calls, {time.perf_counter() - started:.0f} s so far")
        if not args.estimate:
            write(args.out, header, results, settings, started, calls, served, final=False)
    if args.estimate:
        print(
            json.dumps(
                {
                    "model_calls": calls,
                    "by_config": [r["model_calls"] for r in results],
                    "seconds_without_model": round(time.perf_counter() - started),
                }
            )
        )
        return
    out = write(args.out, header, results, settings, started, calls, served, final=True)
    print(report.table(out["estimators"], results, settings.budgets))
    print(json.dumps(clean(out["targets"]), indent=1))


def write(
    path: Path,
    header: dict,
    results: list[dict],
    settings: Settings,
    started: float,
    calls: int,
    served: int,
    *,
    final: bool,
) -> dict:
    configs = [{k: v for k, v in r.items() if k != "methods"} for r in results]
    out = {
        "header": {
            **header,
            "complete": final,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "model_calls": calls,
            "rows_served_without_a_model_call": served,
            "cached_coalitions_used": sum(r["cached_coalitions_used"] for r in results),
        },
        "notes": NOTES,
        "configs": configs,
        "estimators": report.estimators_block(results),
        "targets": report.targets(results, settings.budgets),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(out), indent=1, ensure_ascii=False) + "\n")
    return out


if __name__ == "__main__":
    main()
