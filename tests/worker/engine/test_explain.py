"""explain() end to end: batch-size independence, progress, targets, the real EfficientNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from onnx_models import interaction_model, load, region_model, tiny_card

from glimpse.cards import ModelCard, ModelRegistry
from glimpse.errors import InvalidParams
from glimpse.params import parse_params
from worker.engine.evaluate import Cancelled
from worker.engine.explain import explain, to_output_space
from worker.runtime.onnx import OnnxRuntimeModel


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tiny")
    masks = [np.zeros((16, 16), bool) for _ in range(3)]
    masks[0][:8, :8] = True
    masks[1][8:, 4:12] = True
    masks[2][2:14, 10:16] = True
    model = load(interaction_model(folder / "m.onnx", masks), tiny_card(16, 16, 1))
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return img, model


def params(method: str, num_samples: int = 300, **extra: object):
    return parse_params(
        {
            "method": method,
            "num_samples": num_samples,
            "segmentation": {"algorithm": "grid", "cell_size": 4},
            "output_space": "logit",
            **extra,
        }
    )


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_batch_sizes_1_7_and_64_give_identical_results(tiny, method: str) -> None:
    img, model = tiny
    runs = [explain(img, model, params(method), batch_size=b) for b in (1, 7, 64)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.weights, runs[0].weights)
        np.testing.assert_array_equal(other.base_value, runs[0].base_value)
        assert other.model_evaluations == runs[0].model_evaluations
    assert [r.batch_size for r in runs] == [1, 7, 64]


def test_progress_counts_every_evaluation_once_and_reaches_the_total(tiny) -> None:
    img, model = tiny
    seen: list[tuple[int, int]] = []
    e = explain(
        img,
        model,
        params("kernel_shap", 200),
        batch_size=32,
        progress=lambda d, t: seen.append((d, t)),
    )
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[0] == 1
    assert seen[-1] == (e.model_evaluations, e.model_evaluations) == (200, 200)
    # one report at the start and one per batch of the budget; the quality pass after it
    # reports the final numbers again between its batches (so a cancel still stops it)
    budget_reports = 1 + int(np.ceil(199 / 32))
    assert len(set(seen[:budget_reports])) == budget_reports
    assert set(seen[budget_reports:]) == {(200, 200)}
    assert e.quality is not None
    quality_batches = int(np.ceil(e.quality.evaluations / 32))
    assert len(seen) == budget_reports + quality_batches


def test_a_cancel_stops_the_quality_pass_too(tiny) -> None:
    img, model = tiny
    calls = 0

    def stop(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if done == total == 200 and calls > 1 + int(np.ceil(199 / 32)):
            raise Cancelled

    with pytest.raises(Cancelled):
        explain(img, model, params("kernel_shap", 200), batch_size=32, progress=stop)


def test_a_progress_callback_can_cancel_between_batches(tiny) -> None:
    img, model = tiny

    def stop(done: int, total: int) -> None:
        if done > 50:
            raise Cancelled

    with pytest.raises(Cancelled):
        explain(img, model, params("lime", 500), batch_size=32, progress=stop)


def test_explanation_shapes_and_attribution_map(tiny) -> None:
    img, model = tiny
    e = explain(img, model, params("lime", 100), batch_size=64)
    assert e.segments.shape == (16, 16) and e.n_segments == 16
    assert e.weights.shape == (1, 16) and e.base_value.shape == (1,)
    attribution = e.attribution()
    assert attribution.shape == (1, 16, 16) and attribution.dtype == np.float32
    assert attribution[0, 0, 0] == pytest.approx(e.weights[0, 0])
    assert attribution[0, 15, 15] == pytest.approx(e.weights[0, 15])


def test_top_k_and_explicit_classes(tmp_path: Path) -> None:
    model = load(
        region_model(tmp_path / "r.onnx", 16, 16, slice(0, 4), slice(0, 4)), tiny_card(16, 16, 2)
    )
    img = np.full((16, 16, 3), 255, np.uint8)  # region mean 1.0 > the constant 0.5
    e = explain(img, model, params("lime", 50, targets={"top_k": 2}), batch_size=64)
    assert list(e.targets) == [0, 1]
    assert [c for c, _ in e.predictions] == [0, 1]
    e = explain(img, model, params("lime", 50, targets={"classes": [1]}), batch_size=64)
    assert list(e.targets) == [1]
    with pytest.raises(InvalidParams, match="out of range"):
        explain(img, model, params("lime", 50, targets={"classes": [2]}), batch_size=64)


def test_output_spaces() -> None:
    logits = np.array([[1.0, 2.0, 3.0]])
    card = tiny_card(4, 4, 3)
    p = to_output_space(logits, card, "probability")
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(to_output_space(logits, card, "logit"), logits)
    probs_card = ModelCard(**{**card.model_dump(), "output_kind": "probabilities"})
    np.testing.assert_allclose(to_output_space(p, probs_card, "probability"), p)
    np.testing.assert_allclose(np.exp(to_output_space(p, probs_card, "logit")), p)


@pytest.fixture(scope="module")
def efficientnet(models_dir: Path) -> OnnxRuntimeModel:
    registered = ModelRegistry(models_dir).get("efficientnet-lite0")
    return OnnxRuntimeModel(registered.onnx_path, registered.card)


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_real_efficientnet_on_chelsea(efficientnet: OnnxRuntimeModel, method: str) -> None:
    img = skimage.data.chelsea()
    p = parse_params({"method": method, "num_samples": 60})
    e = explain(img, efficientnet, p, batch_size=32)
    assert e.predictions[0][0] == 285  # Egyptian cat
    assert e.predictions[0][1] == pytest.approx(0.8, abs=0.05)
    assert list(e.targets) == [285]
    assert e.segments.shape == img.shape[:2]
    assert e.model_evaluations <= 60
    if method == "kernel_shap":
        assert e.weights[0].sum() + e.base_value[0] == pytest.approx(
            e.target_probabilities[0], abs=1e-6
        )
