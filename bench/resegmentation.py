"""How much the superpixels alone move a map, against how much the sampling does.

Issue 18 asks for the seed-to-seed stability of the maps and for what re-segmentation alone
does to them. The seed fixes both the coalitions and quickshift's tie-breaking noise (a
1e-5 jitter), so on the quality benchmark's 8 photos (the shared EfficientNet, quickshift at
lime's defaults, black background, the top class) this runs Kernel SHAP (the engine's
default estimator) and LIME at `--budget` evaluations:

- `seed`: seed 0 against seed 1, the photo unchanged: sampling noise, plus whatever the
  tie-breaking noise changes in the superpixels (the report says whether they changed);
- `shift`: seed 0 against seed 0 on the photo with its first `--shift` rows and columns
  cropped off: the same coalition draws on superpixels that quickshift found again on a
  shifted grid, so a re-segmentation with the sampling noise of a different design;
- `tweak`: seed 0 against seed 0 with quickshift's `ratio` 0.2 → 0.25: another plausible
  segmentation of the same photo.

Each compares the per-pixel maps (attribution.npy) on the pixels both cover, by Spearman,
and the top-10% pixels' overlap. Writes bench/results/resegmentation.json.

    python bench/resegmentation.py [--budget 1000] [--photos chelsea,coffee]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.methods import MODEL, card  # noqa: E402
from bench.scale.oracle import PHOTOS, load_photo  # noqa: E402
from glimpse.params import parse_params  # noqa: E402
from worker.engine.explain import explain  # noqa: E402
from worker.runtime.onnx import OnnxRuntimeModel  # noqa: E402

BATCH = 64


def attribution(
    model: OnnxRuntimeModel, image: np.ndarray, cls: int | None, **params: object
) -> tuple[np.ndarray, np.ndarray, int]:
    """(the map of class `cls` (the top class where None), the superpixels, the class)."""
    targets = {"top_k": 1} if cls is None else {"classes": [cls]}
    e = explain(image, model, parse_params({"targets": targets, **params}), batch_size=BATCH)
    return e.attribution()[0], e.segments, int(e.targets[0])


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    rho = float(spearmanr(a.ravel(), b.ravel()).statistic)
    k = max(1, a.size // 10)
    top_a = set(np.argsort(-a.ravel(), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b.ravel(), kind="stable")[:k].tolist())
    return {"spearman": round(rho, 3), "top10pct_overlap": round(len(top_a & top_b) / k, 3)}


def run_photo(model: OnnxRuntimeModel, name: str, budget: int, shift: int) -> dict:
    image = load_photo(name)
    found: dict = {}
    cls = None
    for method in ("kernel_shap", "lime"):
        common = {"method": method, "num_samples": budget}
        base, segments, cls = attribution(model, image, cls, seed=0, **common)
        other, other_segments, _ = attribution(model, image, cls, seed=1, **common)
        shifted, _, _ = attribution(model, image[shift:, shift:], cls, seed=0, **common)
        tweak = {"algorithm": "quickshift", "ratio": 0.25}
        tweaked, _, _ = attribution(model, image, cls, seed=0, segmentation=tweak, **common)
        found[method] = {
            "superpixels": int(segments.max()) + 1,
            "seed_changes_superpixels": bool(not np.array_equal(segments, other_segments)),
            "seed": agreement(base, other),
            "shift": agreement(base[shift:, shift:], shifted),
            "tweak": agreement(base, tweaked),
        }
        print(name, method, json.dumps(found[method]), file=sys.stderr)
    found["class_index"] = cls
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--shift", type=int, default=2)
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "resegmentation.json"))
    args = parser.parse_args()
    model = OnnxRuntimeModel(MODEL, card())
    photos = {p: run_photo(model, p, args.budget, args.shift) for p in args.photos.split(",")}
    summary = {
        method: {
            kind: round(float(np.median([photos[p][method][kind]["spearman"] for p in photos])), 3)
            for kind in ("seed", "shift", "tweak")
        }
        for method in ("kernel_shap", "lime")
    }
    report = {
        "bench": "resegmentation",
        "command": f"python bench/resegmentation.py --budget {args.budget} --shift {args.shift}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": MODEL.name,
        "median_spearman": summary,
        "photos": photos,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
