"""Every method on the quality benchmark's photos: CPU cost and deletion/insertion AUC.

The shared EfficientNet-Lite0 (real ImageNet weights) on ONNX Runtime, the gradient methods
through the torch runtime it hands the same file to; each photo of bench/scale/oracle.py's
PHOTOS at the defaults a user gets (quickshift with lime's settings, black background, the
top class), every method on the same superpixels, so the faithfulness curves (RISE's
deletion and insertion, worker/engine/quality.py) compare like with like. Budgets: LIME,
Kernel SHAP and Partition SHAP 1000 evaluations; Integrated Gradients and XRAI 50 steps;
Grad-CAM one pass; occlusion its default windows (up to 2000). Seconds are the engine's wall
time of the explanation (segmentation included, the quality pass not).

    python bench/methods.py [--photos chelsea,coffee] [--docs]

prints one JSON object and writes bench/results/methods.json; `--docs` also writes the
example figures docs/method-integrated_gradients.png and docs/method-xrai.png (chelsea,
through `glimpse explain` as a user runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale.oracle import PHOTOS, load_photo  # noqa: E402
from glimpse.cards import PRESETS, ModelCard  # noqa: E402
from glimpse.params import parse_params  # noqa: E402
from worker.engine.explain import explain  # noqa: E402
from worker.runtime.onnx import OnnxRuntimeModel  # noqa: E402

SHARED = REPO.parent / "shared" / "models"
MODEL = SHARED / "efficientnet-lite0.onnx"
LABELS = SHARED / "imagenet1k_labels.txt"
BATCH = 64
METHODS: dict[str, dict] = {
    "lime": {"num_samples": 1000},
    "kernel_shap": {"num_samples": 1000},
    "partition_shap": {"num_samples": 1000},
    "gradcam": {},
    "occlusion": {"num_samples": 2000},  # its default windows need ~1000 on 640 × 427
    "integrated_gradients": {"integrated_gradients": {"steps": 50}},
    "xrai": {"integrated_gradients": {"steps": 50}},
}
DOCS = ("integrated_gradients", "xrai")


def card() -> ModelCard:
    return ModelCard(
        input_name="data",
        output_name="logits",
        num_classes=1000,
        **PRESETS["imagenet-squash"],  # type: ignore[arg-type]
    )


def run_photo(model: OnnxRuntimeModel, photo: str) -> dict[str, dict]:
    image = load_photo(photo)
    found = {}
    for method, extra in METHODS.items():
        params = parse_params({"method": method, **extra})
        started = time.perf_counter()
        e = explain(image, model, params, batch_size=BATCH)
        wall = time.perf_counter() - started
        assert e.quality is not None
        found[method] = {
            "seconds": round(e.evaluation_seconds + e.segmentation_seconds, 2),
            "wall_seconds_with_quality": round(wall, 2),
            "model_evaluations": e.model_evaluations,
            "backward_passes": e.backward_passes,
            "regions": e.n_segments,
            "class_index": int(e.targets[0]),
            "deletion_auc": round(float(e.quality.deletion_auc[0]), 4),
            "insertion_auc": round(float(e.quality.insertion_auc[0]), 4),
        }
        if e.attribution_sum is not None and e.target_scores is not None:
            difference = float(e.target_scores[0] - e.base_value[0])
            gap = float(e.attribution_sum[0]) - difference
            found[method]["completeness_relative_gap"] = round(abs(gap) / abs(difference), 4)
        print(f"{photo:16s} {method:22s} {json.dumps(found[method])}", file=sys.stderr)
    return found


def summary(per_photo: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Per method: median seconds, mean deletion/insertion AUC, and the mean rank of each AUC
    among the methods on the same photo (1 = most faithful)."""
    out = {}
    photos = list(per_photo)
    for method in METHODS:
        rows = [per_photo[p][method] for p in photos]
        deletion_rank = [
            1
            + sum(
                per_photo[p][m]["deletion_auc"] < per_photo[p][method]["deletion_auc"]
                for m in METHODS
            )
            for p in photos
        ]
        insertion_rank = [
            1
            + sum(
                per_photo[p][m]["insertion_auc"] > per_photo[p][method]["insertion_auc"]
                for m in METHODS
            )
            for p in photos
        ]
        out[method] = {
            "median_seconds": round(float(np.median([r["seconds"] for r in rows])), 2),
            "model_evaluations": int(np.median([r["model_evaluations"] for r in rows])),
            "mean_deletion_auc": round(float(np.mean([r["deletion_auc"] for r in rows])), 4),
            "mean_insertion_auc": round(float(np.mean([r["insertion_auc"] for r in rows])), 4),
            "mean_deletion_rank": round(float(np.mean(deletion_rank)), 2),
            "mean_insertion_rank": round(float(np.mean(insertion_rank)), 2),
        }
    return out


def write_docs() -> list[str]:
    """Each gradient method's figure for chelsea, as `glimpse explain` writes it, halved."""
    from PIL import Image
    from skimage import data

    written = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "chelsea.png"
        Image.fromarray(data.chelsea()).save(photo)
        for method in DOCS:
            out = Path(tmp) / method
            subprocess.run(
                [str(Path(sys.executable).parent / "glimpse"), "explain", str(photo)]
                + ["--model", str(MODEL), "--labels", str(LABELS), "--preset", "imagenet-squash"]
                + ["--method", method, "--out", str(out), "--quiet"],
                check=True,
            )
            with Image.open(out / "figure.png") as figure:
                small = figure.convert("RGB").resize(
                    (figure.width // 2, figure.height // 2), Image.Resampling.LANCZOS
                )
            target = REPO / "docs" / f"method-{method}.png"
            small.save(target, optimize=True)
            written.append(str(target.relative_to(REPO)))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--docs", action="store_true", help="write the docs/ example figures")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "methods.json"))
    args = parser.parse_args()
    model = OnnxRuntimeModel(MODEL, card())
    per_photo = {photo: run_photo(model, photo) for photo in args.photos.split(",")}
    report = {
        "bench": "methods",
        "command": "python bench/methods.py" + (" --docs" if args.docs else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": MODEL.name,
        "defaults": "quickshift (lime's), black background, top class, batch 64",
        "summary": summary(per_photo),
        "photos": per_photo,
    }
    if args.docs:
        report["docs"] = write_docs()
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
