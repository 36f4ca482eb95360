"""worker/pipeline.py, the one "explain an image" path of the job and the CLI: checks first
(nothing is evaluated for a request its model refuses), then the engine, a result that
describes it, and the artifacts a job stores (segments PNG, the method's own maps)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from onnx_models import conv_gap_model, region_model, tiny_card
from PIL import Image

from glimpse.errors import InvalidParams
from glimpse.images import decode_maps, decode_segments_png
from glimpse.params import parse_params
from glimpse.settings import Settings
from worker.pipeline import ModelInUse, decode, explain_image
from worker.runtime.onnx import OnnxRuntimeModel

SIDE = 64


@pytest.fixture(scope="module")
def photo() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def model_in_use(path: Path, classes: int) -> ModelInUse:
    card = tiny_card(SIDE, SIDE, classes)
    runtime = OnnxRuntimeModel(path, card)
    return ModelInUse("tiny", card, [f"class {i}" for i in range(classes)], runtime)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> ModelInUse:
    path = tmp_path_factory.mktemp("pipeline") / "region.onnx"
    return model_in_use(region_model(path, SIDE, SIDE, slice(0, 16), slice(0, 16)), 2)


def params(**extra: object):
    grid = {"algorithm": "grid", "cell_size": 16}
    return parse_params({"num_samples": 200, "segmentation": grid, **extra})


def test_an_image_is_explained_and_described(photo: bytes, region: ModelInUse) -> None:
    settings = Settings()
    image = decode(photo, settings)
    explained = explain_image(image, region, params(targets={"classes": [0]}), settings)
    result = explained.result
    assert result.model.name == "tiny" and result.method == "lime"
    assert (result.image.width, result.image.height) == (SIDE, SIDE)
    assert result.segments.count == 16 and result.explanations[0].label == "class 0"
    weights = np.asarray(result.explanations[0].weights)
    assert int(np.argmax(weights)) == 0  # the model reads only the top-left cell
    segments = decode_segments_png(explained.segments_png())
    np.testing.assert_array_equal(segments, explained.explanation.segments)
    assert explained.stored_maps() is None  # LIME's maps are its weights on the segments
    assert result.stats.model_evaluations == explained.explanation.model_evaluations == 200


def test_a_request_its_model_refuses_is_refused_before_any_evaluation(
    photo: bytes, region: ModelInUse
) -> None:
    settings = Settings()
    calls: list[tuple[int, int]] = []
    with pytest.raises(InvalidParams) as info:
        explain_image(
            decode(photo, settings),
            region,
            params(targets={"classes": [5]}),
            settings,
            progress=lambda d, t: calls.append((d, t)),
        )
    assert "classes" in str(info.value.errors) and calls == []


def test_a_method_with_maps_of_its_own_stores_them(
    photo: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path, _ = conv_gap_model(tmp_path_factory.mktemp("cnn") / "cnn.onnx", SIDE, SIDE)
    model = model_in_use(path, 3)
    settings = Settings()
    explained = explain_image(decode(photo, settings), model, params(method="gradcam"), settings)
    stored = explained.stored_maps()
    assert stored is not None
    maps = decode_maps(stored)
    assert maps.shape == (1, SIDE, SIDE) and explained.result.layer == "features"
