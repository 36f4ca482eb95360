"""Does "settled" hold, and what does it cost? (GitHub issue #18.) For Glimpse's LIME and
Kernel SHAP on the scale bench's photos (bench/quality_scale.py: SLIC-50, 25-42 superpixels,
and chelsea with lime's quickshift, 97), `num_samples: "auto"`'s rounds up to max_samples,
each round's `top_resolution` (worker/engine/uncertainty.py: the share of Σ|weights| up to
which the top 5 is known) checked against the references: a superpixel left out of the
estimated top 5 must not exceed one inside by more than that share, beyond the reference's
own noise (1.96 standard errors of the difference). Prints a table; writes
bench/results/settled.json.

Run: `.venv/bin/python bench/settled.py` (5 configurations × 2 methods × 3 seeds to 2000
evaluations: no model calls once bench/quality_scale.py's cache holds them, else about 30 min
on this 2-core machine). `--max-samples 20000 --seeds 1` runs auto to the service's cap
(what it spends to reach the default tolerance, 1 %).

Per round: evaluations, resolution, whether the guarantee held (`holds`: beyond the
reference's noise; `holds_raw`: against the reference as if exact), rel L2, top-5/top-10
recall. Per configuration and method: the resolution at 1000 evaluations (log-log between
the rounds around it) and the evaluations auto spent to reach 3 %, 2 % and 1 % (null: not
within max_samples).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale import metrics as mt  # noqa: E402
from bench.scale.estimators import glimpse_auto  # noqa: E402
from bench.scale.oracle import Scene  # noqa: E402
from bench.scale.reference import Reference, lime_regression, shapley_permutations  # noqa: E402
from bench.scale.runner import LIME_SEED, REFERENCE_SEED, log  # noqa: E402
from worker.engine.uncertainty import top_k  # noqa: E402

OUT = REPO / "bench" / "results" / "settled.json"
CONFIGS = [
    *((photo, "slic50") for photo in ("chelsea", "coffee", "astronaut", "china")),
    ("chelsea", "quickshift"),
]
TOLERANCES = (0.03, 0.02, 0.01)
PAIRS, LIME_SAMPLES = 150, 20_000  # bench/quality_scale.py's quick preset: its cache


def arguments(description: str, seeds: int) -> argparse.ArgumentParser:
    """The options this bench shares with bench/calibration.py: which configurations,
    methods and seeds."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--photos", nargs="+", help="only these photos of the configurations")
    p.add_argument("--segmentations", nargs="+", help="only these (slic50, quickshift)")
    p.add_argument("--methods", nargs="+", default=["lime", "kernel_shap"])
    p.add_argument("--seeds", type=int, default=seeds, help="seeds 0..N-1")
    return p


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = arguments(__doc__.split("\n\n")[0], seeds=3)
    p.add_argument("--max-samples", type=int, default=2000)
    p.add_argument("--out", type=Path, default=OUT)
    return p.parse_args(argv)


def estimator(method: str):
    """Glimpse's estimator for a --methods name (lime, kernel_shap), at its defaults."""
    from worker.engine.kernel_shap import KernelShap
    from worker.engine.lime import Lime

    return {"lime": Lime, "kernel_shap": KernelShap}[method]()


def holds(weights: np.ndarray, resolution: float, ref: Reference, *, noise: bool) -> bool:
    """The indifference-zone guarantee against the reference: no superpixel outside the
    estimate's top 5 exceeds one inside by more than resolution · Σ|weights| (plus 1.96
    reference standard errors of the difference with `noise`)."""
    k = top_k(len(weights))
    ranked = np.argsort(-weights, kind="stable")
    inside, outside = ranked[:k], ranked[k:]
    excess = ref.values[outside][None, :] - ref.values[inside][:, None]
    allowed = resolution * float(np.abs(weights).sum())
    if noise:
        allowed = allowed + 1.96 * np.hypot(ref.se[outside][None, :], ref.se[inside][:, None])
    return bool((excess <= allowed).all())


def at_budget(rounds: list[dict], budget: int) -> float | None:
    """The resolution at `budget`, log-log between the rounds around it (null outside them;
    the earlier round's where the later one reached 0)."""
    below = [r for r in rounds if r["evaluations"] <= budget]
    above = [r for r in rounds if r["evaluations"] >= budget]
    if not below or not above:
        return None
    a, b = below[-1], above[0]
    if a["evaluations"] == b["evaluations"]:
        return float(a["resolution"])
    if a["resolution"] <= 0 or b["resolution"] <= 0:  # no log-log line: the round before
        return float(a["resolution"])
    t = np.log(budget / a["evaluations"]) / np.log(b["evaluations"] / a["evaluations"])
    return float(np.exp((1 - t) * np.log(a["resolution"]) + t * np.log(b["resolution"])))


def auto_rounds(oracle, m: int, method: str, seed: int, max_samples: int, ref: Reference):
    """auto's rounds to max_samples (tolerance 0: it stops early only where every top/rest
    pair is separated, settled at any tolerance)."""
    rounds: list[dict] = []

    def seen(evaluations: int, fit) -> None:
        w, resolution = fit.weights[0], float(fit.resolution[0])
        rounds.append(
            {
                "evaluations": int(evaluations),
                "resolution": resolution,
                "holds": holds(w, resolution, ref, noise=True),
                "holds_raw": holds(w, resolution, ref, noise=False),
                "rel_l2": mt.rel_l2(w, ref.values),
                "top5": mt.top_k_recall(w, ref.values, 5),
                "top10": mt.top_k_recall(w, ref.values, 10),
            }
        )

    glimpse_auto(
        oracle,
        m,
        seed,
        max_samples=max_samples,
        estimator=estimator(method),
        tolerance=0.0,
        on_round=seen,
    )
    return rounds


def summary(runs: list[list[dict]]) -> dict:
    """Over seeds: resolution at 1000, evaluations to each tolerance, the guarantee's record."""
    every = [r for rounds in runs for r in rounds]
    reach = {}
    for tol in TOLERANCES:
        spent = [
            next((r["evaluations"] for r in rs if r["resolution"] <= tol), None) for rs in runs
        ]
        reach[f"{tol:g}"] = spent
    at_1000 = [at_budget(rs, 1000) for rs in runs]
    return {
        "resolution_at_1000": at_1000,
        "median_resolution_at_1000": float(np.median([v for v in at_1000 if v is not None]))
        if any(v is not None for v in at_1000)
        else None,
        "evaluations_to_reach": reach,
        "rounds_judged": len(every),
        "guarantee_held": sum(r["holds"] for r in every),
        "guarantee_held_raw": sum(r["holds_raw"] for r in every),
    }


def run(scene: Scene, methods: list[str], seeds: int, max_samples: int) -> dict:
    oracle, m = scene.oracle(), scene.m
    refs = {
        "kernel_shap": shapley_permutations(oracle, m, PAIRS, REFERENCE_SEED),
        "lime": lime_regression(oracle, m, LIME_SAMPLES, LIME_SEED),
    }
    out: dict = {"config": scene.name, "m": m, "methods": {}}
    for method in methods:
        runs = [auto_rounds(oracle, m, method, s, max_samples, refs[method]) for s in range(seeds)]
        oracle.save()
        out["methods"][method] = {**summary(runs), "runs": runs}
        s = out["methods"][method]
        log(
            f"  {method}: resolution at 1000 {s['median_resolution_at_1000']}, to 1 %: "
            f"{s['evaluations_to_reach']['0.01']}, guarantee held {s['guarantee_held']}/"
            f"{s['rounds_judged']} ({s['guarantee_held_raw']} without the reference's noise)"
        )
    return out


def scenes(args: argparse.Namespace) -> list[Scene]:
    """CONFIGS as `Scene`s (black background), filtered by --photos and --segmentations."""
    from bench.quality import cached_model as model

    return [
        Scene(photo, seg, "black", model)
        for photo, seg in CONFIGS
        if (not args.photos or photo in args.photos)
        and (not args.segmentations or seg in args.segmentations)
    ]


def write(
    script: str, args: argparse.Namespace, argv: list[str] | None, body: dict, started: float
) -> None:
    """The results JSON at args.out, with the command that gave it (`script` and its
    arguments) and its wall time."""
    given = sys.argv[1:] if argv is None else argv
    out = {"command": f"{script} " + " ".join(given), **body}
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    log(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    results = []
    for scene in scenes(args):
        log(f"{scene.name}: m = {scene.m}")
        results.append(run(scene, args.methods, args.seeds, args.max_samples))
    settings = {"seeds": args.seeds, "max_samples": args.max_samples, "pairs": PAIRS}
    body = {"settings": settings, "tolerances": list(TOLERANCES), "results": results}
    write("bench/settled.py", args, argv, body, started)


if __name__ == "__main__":
    main()
