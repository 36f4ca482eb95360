"""Glimpse's partition_shap beside shap's Partition explainer with its Image masker.

Same model (the shared EfficientNet-Lite0, one ONNX Runtime session), same image (skimage's
chelsea), same output (the probability of the top class, 285 Egyptian cat), same budget
(max_evals = num_samples) and the same masker: shap's "blur(128,128)" as shap's image
examples use (Glimpse: background blur with kernel_size 128) and the constant 0 (black).
shap's f takes the masked HWC images and applies the model card's preprocessing
(worker.engine.input_grid.InputGrid), exactly as Glimpse does before the model.

shap's leaves are pixels; Glimpse's are superpixels: an 8-pixel grid here, whose split tree
is shap's at 8-pixel resolution. Both spread a node's credit uniformly over its pixels when
the budget stops the recursion, so the maps compared are per-pixel densities (value / pixel
count; shap's summed over its 3 channels). Reports the Spearman rank correlation of the two
maps, the efficiency gap of each (Σ values − (f(x) − f(background))) and the wall times.
Prints one JSON object. Run: `.venv/bin/python bench/compare_shap.py`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import skimage.data
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.cards import PRESETS, ModelCard  # noqa: E402
from glimpse.params import parse_params  # noqa: E402
from worker.engine.explain import explain  # noqa: E402
from worker.engine.input_grid import InputGrid  # noqa: E402
from worker.runtime.onnx import OnnxRuntimeModel  # noqa: E402

MODEL = REPO.parent / "shared" / "models" / "efficientnet-lite0.onnx"
CAT = 285
BUDGETS = (500, 1000)
BATCH = 50
CELL = 8
MASKERS = {
    "blur(128,128)": {"kind": "blur", "kernel_size": 128},
    "constant 0": {"kind": "constant", "rgb": [0, 0, 0]},
}


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap

    image = skimage.data.chelsea()
    card = ModelCard(
        input_name="data",
        output_name="logits",
        num_classes=1000,
        labels_file=None,
        **PRESETS["imagenet-squash"],  # type: ignore[arg-type]
    )
    model = OnnxRuntimeModel(MODEL, card)
    grid = InputGrid(card, image.shape[:2])

    def f(batch: np.ndarray) -> np.ndarray:
        """shap's model: masked (n, H, W, 3) images -> (n, 1) probability of the cat."""
        x = np.stack([grid.image(np.asarray(b, np.float32)) for b in batch])
        out = np.concatenate([model(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
        return softmax(out.astype(np.float64))[:, [CAT]]

    f_x = float(f(image[None].astype(np.float32))[0, 0])
    rows = []
    for masker_name, background in MASKERS.items():
        mask_value = masker_name if masker_name.startswith("blur") else 0
        masker = shap.maskers.Image(mask_value, image.shape)
        explainer = shap.Explainer(f, masker, algorithm="partition")
        for budget in BUDGETS:
            params = parse_params(
                {
                    "method": "partition_shap",
                    "num_samples": budget,
                    "segmentation": {"algorithm": "grid", "cell_size": CELL},
                    "background": background,
                    "targets": {"classes": [CAT]},
                    "quality": False,
                }
            )
            started = time.perf_counter()
            e = explain(image, model, params, batch_size=BATCH)
            glimpse_s = time.perf_counter() - started
            area = np.bincount(e.segments.ravel()).astype(np.float64)
            glimpse_map = (e.weights[0] / area)[e.segments]

            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sv = explainer(
                    image[None].astype(np.float32),
                    max_evals=budget,
                    batch_size=BATCH,
                    silent=True,
                )
            shap_s = time.perf_counter() - started
            values = np.asarray(sv.values)[0, ..., 0]  # (H, W, 3)
            shap_map = values.sum(axis=2)
            shap_base = float(np.asarray(sv.base_values).reshape(-1)[0])
            rho = spearmanr(glimpse_map.ravel(), shap_map.ravel()).statistic
            painted = spearmanr(e.attribution()[0].ravel(), shap_map.ravel()).statistic
            rows.append(
                {
                    "masker": masker_name,
                    "budget": budget,
                    "spearman_per_pixel": round(float(rho), 4),
                    "spearman_attribution_npy": round(float(painted), 4),
                    "glimpse_seconds": round(glimpse_s, 2),
                    "shap_seconds": round(shap_s, 2),
                    "glimpse_evaluations": e.model_evaluations,
                    "glimpse_efficiency_gap": float(
                        e.weights.sum() - (e.target_probabilities[0] - e.base_value[0])
                    ),
                    "shap_efficiency_gap": float(values.sum() - (f_x - shap_base)),
                    "f_background_glimpse": round(float(e.base_value[0]), 6),
                    "f_background_shap": round(shap_base, 6),
                }
            )
    print(
        json.dumps(
            {
                "image": "skimage.data.chelsea() 451x300",
                "model": MODEL.name,
                "output": f"probability of class {CAT}",
                "f_x": round(f_x, 6),
                "glimpse_segmentation": f"grid, cell_size {CELL}",
                "batch_size": BATCH,
                "shap_version": shap.__version__,
                "cpu": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "runs": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
