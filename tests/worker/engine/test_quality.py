"""Deletion/insertion faithfulness: known curves, correct beats shuffled, the result JSON."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from onnx_models import load, segment_means_model, tiny_card

from glimpse.images import DecodedImage
from glimpse.params import parse_params
from glimpse.result import ExplanationResult
from worker.engine.explain import explain
from worker.engine.quality import STEPS, faithfulness, step_counts
from worker.engine.segment import segment
from worker.results import build_result


def params(method: str, **extra: object):
    return parse_params(
        {
            "method": method,
            "num_samples": 300,
            "segmentation": {"algorithm": "grid", "cell_size": 4},
            "targets": {"classes": [0]},
            "output_space": "logit",
            **extra,
        }
    )


@pytest.fixture(scope="module")
def additive(tmp_path_factory: pytest.TempPathFactory):
    """16x16 image, 4x4 cells -> M = 16; f = Σ a_j · mean_j with a_j > 0, so the exact
    attribution is a_j · mean_j (black background) and hiding the largest first is best."""
    rng = np.random.default_rng(11)
    img = rng.integers(30, 256, (16, 16, 3), dtype=np.uint8)
    segments = segment(img, params("lime").segmentation)
    a = rng.uniform(0.1, 3.0, size=16)
    model = load(
        segment_means_model(tmp_path_factory.mktemp("q") / "m.onnx", segments, a),
        tiny_card(16, 16, 1),
    )
    means = np.array([img[segments == j].mean() / 255 for j in range(16)])
    return img, model, a * means


def additive_score(contribution: np.ndarray):
    return lambda z: (z * contribution).sum(axis=1, keepdims=True)


def test_step_counts_group_superpixels_into_equal_steps() -> None:
    np.testing.assert_array_equal(step_counts(4), [0, 1, 2, 3, 4])
    counts = step_counts(100)
    assert len(counts) == STEPS + 1 and counts[0] == 0 and counts[-1] == 100
    assert set(np.diff(counts)) == {5}
    assert np.all(np.diff(step_counts(37)) >= 1)


def test_known_curves_of_an_additive_score() -> None:
    """m = 2, contributions (3, 1): deletion 4 -> 1 -> 0, insertion 0 -> 3 -> 4."""
    contribution = np.array([3.0, 1.0])
    q = faithfulness(
        np.array([[0.9, 0.1]]),
        additive_score(contribution),
        np.array([4.0]),
        np.array([0.0]),
    )
    assert q.steps == 2 and q.evaluations == 2
    assert q.deletion_auc[0] == pytest.approx((4 + 1) / 4 + (1 + 0) / 4)
    assert q.insertion_auc[0] == pytest.approx((0 + 3) / 4 + (3 + 4) / 4)


def test_correct_attribution_beats_shuffled_and_reversed(additive) -> None:
    _, _, contribution = additive
    score = additive_score(contribution)
    full, empty = np.array([contribution.sum()]), np.array([0.0])
    shuffled = np.random.default_rng(0).permutation(contribution)
    weights = np.vstack([contribution, shuffled, -contribution])
    rows = [faithfulness(w[None], score, full, empty) for w in weights]
    deletion = [q.deletion_auc[0] for q in rows]
    insertion = [q.insertion_auc[0] for q in rows]
    assert deletion[0] < deletion[1] < deletion[2]
    assert insertion[0] > insertion[1] > insertion[2]
    assert all(q.evaluations <= 2 * (q.steps - 1) for q in rows)


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_explain_measures_quality_on_the_model(additive, method: str) -> None:
    img, model, contribution = additive
    e = explain(img, model, params(method), batch_size=64)
    assert e.quality is not None and e.quality.steps == 16
    extra = 1 if method == "lime" else 0  # f(background): Kernel SHAP has it already
    assert e.quality.evaluations <= 2 * 15 + extra
    assert e.model_evaluations == 300  # quality is counted apart
    shuffled = np.random.default_rng(1).permutation(e.weights[0])
    worse = faithfulness(
        shuffled[None],
        additive_score(contribution),
        np.array([contribution.sum()]),
        np.array([0.0]),
    )
    assert e.quality.deletion_auc[0] < worse.deletion_auc[0]
    assert e.quality.insertion_auc[0] > worse.insertion_auc[0]
    # the numbers are the model's own: an additive model's curves are exact sums
    exact = faithfulness(
        e.weights,
        additive_score(contribution),
        np.array([contribution.sum()]),
        np.array([0.0]),
    )
    np.testing.assert_allclose(e.quality.deletion_auc, exact.deletion_auc, atol=1e-5)
    np.testing.assert_allclose(e.quality.insertion_auc, exact.insertion_auc, atol=1e-5)


def test_quality_off_and_batch_size_independent(additive) -> None:
    img, model, _ = additive
    off = explain(img, model, params("lime", quality=False), batch_size=64)
    assert off.quality is None
    runs = [explain(img, model, params("lime"), batch_size=b) for b in (1, 64)]
    assert runs[0].quality is not None and runs[1].quality is not None
    np.testing.assert_array_equal(runs[0].quality.deletion_auc, runs[1].quality.deletion_auc)
    np.testing.assert_array_equal(runs[0].quality.insertion_auc, runs[1].quality.insertion_auc)


@pytest.mark.parametrize("extra", [{}, {"num_samples": "auto", "max_samples": 600}])
def test_the_result_json_carries_the_new_fields(additive, extra: dict) -> None:
    img, model, _ = additive
    p = params("kernel_shap", targets={"top_k": 1}, **extra)
    e = explain(img, model, p, batch_size=64)
    runtime = SimpleNamespace(runtime="onnxruntime", providers=["CPUExecutionProvider"], fused=0)
    result = build_result(
        e,
        model_name="tiny",
        runtime=runtime,
        labels=["only"],
        image=DecodedImage(pixels=img, format="PNG", sha256="0" * 64),
        params=p,
    )
    body = ExplanationResult.model_validate_json(result.model_dump_json()).model_dump()
    c = body["explanations"][0]
    assert len(c["weights_se"]) == 16 and all(v >= 0 for v in c["weights_se"])
    assert set(c["quality"]) == {"deletion_auc", "insertion_auc", "steps"}
    assert isinstance(c["top_separated"], bool)
    stats = body["stats"]
    assert stats["quality_evaluations"] == e.quality.evaluations > 0
    if extra:
        assert isinstance(stats["converged"], bool) and stats["rounds"] >= 1
    else:
        assert stats["converged"] is None and stats["rounds"] is None


@pytest.mark.parametrize(
    ("method", "extra"),
    [("partition_shap", {}), ("occlusion", {"occlusion": {"window": 4, "stride": 4}})],
)
def test_quality_follows_any_method(additive, method: str, extra: dict) -> None:
    img, model, contribution = additive
    e = explain(img, model, params(method, **extra), batch_size=64)
    assert e.quality is not None and e.weights.shape[1] == int(e.segments.max()) + 1
    # partition_shap evaluated f(background) already; occlusion adds it
    assert e.quality.evaluations <= 2 * (e.quality.steps - 1) + (method == "occlusion")
    off = explain(img, model, params(method, quality=False, **extra), batch_size=64)
    assert off.quality is None


class CountingModel:
    """The model, composed on the host, counting every image it is asked to score."""

    def __init__(self, model) -> None:
        self.card = model.card
        self._model = model
        self.images = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.images += len(batch)
        return self._model(batch)


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("lime", {}),
        ("kernel_shap", {}),
        ("partition_shap", {}),
        ("occlusion", {"occlusion": {"window": 4, "stride": 4}}),
    ],
)
def test_every_model_evaluation_is_counted_once(additive, method: str, extra: dict) -> None:
    """What the model was asked equals what stats say: the method's evaluations plus one
    quality pass (the structured methods once paid for quality twice)."""
    img, model, _ = additive
    counting = CountingModel(model)
    e = explain(img, counting, params(method, **extra), batch_size=16)
    assert e.quality is not None
    assert counting.images == e.model_evaluations + e.quality.evaluations
