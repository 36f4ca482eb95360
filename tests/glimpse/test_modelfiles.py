"""Reading ONNX graphs into cards, the pinned ResNet50 download, the untrained generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx_models import pooled_classifier, region_model

from glimpse.errors import GlimpseError, ModelError
from glimpse.modelfiles import (
    RESNET50_OUTPUT,
    card_from_graph,
    download,
    inspect_onnx,
    resnet50_v2_graph,
)
from glimpse.sources import RESNET50_SHA256


def test_inspect_reads_names_shape_and_classes(tmp_path: Path) -> None:
    info = inspect_onnx(pooled_classifier(tmp_path / "m.onnx", num_classes=7))
    assert (info.input_name, info.output_name, info.num_classes) == ("data", "logits", 7)
    assert info.input_shape == ("N", 3, 224, 224) and info.spatial_size == (224, 224)


def test_initializers_listed_as_inputs_are_not_image_inputs(tmp_path: Path) -> None:
    info = inspect_onnx(pooled_classifier(tmp_path / "m.onnx", weights_as_inputs=True))
    assert info.input_name == "data"


def test_fixed_size_graph_keeps_its_size_and_the_preset_ratio(tmp_path: Path) -> None:
    info = inspect_onnx(region_model(tmp_path / "r.onnx", 16, 16, slice(0, 4), slice(0, 4)))
    assert info.num_classes == 2
    card = card_from_graph(info, "imagenet")
    assert card.input_size == (16, 16) and card.resize_shorter_to == 18  # 16 * 256 / 224
    squash = card_from_graph(info, "imagenet-squash", labels_file=None)
    assert squash.resize == "squash" and squash.labels_file is None


def test_dynamic_spatial_size_takes_the_presets(tmp_path: Path) -> None:
    path = pooled_classifier(tmp_path / "m.onnx", input_shape=["N", 3, "H", "W"])
    card = card_from_graph(inspect_onnx(path), "imagenet")
    assert card.input_size == (224, 224) and card.resize_shorter_to == 256
    assert card.input_name == "data" and card.output_name == "logits" and card.num_classes == 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": ["N", 1, 28, 28]}, "3 channels"),
        ({"input_shape": ["N", 224, 224, 3]}, "3 channels"),
        ({"input_shape": ["N", 3, 224]}, "4-D"),
        ({"elem_type": TensorProto.UINT8}, "float32"),
    ],
)
def test_graphs_that_do_not_fit_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    if kwargs.get("input_shape") == ["N", 3, 224]:
        path = tmp_path / "m.onnx"
        g = onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224])],
            [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 224])],
        )
        onnx.save(onnx.helper.make_model(g), str(path))
    else:
        path = pooled_classifier(tmp_path / "m.onnx", **kwargs)
    with pytest.raises(ModelError, match=message):
        inspect_onnx(path)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        inspect_onnx(path)


def test_download_checks_the_sha256(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"model bytes")
    good = hashlib.sha256(b"model bytes").hexdigest()
    dest = tmp_path / "out" / "model.onnx"
    download(src.as_uri(), dest, good)
    assert dest.read_bytes() == b"model bytes"
    other = tmp_path / "out2" / "model.onnx"
    with pytest.raises(GlimpseError, match="expected"):
        download(src.as_uri(), other, "0" * 64)
    assert not other.exists() and list(other.parent.iterdir()) == []


def test_download_offline_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(GlimpseError) as info:
        download(
            "http://127.0.0.1:9/resnet50-v2-7.onnx", tmp_path / "m.onnx", RESNET50_SHA256, timeout=5
        )
    assert "cannot download" in info.value.detail and "offline?" in info.value.detail
    assert "\n" not in info.value.detail
    assert list(tmp_path.iterdir()) == []


def test_pinned_sha256_is_the_model_zoos() -> None:
    assert RESNET50_SHA256 == "79102261eb6e5fd7af5d27f41316293e388c5cb691e5d25bfb035c4f64fefe31"


def test_untrained_resnet50_v2_has_the_architecture_and_runs(tmp_path: Path) -> None:
    model, params = resnet50_v2_graph(seed=0)
    assert 25_400_000 < params < 25_700_000
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Add") == 3 + 4 + 6 + 3  # one residual sum per bottleneck
    assert ops.count("Conv") == 1 + 3 * 16 + 4  # stem, 3 per bottleneck, 4 projections
    assert ops.count("BatchNormalization") == 2 + 3 * 16 + 1
    assert model.opset_import[0].version == 17
    path = tmp_path / "r.onnx"
    onnx.save(model, str(path))
    info = inspect_onnx(path)
    assert info.input_name == "data" and info.output_name == RESNET50_OUTPUT
    assert info.input_shape == ("N", 3, 224, 224) and info.num_classes == 1000
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    out = session.run(None, {"data": x})[0]
    assert out.shape == (2, 1000) and np.isfinite(out).all()


def test_the_generator_is_seeded() -> None:
    def conv0(seed: int) -> bytes:
        model, _ = resnet50_v2_graph(seed=seed)
        return next(
            t.raw_data for t in model.graph.initializer if t.name == "resnetv24_conv0_weight"
        )

    assert conv0(0) == conv0(0) != conv0(1)
