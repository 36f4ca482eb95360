"""The fused graph computes exactly what composing images on the host and running the model does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import EFFICIENTNET
from onnx_models import pooled_classifier, region_model

from worker.runtime.fused import BACKGROUND, IMAGE, SEGMENTS, Z, fuse_perturbation

PROVIDERS = ort.get_available_providers()


def host_composed(z: np.ndarray, x: np.ndarray, bg: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """The definition, image by image: bg where hidden, x where shown."""
    out = np.empty((len(z), *x.shape), np.float32)
    for i, row in enumerate(z):
        shown = row.astype(bool)[seg]
        out[i] = np.where(shown[None], x, bg)
    return out


def run_both(path: Path, input_name: str, provider: str, m: int, seed: int = 0):
    model = onnx.load(str(path))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32)
    bg = rng.normal(size=shape).astype(np.float32)
    seg = rng.integers(0, m, size=shape[1:])
    z = (rng.random((9, m)) < 0.5).astype(np.float32)
    z[0], z[1] = 1, 0
    plain = ort.InferenceSession(str(path), providers=[provider])
    fused = ort.InferenceSession(
        fuse_perturbation(model, input_name).SerializeToString(), providers=[provider]
    )
    expected = plain.run(None, {input_name: host_composed(z, x, bg, seg)})[0]
    got = fused.run(None, {Z: z, SEGMENTS: seg[None].astype(np.int64), IMAGE: x, BACKGROUND: bg})[0]
    return expected, got, plain.run(None, {input_name: x[None]})[0]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fused_equals_host_on_a_tiny_model(tmp_path: Path, provider: str) -> None:
    path = region_model(tmp_path / "region.onnx", 12, 10, slice(2, 6), slice(3, 8))
    expected, got, full = run_both(path, "x", provider, m=7)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[0], full[0], rtol=1e-6, atol=1e-6)  # all shown = the image


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fused_equals_host_on_the_shared_efficientnet(provider: str) -> None:
    expected, got, _ = run_both(EFFICIENTNET, "data", provider, m=60)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_fused_fits_an_opset_7_graph(tmp_path: Path) -> None:
    """The model zoo's ResNet50 is opset 7: the prelude must use only ops opset 7 has."""
    path = pooled_classifier(tmp_path / "old.onnx", input_shape=["N", 3, 16, 16], num_classes=5)
    model = onnx.load(str(path))
    model.opset_import[0].version = 7
    onnx.save(model, str(path))
    fused = fuse_perturbation(model, "data")
    onnx.checker.check_model(fused, full_check=True)
    expected, got, _ = run_both(path, "data", "CPUExecutionProvider", m=4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_fusing_rejects_what_it_cannot_wrap(tmp_path: Path) -> None:
    path = region_model(tmp_path / "region.onnx", 8, 8, slice(0, 4), slice(0, 4))
    with pytest.raises(ValueError, match="no input 'nope'"):
        fuse_perturbation(onnx.load(str(path)), "nope")
