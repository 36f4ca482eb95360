"""The runtime contract (worker/runtime/base.py), run against both runtimes: ONNX Runtime and
PyTorch answer the same calls with the same numbers on a tiny CNN built in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_models import conv_gap_model, tiny_card

from worker.engine.evaluate import coalition_evaluator
from worker.engine.perturb import Composer
from worker.runtime.base import FusedModel, GradientModel, GradientSource, Model, OutputsModel
from worker.runtime.onnx import OnnxRuntimeModel
from worker.runtime.torch import TorchModel

H = W = 12


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = conv_gap_model(tmp_path_factory.mktemp("contract") / "cnn.onnx", H, W)
    return path


@pytest.fixture(scope="module", params=["onnxruntime", "torch"])
def runtime(request: pytest.FixtureRequest, model_file: Path) -> Model:
    card = tiny_card(H, W, 3)
    if request.param == "onnxruntime":
        return OnnxRuntimeModel(model_file, card)
    return TorchModel(model_file, card, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5, 3, H, W)).astype(np.float32)


def test_both_runtimes_are_what_the_engine_asks_for(runtime: Model) -> None:
    assert isinstance(runtime, FusedModel) and runtime.fused
    assert isinstance(runtime, OutputsModel)
    assert isinstance(runtime, GradientModel | GradientSource)
    assert runtime.path.is_file() and runtime.card.num_classes == 3


def test_a_batch_call_gives_one_row_of_raw_outputs_per_image(
    runtime: Model, model_file: Path, batch: np.ndarray
) -> None:
    reference = OnnxRuntimeModel(model_file, runtime.card)(batch)
    out = runtime(batch)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)


def test_bind_composes_as_the_host_does(runtime: Model, batch: np.ndarray) -> None:
    image, background = batch[0], batch[1]
    segments = (np.arange(H)[:, None] // 4) * 3 + np.arange(W)[None, :] // 4  # 9 cells
    z = np.random.default_rng(1).random((7, 9)) < 0.5
    fused = coalition_evaluator(runtime, image, background, segments)(z)
    host = runtime(Composer(image, background, segments)(z))
    np.testing.assert_allclose(fused, host, rtol=1e-5, atol=1e-5)


def test_intermediate_tensors_come_with_their_names(runtime: Model, batch: np.ndarray) -> None:
    assert isinstance(runtime, OutputsModel)
    (features,) = runtime.run_with_outputs(batch[:2], ("features",))
    assert np.asarray(features).shape == (2, 4, H // 2, W // 2)
    assert np.all(np.asarray(features) >= 0)  # after the Relu


def test_gradients_agree_between_the_runtimes(
    runtime: Model, model_file: Path, batch: np.ndarray
) -> None:
    gradients = runtime if isinstance(runtime, GradientModel) else None
    if gradients is None:
        assert isinstance(runtime, GradientSource)
        gradients = runtime.gradients()  # torch is installed with the test extras
    assert gradients is not None
    classes = np.array([0, 2, 1, 0, 2])
    a, g, raw = gradients.activations_and_gradients(batch, "features", classes)
    assert np.asarray(a).shape == np.asarray(g).shape == (5, 4, H // 2, W // 2)
    reference = TorchModel(model_file, runtime.card, device="cpu", precision="fp32")
    a_ref, g_ref, _ = reference.activations_and_gradients(batch, "features", classes)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(raw, runtime(batch), rtol=1e-5, atol=1e-5)


def test_an_onnx_model_hands_over_its_gradients_once(model_file: Path) -> None:
    card = tiny_card(H, W, 3)
    model = OnnxRuntimeModel(model_file, card)
    first = model.gradients()
    assert first is not None and model.gradients() is first


@pytest.mark.parametrize("space", ["probability", "logit"])
def test_input_gradients_match_finite_differences_of_the_model(
    runtime: Model, batch: np.ndarray, space: str
) -> None:
    """∂s/∂x (Integrated Gradients, XRAI) of each row's class score, in the output space,
    against central differences through ONNX Runtime's forward pass in float64."""
    from worker.engine.prefix import to_output_space

    gradients = runtime if isinstance(runtime, GradientModel) else None
    if gradients is None:
        assert isinstance(runtime, GradientSource)
        gradients = runtime.gradients()
    assert gradients is not None
    classes = np.array([0, 2])
    x = batch[:2]
    grad, scores = gradients.input_gradients(x, classes, space)
    assert grad.shape == x.shape and scores.shape == (2,)

    def score(rows: np.ndarray, c: np.ndarray) -> np.ndarray:
        out = to_output_space(runtime(rows.astype(np.float32)), runtime.card, space)
        return out[np.arange(len(rows)), c]

    np.testing.assert_allclose(scores, score(x, classes), rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(2)
    direction = rng.normal(size=x.shape)  # a directional derivative checks every entry at once
    eps = 1e-3  # small enough that no Relu changes side along the step
    numeric = (score(x + eps * direction, classes) - score(x - eps * direction, classes)) / (
        2 * eps
    )
    analytic = (grad.astype(np.float64) * direction).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-2, atol=1e-3)
