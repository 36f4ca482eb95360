"""OnnxRuntimeModel: the plain and the bound (fused, IOBinding) paths agree, and the engine
gives the same numbers through either."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_models import region_model, tiny_card

from glimpse.errors import ModelError
from glimpse.params import parse_params
from worker.engine.evaluate import coalition_evaluator
from worker.engine.explain import explain
from worker.engine.perturb import Composer
from worker.runtime.base import FusedModel
from worker.runtime.onnx import OnnxRuntimeModel

H, W = 16, 16


@pytest.fixture()
def model_path(tmp_path: Path) -> Path:
    return region_model(tmp_path / "region.onnx", H, W, slice(4, 8), slice(8, 12))


def test_bind_equals_composing_on_the_host(model_path: Path) -> None:
    model = OnnxRuntimeModel(model_path, tiny_card(H, W, 2))
    rng = np.random.default_rng(3)
    x = rng.random((3, H, W), dtype=np.float32)
    bg = np.zeros_like(x)
    seg = np.arange(H * W).reshape(H, W) // 16
    evaluate = model.bind(x, bg, seg)
    compose = Composer(x, bg, seg)
    for n in (1, 7, 64):
        z = rng.random((n, 16)) < 0.5
        np.testing.assert_allclose(evaluate(z), model(compose(z)), rtol=1e-6, atol=1e-7)


def test_the_engine_gives_the_same_numbers_fused_or_not(model_path: Path) -> None:
    card = tiny_card(H, W, 2)
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    for method in ("lime", "kernel_shap"):
        params = parse_params(
            {
                "method": method,
                "num_samples": 300,
                "segmentation": {"algorithm": "grid", "cell_size": 4},
            }
        )
        fused = OnnxRuntimeModel(model_path, card, fused=True)
        host = OnnxRuntimeModel(model_path, card, fused=False)
        assert isinstance(fused, FusedModel)
        a = explain(image, fused, params, batch_size=32)
        b = explain(image, host, params, batch_size=32)
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(a.base_value, b.base_value, rtol=1e-6, atol=1e-8)


def test_fused_false_composes_on_the_host(model_path: Path) -> None:
    model = OnnxRuntimeModel(model_path, tiny_card(H, W, 2), fused=False)
    x = np.ones((3, H, W), np.float32)
    evaluate = coalition_evaluator(model, x, np.zeros_like(x), np.zeros((H, W), np.intp))
    np.testing.assert_allclose(evaluate(np.ones((1, 1), bool)), model(x[None]))
    assert model._fused_session is None  # never built
    assert "host perturbation" in model.description


def test_the_fused_session_is_built_once(model_path: Path) -> None:
    model = OnnxRuntimeModel(model_path, tiny_card(H, W, 2))
    x = np.ones((3, H, W), np.float32)
    seg = np.zeros((H, W), np.intp)
    model.bind(x, x, seg)
    first = model.fused_session()
    model.bind(x, x, seg)
    assert model.fused_session() is first


def test_a_card_that_names_other_tensors_is_refused(model_path: Path) -> None:
    card = tiny_card(H, W, 2).model_copy(update={"input_name": "data"})
    with pytest.raises(ModelError, match="card names input 'data'"):
        OnnxRuntimeModel(model_path, card)


def test_unavailable_providers_fall_back_to_the_cpu(model_path: Path) -> None:
    model = OnnxRuntimeModel(
        model_path,
        tiny_card(H, W, 2),
        providers=["NoSuchExecutionProvider", "CPUExecutionProvider"],
    )
    assert model.providers == ["CPUExecutionProvider"]
    assert model.device == "cpu"
