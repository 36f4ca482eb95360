"""Golden results: every method on a fixed photo, model and seed gives the numbers recorded in
tests/golden/ (weights, base values, predictions, superpixels, evaluation counts), through
`glimpse explain` as a user runs it. Written before the engine's restructuring (issue #19) so
that a refactor that changes a number fails here; a change meant to move the numbers says so
and rewrites the files with `GLIMPSE_WRITE_GOLDEN=1 pytest tests/test_golden.py`.

Floats are compared to 1e-9 relative (onnxruntime's kernels may differ in the last bits on
another CPU), those of the gradient methods to 1e-6 relative or 1e-7 absolute (PyTorch's
float32 autodiff: one release to the next moved their numbers by up to 8e-9, where the
weights are about 1e-3); counts, class indices and the superpixel count exactly. Wall times
are not part of a result's identity and are left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from onnx_models import conv_gap_model
from PIL import Image

GOLDEN = Path(__file__).parent / "golden"
WRITE = bool(os.environ.get("GLIMPSE_WRITE_GOLDEN"))

#: method -> extra CLI arguments (small budgets: the point is identity, not quality)
RUNS: dict[str, list[str]] = {
    "lime": ["--samples", "200", "--top-k", "2"],
    "kernel_shap": ["--samples", "200", "--top-k", "2"],
    "kernel_shap_auto": ["--samples", "auto", "--max-samples", "400"],
    "partition_shap": ["--samples", "120"],
    "occlusion": ["--window", "48", "--stride", "32"],
    "gradcam": [],
    "integrated_gradients": ["--steps", "8", "--segmentation", "slic"],
    "xrai": ["--steps", "4", "--top-k", "2"],
}
#: run -> (relative, absolute) tolerance of its floats, where not (1e-9, 1e-12): autodiff
TOLERANCE = {"integrated_gradients": (1e-6, 1e-7), "xrai": (1e-6, 1e-7)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("golden")
    photo = folder / "chelsea-small.png"
    Image.fromarray(skimage.data.chelsea()).resize((180, 120), Image.Resampling.BILINEAR).save(
        photo
    )
    model, _ = conv_gap_model(folder / "cnn.onnx", 224, 224, channels=4, num_classes=3)
    return photo, model


def _vector(values: list[float]) -> list[float] | dict[str, Any]:
    """A long vector (Grad-CAM's 112 × 112 cells) as its count, sum, L2 norm and every 97th
    value, so that the golden file stays small and any change still shows."""
    if len(values) <= 256:
        return values
    v = np.asarray(values, np.float64)
    return {
        "count": len(v),
        "sum": float(v.sum()),
        "l2": float(np.linalg.norm(v)),
        "every_97th": v[::97].tolist(),
    }


def _regions(regions: list[dict[str, float]]) -> dict[str, Any]:
    """XRAI's regions as their count, total area and the first three."""
    return {
        "count": len(regions),
        "area": float(sum(r["area"] for r in regions)),
        "first": regions[:3],
    }


def identity(result: dict[str, Any]) -> dict[str, Any]:
    """The parts of result.json that a refactor must not change (fields a method leaves null
    are left out: a field added for another method changes no method's numbers)."""
    explanations = [
        {
            key: value
            for key, value in {
                **e,
                "weights": _vector(e["weights"]),
                "weights_se": None if e.get("weights_se") is None else _vector(e["weights_se"]),
                "regions": None if e.get("regions") is None else _regions(e["regions"]),
            }.items()
            if value is not None
        }
        for e in result["explanations"]
    ]
    stats = {k: v for k, v in result["stats"].items() if "seconds" not in k and v is not None}
    return {
        "method": result["method"],
        "image": result["image"],
        "segments": result["segments"],
        "predictions": result["predictions"],
        "explanations": explanations,
        "stats": stats,
        "warnings": result.get("warnings", []),
        **({"hierarchy": result["hierarchy"]} if "hierarchy" in result else {}),
    }


def assert_same(
    actual: Any, expected: Any, where: str = "result", tol: tuple[float, float] = (1e-9, 1e-12)
) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}", tol)
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]", tol)
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert isinstance(actual, int | float), where
        np.testing.assert_allclose(actual, expected, rtol=tol[0], atol=tol[1], err_msg=where)
    else:
        assert actual == expected, where


@pytest.mark.parametrize("run", list(RUNS))
def test_a_method_gives_its_recorded_numbers(
    run: str, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    photo, model = inputs
    method = run.removesuffix("_auto")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "glimpse"), "explain", str(photo), "--model", str(model)]
        + ["--preset", "imagenet-squash", "--method", method, "--seed", "3", "--quiet"]
        + ["--out", str(out), *RUNS[run]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    actual = identity(json.loads((out / "result.json").read_text()))
    golden = GOLDEN / f"{run}.json"
    if WRITE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    expected = json.loads(golden.read_text())
    assert_same(actual, expected, tol=TOLERANCE.get(run, (1e-9, 1e-12)))
    assert actual["stats"]["model_evaluations"] > 0
    weights = actual["explanations"][0]["weights"]
    count = weights["count"] if isinstance(weights, dict) else len(weights)
    assert count == actual["segments"]["count"]
