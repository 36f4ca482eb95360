"""Wall time of one LIME explanation: Glimpse's engine, the `lime` package, the `glimpse` CLI.

Same model (the shared EfficientNet-Lite0, one ONNX Runtime session), same image
(skimage's chelsea), 1000 samples, quickshift with lime's defaults, black background, batches
of 64. Prints one JSON object. Run: `.venv/bin/python bench/compare_lime.py`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.cards import PRESETS, ModelCard  # noqa: E402
from glimpse.images import encode_png  # noqa: E402
from glimpse.params import parse_params  # noqa: E402
from worker.engine.explain import explain  # noqa: E402
from worker.engine.input_grid import InputGrid  # noqa: E402
from worker.runtime.onnx import OnnxRuntimeModel  # noqa: E402

SHARED = REPO.parent / "shared" / "models"
MODEL = SHARED / "efficientnet-lite0.onnx"
LABELS = SHARED / "imagenet1k_labels.txt"
SAMPLES = 1000
BATCH = 64


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main() -> None:
    from lime.lime_image import LimeImageExplainer

    card = ModelCard(
        input_name="data",
        output_name="logits",
        num_classes=1000,
        **PRESETS["imagenet-squash"],  # type: ignore[arg-type]
    )
    model = OnnxRuntimeModel(MODEL, card)
    image = skimage.data.chelsea()
    grid = InputGrid(card, image.shape[:2])
    model(np.stack([grid.image(image)] * BATCH))  # warm the session up for both

    params = parse_params({"method": "lime", "num_samples": SAMPLES})
    started = time.perf_counter()
    ours = explain(image, model, params, batch_size=BATCH)
    ours_s = time.perf_counter() - started

    def classifier_fn(images: np.ndarray) -> np.ndarray:
        batch = np.stack([grid.image(im) for im in images])
        return softmax(model(batch).astype(np.float64))

    started = time.perf_counter()
    theirs = LimeImageExplainer(random_state=0).explain_instance(
        image, classifier_fn, top_labels=1, hide_color=0, num_samples=SAMPLES, batch_size=BATCH
    )
    lime_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "chelsea.png"
        png.write_bytes(encode_png(image))
        cmd = [
            sys.executable,
            "-m",
            "cli.main",
            "explain",
            str(png),
            "--model",
            str(MODEL),
            "--preset",
            "imagenet-squash",
            "--labels",
            str(LABELS),
            "--samples",
            str(SAMPLES),
            "--batch-size",
            str(BATCH),
            "--out",
            str(Path(tmp) / "out"),
            "--quiet",
        ]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        cli_s = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"glimpse explain failed: {proc.stderr.strip()}")
        cli_stats = json.loads((Path(tmp) / "out" / "result.json").read_text())["stats"]

    ours_top = [int(i) for i in np.argsort(-ours.weights[0])[:5]]
    lime_label = int(theirs.top_labels[0])
    print(
        json.dumps(
            {
                "image": "skimage.data.chelsea (451x300)",
                "model": "efficientnet-lite0 (shared, onnxruntime CPU)",
                "num_samples": SAMPLES,
                "batch_size": BATCH,
                "glimpse_engine": {
                    "seconds": round(ours_s, 3),
                    "segmentation_seconds": round(ours.segmentation_seconds, 3),
                    "evaluation_seconds": round(ours.evaluation_seconds, 3),
                    "model_evaluations": ours.model_evaluations,
                    "segments": ours.n_segments,
                    "top_class": int(ours.targets[0]),
                    "top_superpixels": ours_top,
                    "score": round(float(ours.r2[0]), 4) if ours.r2 is not None else None,
                },
                "lime_package": {
                    "seconds": round(lime_s, 3),
                    "segments": int(theirs.segments.max()) + 1,
                    "top_class": lime_label,
                    "score": round(float(np.ravel(theirs.score)[0]), 4),
                },
                "glimpse_cli": {"seconds": round(cli_s, 3), "inner_seconds": cli_stats["seconds"]},
                "speedup_engine_vs_lime": round(lime_s / ours_s, 2),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
