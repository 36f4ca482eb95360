"""Do the standard errors say how far an explanation moves from seed to seed? (GitHub issue
#18.) `weights_se` and everything built on it (`top_resolution`, `top_settled`, auto's stop)
are only as honest as their calibration. For Glimpse's LIME and Kernel SHAP at a fixed
budget on the scale bench's photos (bench/settled.py's configurations: SLIC-50, 25-42
superpixels, and chelsea with lime's quickshift, 97), N seeds of the same explanation: the
ratio of the stated standard error to the actual seed-to-seed spread of each weight (1 is
exact, above 1 conservative: auto then spends more than it needs; below 1 the settled
guarantee is weaker than it says). Prints a table; writes bench/results/calibration.json.

Run: `.venv/bin/python bench/calibration.py` (5 configurations × 2 methods × 16 seeds at
1000 evaluations: about 15 min on this 2-core machine, no model calls for the coalitions
bench/quality_scale.py's cache already holds).

Per configuration and method: `se_ratio` (root mean square over seeds and superpixels of
the standard errors over that of the spread), `median_se_ratio` (per superpixel), the
median `top_resolution` and the median fit time (the standard errors included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale.estimators import glimpse_fit  # noqa: E402
from bench.scale.runner import log  # noqa: E402
from bench.settled import arguments, estimator, scenes, write  # noqa: E402

OUT = REPO / "bench" / "results" / "calibration.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = arguments(__doc__.split("\n\n")[0], seeds=16)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--out", type=Path, default=OUT)
    return p.parse_args(argv)


class Timed:
    """An estimator whose `fit` calls are timed (the model's evaluations are not)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def fit(self, *args):
        started = time.perf_counter()
        try:
            return self.inner.fit(*args)
        finally:
            self.seconds += time.perf_counter() - started


def calibration(game, m: int, method: str, budget: int, seeds: int) -> dict:
    """The seed-to-seed spread of `method`'s weights at `budget` against its stated errors."""
    weights, errors, resolution, seconds = [], [], [], []
    for seed in range(seeds):
        timed = Timed(estimator(method))
        fit = glimpse_fit(timed, game, m, budget, seed)
        seconds.append(timed.seconds)
        weights.append(fit.weights[0])
        errors.append(fit.se[0])
        resolution.append(float(fit.resolution[0]))
    spread = np.std(weights, axis=0, ddof=1)
    stated = np.sqrt(np.mean(np.square(errors), axis=0))
    moving = spread > 0
    return {
        "se_ratio": round(float(np.sqrt(np.mean(stated**2) / np.mean(spread**2))), 3),
        "median_se_ratio": round(float(np.median(stated[moving] / spread[moving])), 3),
        "median_resolution": round(float(np.median(resolution)), 5),
        "median_seconds": round(float(np.median(seconds)), 3),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    results = []
    for scene in scenes(args):
        oracle = scene.oracle()
        out: dict = {"config": scene.name, "m": scene.m, "methods": {}}
        for method in args.methods:
            out["methods"][method] = calibration(oracle, scene.m, method, args.budget, args.seeds)
            oracle.save()
            log(f"{scene.name} (m = {scene.m}) {method}: {out['methods'][method]}")
        results.append(out)
    settings = {"seeds": args.seeds, "budget": args.budget}
    write("bench/calibration.py", args, argv, {"settings": settings, "results": results}, started)


if __name__ == "__main__":
    main()
