"""Time to quality (GitHub issue #18): the wall time Glimpse needs, on this machine, to reach
lime_image-1000's error against LIME's estimand and shap KernelExplainer-1000's error
against the Shapley values, beside those peers' own times, and each method's curve of error
against seconds. Prints a table; writes bench/results/time-to-quality.json and
docs/time-to-quality.png.

Run: `.venv/bin/python bench/time_to_quality.py` (chelsea with quickshift at lime's defaults,
97 superpixels, black background: about 30 min here the first time; a rerun reads the
evaluated coalitions from the cache of bench/quality_scale.py and spends only the timed
runs, about 7 min). `--photos`, `--segmentation`, `--budgets`, `--seeds`, `--repeats`
override the defaults.

Two halves, joined by the budget:
* Error at each budget: every method on the configuration's coalition oracle
  (bench/scale/: each distinct coalition evaluated once), mean relative L2 over seeds,
  against bench/quality_scale.py's references (same seeds, so the cache is shared): lime's
  weighted regression over 20,000 coalitions for LIME's estimand, antithetic permutation
  sampling for the Shapley values, each with its relative SE (the error it cannot resolve).
* Seconds at each budget: one whole explanation of the photo from its pixels, model session
  warm, median of `--repeats`: Glimpse's engine (`worker.engine.explain.explain`: segment,
  perturb, evaluate, fit, its standard errors), `lime_image.explain_instance` (its own
  quickshift and perturbation, the same ONNX session behind `classifier_fn`), and shap's
  KernelExplainer on the superpixel game (quickshift, then Glimpse's composition on the
  model's grid: what a user has to write for it), all in batches of 64.

Time to quality: the smallest budget where Glimpse's error curve (log-log between measured
budgets) reaches the peer's 1000-evaluation error, its seconds read off Glimpse's own
time curve (a least-squares line in the budget), divided by the peer's measured seconds at
1000. The issue's target is ≤ 1/4 against lime_image.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quality import load_model  # noqa: E402
from bench.scale.estimators import BATCH, METHODS  # noqa: E402
from bench.scale.metrics import rel_l2  # noqa: E402
from bench.scale.oracle import PHOTOS, Scene, background_spec, segmentation_spec  # noqa: E402
from bench.scale.reference import lime_regression, shapley_permutations  # noqa: E402
from bench.scale.runner import LIME_SEED, REFERENCE_SEED, attempt, log  # noqa: E402

OUT = REPO / "bench" / "results" / "time-to-quality.json"
FIGURE = REPO / "docs" / "time-to-quality.png"
#: (Glimpse's method, the peer it races, the estimand both are judged against)
RACES = (
    ("glimpse_lime", "lime_image", "lime"),
    ("glimpse_kernel_shap", "shap_kernel_explainer", "shapley"),
)
PEER_BUDGET = 1000


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", nargs="+", choices=PHOTOS, default=["chelsea"])
    p.add_argument("--segmentation", default="quickshift", help="quickshift, slic<N>")
    p.add_argument("--budgets", nargs="+", type=int, default=[100, 150, 250, 500, 1000, 2000])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of the error curves")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per point (median)")
    p.add_argument("--pairs", type=int, default=150, help="pairs of the Shapley reference")
    p.add_argument("--lime-samples", type=int, default=20_000)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--figure", type=Path, default=FIGURE)
    args = p.parse_args(argv)
    if PEER_BUDGET not in args.budgets:
        p.error(f"--budgets must include {PEER_BUDGET}: the peers' budget the race is against")
    return args


# --- error against budget --------------------------------------------------------------------
def errors(scene: Scene, budgets: list[int], seeds: int, pairs: int, lime_samples: int) -> dict:
    oracle = scene.oracle()
    m = scene.m
    refs = {
        "shapley": shapley_permutations(oracle, m, pairs, REFERENCE_SEED),
        "lime": lime_regression(oracle, m, lime_samples, LIME_SEED),
    }
    oracle.save()
    out: dict = {"references": {k: {"rel_se": r.rel_se, "kind": r.kind} for k, r in refs.items()}}
    curves: dict[str, dict[str, list[float]]] = {}
    for ours, peer, estimand in RACES:
        for name in (ours, peer):
            per_budget = []
            for budget in budgets:
                runs = [attempt(METHODS[name], oracle, m, budget, s) for s in range(seeds)]
                failed = [o.failure for o in runs if o.weights is None]
                if failed:
                    raise RuntimeError(f"{name} at {budget}: {failed[0]}")
                found = [o.weights for o in runs if o.weights is not None]
                per_budget.append(float(np.mean([rel_l2(w, refs[estimand].values) for w in found])))
            oracle.save()
            curves[name] = {"budgets": list(budgets), "rel_l2": per_budget}
            shown = zip(budgets, per_budget, strict=True)
            log(f"  {name}: " + ", ".join(f"{b}: {e:.3f}" for b, e in shown))
    out["curves"] = curves
    out["model_calls"] = oracle.calls
    return out


# --- seconds against budget ------------------------------------------------------------------
def timers(scene: Scene, model):
    """name -> (budget -> seconds of one whole explanation of the photo)."""
    from lime.lime_image import LimeImageExplainer

    from glimpse.params import parse_params
    from worker.engine.evaluate import perturbed_evaluator
    from worker.engine.explain import explain, to_output_space
    from worker.engine.input_grid import InputGrid
    from worker.engine.segment import segment

    image, card, target = scene.image, model.card, scene.target
    grid = InputGrid(card, image.shape[:2])
    spec = {
        "segmentation": segmentation_spec(scene.segmentation).model_dump(),
        "background": background_spec(scene.background).model_dump(),
    }

    def glimpse(method: str):
        def run(budget: int) -> None:
            params = parse_params({"method": method, "num_samples": budget, **spec})
            explain(image, model, params, batch_size=BATCH)

        return run

    def lime_image(budget: int) -> None:
        if scene.segmentation != "quickshift" or scene.background != "black":
            raise ValueError("lime_image is timed with its own quickshift and hide_color 0 only")

        def classifier_fn(images: np.ndarray) -> np.ndarray:
            batch = np.stack([grid.image(im) for im in images])
            return to_output_space(model(batch), card, "probability")

        with mock.patch("lime.lime_image.tqdm", lambda rows, **_: rows):  # no progress bar
            LimeImageExplainer(random_state=0).explain_instance(
                image, classifier_fn, labels=(target,), top_labels=None, hide_color=0,
                num_samples=budget, batch_size=BATCH,
            )  # fmt: skip

    def shap_kernel(budget: int) -> None:
        import shap

        segments = segment(image, segmentation_spec(scene.segmentation))
        m = int(segments.max()) + 1
        raw = perturbed_evaluator(
            model, image, grid.image(image), grid, background_spec(scene.background), segments
        )

        def f(z: np.ndarray) -> np.ndarray:
            rows = np.asarray(z) > 0.5
            return np.concatenate(
                [
                    to_output_space(raw(rows[i : i + BATCH]), card, "probability")[:, target]
                    for i in range(0, len(rows), BATCH)
                ]
            )

        explainer = shap.KernelExplainer(f, np.zeros((1, m)))
        explainer.shap_values(np.ones((1, m)), nsamples=budget, l1_reg=False, silent=True)

    return {
        "glimpse_lime": glimpse("lime"),
        "glimpse_kernel_shap": glimpse("kernel_shap"),
        "lime_image": lime_image,
        "shap_kernel_explainer": shap_kernel,
    }


def seconds(scene: Scene, budgets: list[int], repeats: int) -> dict[str, list[float]]:
    model = scene.model()
    from worker.engine.input_grid import InputGrid

    model(np.stack([InputGrid(model.card, scene.image.shape[:2]).image(scene.image)] * BATCH))
    out: dict[str, list[float]] = {}
    for name, run in timers(scene, model).items():
        times = []
        for budget in budgets:
            taken = []
            for _ in range(repeats):
                started = time.perf_counter()
                run(budget)
                taken.append(time.perf_counter() - started)
            times.append(float(np.median(taken)))
        out[name] = times
        shown = zip(budgets, times, strict=True)
        log(f"  {name}: " + ", ".join(f"{b}: {t:.1f} s" for b, t in shown))
    return out


# --- the race --------------------------------------------------------------------------------
def budget_reaching(budgets: list[int], errs: list[float], target: float) -> float | None:
    """The smallest budget whose error (log-log between measured budgets) is ≤ target."""
    if errs[0] <= target:
        return float(budgets[0])  # already there at the smallest budget measured
    points = list(zip(budgets, errs, strict=True))
    for (b0, e0), (b1, e1) in zip(points, points[1:], strict=False):
        if e1 <= target < e0:
            t = (np.log(e0) - np.log(target)) / (np.log(e0) - np.log(e1))
            return float(np.exp(np.log(b0) + t * (np.log(b1) - np.log(b0))))
    return None


def time_line(budgets: list[int], times: list[float]) -> tuple[float, float]:
    """Least-squares seconds = a + b·budget."""
    slope, intercept = np.polyfit(np.asarray(budgets, float), np.asarray(times), 1)
    return float(intercept), float(slope)


def races(budgets: list[int], err: dict, secs: dict[str, list[float]]) -> dict:
    out = {}
    at = budgets.index(PEER_BUDGET)
    for ours, peer, estimand in RACES:
        target = err["curves"][peer]["rel_l2"][at]
        peer_s = secs[peer][at]
        needed = budget_reaching(budgets, err["curves"][ours]["rel_l2"], target)
        intercept, slope = time_line(budgets, secs[ours])
        ours_s = None if needed is None else intercept + slope * needed
        out[f"{ours}_vs_{peer}"] = {
            "estimand": estimand,
            "peer_rel_l2_at_1000": target,
            "peer_seconds_at_1000": peer_s,
            "glimpse_budget_needed": None if needed is None else round(needed),
            # already below the peer's error at the smallest budget measured: needed is at most
            "glimpse_reached_at_smallest_budget": err["curves"][ours]["rel_l2"][0] <= target,
            "glimpse_seconds_needed": ours_s,
            "glimpse_seconds_line": {"intercept": intercept, "per_evaluation": slope},
            "ratio": None if ours_s is None else ours_s / peer_s,
            "reference_rel_se": err["references"][estimand]["rel_se"],
        }
    return out


def figure(path: Path, results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(results), 2, figsize=(10, 3.6 * len(results)), squeeze=False, constrained_layout=True
    )
    for row, res in zip(axes, results, strict=True):
        for ax, (ours, peer, estimand) in zip(row, RACES, strict=True):
            for name, style in ((ours, "o-"), (peer, "s--")):
                ax.plot(res["seconds"][name], res["curves"][name]["rel_l2"], style, label=name)
                points = zip(
                    res["budgets"], res["seconds"][name], res["curves"][name]["rel_l2"], strict=True
                )
                for b, x, y in points:
                    ax.annotate(str(b), (x, y), fontsize=7)
            race = res["races"][f"{ours}_vs_{peer}"]
            ax.axhline(race["peer_rel_l2_at_1000"], color="gray", lw=0.8, ls=":")
            ax.axhline(race["reference_rel_se"], color="red", lw=0.8, ls=":", label="reference SE")
            ax.set_yscale("log")
            ax.set_xlabel("seconds per explanation (this machine)")
            ax.set_ylabel(f"rel L2 to the {estimand} reference")
            ax.set_title(f"{res['config']} (m = {res['m']}): {estimand}", fontsize=9)
            ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    budgets = sorted(args.budgets)
    started = time.perf_counter()
    results = []
    for photo in args.photos:
        scene = Scene(photo, args.segmentation, "black", load_model)
        log(f"{scene.name}: m = {scene.m}, target {scene.target} ({scene.label})")
        err = errors(scene, budgets, args.seeds, args.pairs, args.lime_samples)
        secs = seconds(scene, budgets, args.repeats)
        result: dict = {"config": scene.name, "m": scene.m, "target": scene.target}
        result |= {"budgets": budgets, "seconds": secs, **err}
        result["races"] = races(budgets, err, secs)
        results.append(result)
        for name, race in result["races"].items():
            ratio = race["ratio"]
            log(
                f"  {name}: peer {race['peer_rel_l2_at_1000']:.3f} in "
                f"{race['peer_seconds_at_1000']:.1f} s; Glimpse needs "
                + ("at most " if race["glimpse_reached_at_smallest_budget"] else "")
                + f"{race['glimpse_budget_needed']} evaluations, "
                + ("not reached" if ratio is None else f"{race['glimpse_seconds_needed']:.1f} s")
                + ("" if ratio is None else f" = {ratio:.2f} of the peer's time")
            )
    ratios = [r["ratio"] for res in results for r in res["races"].values()]
    lime_ratios = [res["races"]["glimpse_lime_vs_lime_image"]["ratio"] for res in results]
    doc = {
        "command": "bench/time_to_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "device": "cpu (ONNX Runtime, CPUExecutionProvider)",
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "target": {
            "text": "time to lime_image-1000's quality <= 1/4 of lime_image's own time",
            "met": all(r is not None and r <= 0.25 for r in lime_ratios),
            "lime_ratios": lime_ratios,
            "all_ratios": ratios,
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    figure(args.figure, results)
    print(json.dumps(doc["target"], indent=1))


if __name__ == "__main__":
    main()
