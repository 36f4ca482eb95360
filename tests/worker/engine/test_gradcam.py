"""Grad-CAM read off the graph equals Grad-CAM from gradients (finite differences here, and
the PyTorch runtime's autodiff where it is installed); layer choice and naming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import EFFICIENTNET
from onnx_models import conv_gap_model, load, tiny_card

from glimpse.cards import ModelCard
from glimpse.errors import InvalidParams
from glimpse.params import parse_params
from worker.engine.explain import explain
from worker.engine.gradcam import cell_segments, graph_info, pixel_maps
from worker.engine.input_grid import InputGrid

SIZE = 16
CLASSES = [0, 2]


def gradcam_params(layer: str | None = None):
    return parse_params(
        {"method": "gradcam", "targets": {"classes": CLASSES}, "gradcam": {"layer": layer}}
    )


def image() -> np.ndarray:
    return np.random.default_rng(4).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def features(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The model's Conv (3×3, pad 1, stride 2) + Relu in NumPy: (3, H, W) -> (K, H/2, W/2)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    k = w["conv"].astype(np.float64)
    out = np.zeros((k.shape[0], SIZE // 2, SIZE // 2))
    for i in range(SIZE // 2):
        for j in range(SIZE // 2):
            patch = padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            out[:, i, j] = np.tensordot(k, patch, axes=3)
    return np.maximum(out + w["conv_bias"][:, None, None], 0)


def finite_difference_gradcam(a: np.ndarray, w: dict[str, np.ndarray], c: int) -> np.ndarray:
    """Grad-CAM with ∂y_c/∂A by central differences through the head y = fc·mean(A) + b."""

    def y(features: np.ndarray) -> float:
        return float(w["fc"][c] @ features.mean(axis=(1, 2)) + w["fc_bias"][c])

    eps = 1e-3
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        step = np.zeros_like(a)
        step[idx] = eps
        grad[idx] = (y(a + step) - y(a - step)) / (2 * eps)
    alpha = grad.mean(axis=(1, 2))
    return np.maximum(np.einsum("k,khw->hw", alpha, a), 0)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    folder: Path = tmp_path_factory.mktemp("gradcam")
    out = {}
    for head in ("gemm", "matmul", "softmax"):
        path, weights = conv_gap_model(folder / f"{head}.onnx", SIZE, SIZE, head=head)
        out[head] = (load(path, tiny_card(SIZE, SIZE, 3)), weights)
    return out


@pytest.mark.parametrize("head", ["gemm", "matmul"])
def test_graph_gradcam_equals_finite_difference_gradcam(models, head: str) -> None:
    model, w = models[head]
    e = explain(image(), model, gradcam_params(), batch_size=4)
    a = features(image().transpose(2, 0, 1) / 255.0, w)
    for t, c in enumerate(CLASSES):
        expected = finite_difference_gradcam(a, w, c)
        np.testing.assert_allclose(e.weights[t].reshape(8, 8), expected, atol=1e-4, rtol=1e-4)
    assert e.model_evaluations == 2  # the prediction and one pass with the feature map


def test_cells_are_the_segments_and_the_pixel_map_is_smooth(models) -> None:
    model, _ = models["gemm"]
    e = explain(image(), model, gradcam_params(), batch_size=4)
    assert e.n_segments == 64
    assert e.segments[0, 0] == e.segments[1, 1] == 0 and e.segments[0, 2] == 1
    assert e.segments[15, 15] == 63
    maps = e.attribution()
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32
    assert e.pixel_maps is not None and (maps >= 0).all()
    # Bilinear upsampling of the cell values (half-pixel centres): each 2×2 block averages
    # to its cell's value away from the borders.
    cells = e.weights[0].reshape(8, 8)
    assert maps[0, 6:8, 6:8].mean() == pytest.approx(cells[3, 3], rel=0.3, abs=1e-3)


def test_automatic_layer_is_the_pooled_feature_map_and_can_be_named(models) -> None:
    model, _ = models["gemm"]
    info = graph_info(str(model.path), "y")
    assert info.default_layer == "features" and info.head is not None
    auto = explain(image(), model, gradcam_params(), batch_size=4).weights
    by_tensor = explain(image(), model, gradcam_params("features"), batch_size=4).weights
    by_node = explain(image(), model, gradcam_params("relu1"), batch_size=4).weights
    np.testing.assert_array_equal(auto, by_tensor)
    np.testing.assert_array_equal(auto, by_node)


def test_unknown_layer_is_a_422_on_the_layer(models) -> None:
    model, _ = models["gemm"]
    with pytest.raises(InvalidParams) as info:
        explain(image(), model, gradcam_params("no_such_layer"), batch_size=4)
    assert info.value.status == 422
    assert info.value.errors[0]["loc"] == ["params", "gradcam", "layer"]
    assert "features" in info.value.detail  # names the automatic choice


def test_without_autodiff_other_layers_are_refused_clearly(models, monkeypatch) -> None:
    """A worker installed without the torch extra refuses what needs gradients, clearly."""
    model, _ = models["gemm"]
    monkeypatch.setattr(model, "gradients", lambda: None)  # what it answers without torch
    with pytest.raises(InvalidParams) as info:
        explain(image(), model, gradcam_params("conv_out"), batch_size=4)
    assert info.value.errors[0]["loc"] == ["params", "gradcam", "layer"]
    assert "PyTorch runtime" in info.value.detail


@pytest.mark.parametrize("head", ["gemm", "matmul"])
def test_graph_gradcam_equals_autodiff_gradcam(models, head: str) -> None:
    from worker.runtime.torch import TorchModel

    model, _ = models[head]
    torch_model = TorchModel(model.path, model.card, device="cpu", precision="fp32")
    x = image().transpose(2, 0, 1)[None].astype(np.float32) / 255
    a, g, _ = torch_model.activations_and_gradients(np.repeat(x, 2, 0), "features", CLASSES)
    alpha = g.astype(np.float64).mean(axis=(2, 3))
    expected = np.maximum(np.einsum("tk,tkhw->thw", alpha, a), 0).reshape(2, -1)
    e = explain(image(), model, gradcam_params(), batch_size=4)
    np.testing.assert_allclose(e.weights, expected, atol=1e-5, rtol=1e-4)


def test_heads_that_are_not_linear_use_autodiff(models) -> None:
    model, _ = models["softmax"]
    e = explain(image(), model, gradcam_params(), batch_size=4)
    assert e.weights.shape == (2, 64) and (e.weights >= 0).all()


def test_the_shared_efficientnet_has_an_exact_head() -> None:
    info = graph_info(str(EFFICIENTNET), "logits")
    assert info.head is not None and info.head.weight.shape[0] == 1000
    assert info.default_layer == info.head.feature


def test_maps_go_back_through_a_center_crop() -> None:
    card = ModelCard(
        input_name="x",
        output_name="y",
        num_classes=1,
        input_size=(32, 32),
        resize="shorter_side",
        resize_shorter_to=32,
    )
    grid = InputGrid(card, (40, 80))  # resized to 32×64, center crop columns 16..48
    maps = pixel_maps(grid, np.ones((1, 4, 4)))
    assert maps.shape == (1, 40, 80)
    np.testing.assert_allclose(maps[0, :, 22:58], 1.0, atol=1e-6)
    assert (maps[0, :, :18] == 0).all() and (maps[0, :, 62:] == 0).all()
    cells = cell_segments(grid, (4, 4))
    assert cells.shape == (40, 80) and set(np.unique(cells)) == set(range(16))
    assert cells[0, 0] == 0 and cells[-1, -1] == 15  # outside the crop: the nearest cell
