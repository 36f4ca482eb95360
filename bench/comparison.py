"""One photo, every method, one job: the comparison of `params.methods` on chelsea.

The shared EfficientNet-Lite0 (real ImageNet weights) through the worker's pipeline
(worker/pipeline.py: the code a job runs), the gradient methods through the torch runtime on
the same file; the defaults a user gets (quickshift with lime's settings, black background,
the top class, 1000 evaluations for the sampled methods, 50 steps for the gradient ones), all
seven methods on the same superpixels. Writes the per-method seconds, evaluations and
deletion/insertion AUC and every pair's rank agreement and top-10 overlap to
bench/results/comparison.json, and the figure that figure.png?compare=true serves to
docs/compare-chelsea.png.

    python bench/comparison.py [--photo chelsea]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.methods import LABELS, MODEL, card  # noqa: E402
from bench.scale.oracle import load_photo  # noqa: E402
from glimpse.artifacts import comparison_png  # noqa: E402
from glimpse.images import decode_stored  # noqa: E402
from glimpse.params import GRADIENT_METHODS, Method, parse_params  # noqa: E402
from glimpse.settings import Settings  # noqa: E402
from worker.pipeline import ModelInUse, decode, explain_image  # noqa: E402
from worker.runtime.onnx import OnnxRuntimeModel  # noqa: E402

METHODS: list[Method] = [
    "lime",
    "kernel_shap",
    "partition_shap",
    "gradcam",
    "occlusion",
    "integrated_gradients",
    "xrai",
]
#: The committed figure's longer side: small enough for the repository.
DOCS_SIDE = 1300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photo", default="chelsea")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "comparison.json"))
    parser.add_argument("--figure", default=str(REPO / "docs" / "compare-chelsea.png"))
    args = parser.parse_args()
    labels = LABELS.read_text().splitlines()
    model = ModelInUse("efficientnet-lite0", card(), labels, OnnxRuntimeModel(MODEL, card()))
    buf = io.BytesIO()
    Image.fromarray(load_photo(args.photo)).save(buf, format="PNG")
    settings = Settings(batch_size=64)
    image = decode(buf.getvalue(), settings)
    params = parse_params({"methods": METHODS})
    started = time.perf_counter()
    explained = explain_image(image, model, params, settings)
    wall = time.perf_counter() - started
    result = explained.result
    assert result.comparison is not None
    maps = decode_stored(explained.stored_maps())[1]
    assert maps is not None
    png = comparison_png(image.pixels, result, maps)
    with Image.open(io.BytesIO(png)) as figure:
        factor = min(1.0, DOCS_SIDE / max(figure.size))
        size = (round(figure.width * factor), round(figure.height * factor))
        small = figure.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        small.quantize(256).save(args.figure, optimize=True)  # a palette: 40 % of the bytes
    methods = {
        m.method: {
            "seconds": m.seconds,
            "model_evaluations": m.model_evaluations,
            "backward_passes": m.backward_passes,
            "deletion_auc": None if (q := m.explanations[0].quality) is None else q.deletion_auc,
            "insertion_auc": None if q is None else q.insertion_auc,
        }
        for m in result.comparison.methods
    }
    agreement = {
        f"{a.methods[0]} vs {a.methods[1]}": {
            "spearman": round(a.spearman, 3),
            "top_10_overlap": a.top_k_overlap,
        }
        for a in result.comparison.agreement
    }
    report = {
        "bench": "comparison",
        "command": f"python bench/comparison.py --photo {args.photo}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": MODEL.name,
        "photo": args.photo,
        "class": f"{result.explanations[0].class_index} {result.explanations[0].label}",
        "superpixels": result.segments.count,
        "wall_seconds": round(wall, 2),
        "model_evaluations": result.stats.model_evaluations,
        "gradient_methods": sorted(GRADIENT_METHODS),
        "methods": methods,
        "agreement": agreement,
        "figure": str(Path(args.figure).relative_to(REPO)),
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
