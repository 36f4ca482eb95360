"""Model cards, presets and the models folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glimpse.cards import PRESETS, ModelCard, ModelRegistry, check_name
from glimpse.errors import ModelError, NotFound


def card(**fields: object) -> ModelCard:
    base = {"input_name": "data", "output_name": "out", "num_classes": 3, **PRESETS["imagenet"]}
    return ModelCard(**{**base, **fields})  # type: ignore[arg-type]


def test_presets_make_valid_cards() -> None:
    imagenet = card()
    assert imagenet.resize == "shorter_side" and imagenet.resize_shorter_to == 256
    assert imagenet.input_size == (224, 224) and imagenet.layout == "NCHW"
    squash = ModelCard(input_name="d", output_name="o", num_classes=2, **PRESETS["imagenet-squash"])  # type: ignore[arg-type]
    assert squash.resize == "squash" and squash.resize_shorter_to is None


def test_cards_reject_unknown_fields() -> None:
    with pytest.raises(ValueError):
        ModelCard(input_name="d", output_name="o", num_classes=2, input_size=(8, 8), colour="red")  # type: ignore[call-arg]


def test_registry_writes_lists_and_reads(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.names() == []
    registry.write("b-model", card())
    registry.write("a.model", card(num_classes=2, labels_file=None))
    (tmp_path / "not-a-model").mkdir()
    assert registry.names() == ["a.model", "b-model"]
    got = registry.get("b-model")
    assert got.card == card() and got.onnx_path == tmp_path / "b-model" / "model.onnx"
    assert registry.get("a.model").labels == ["0", "1"]
    assert json.loads((tmp_path / "b-model" / "model.json").read_text())["input_name"] == "data"
    assert [m.name for m in registry.all()] == ["a.model", "b-model"]


def test_labels_are_read_and_counted(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.write("m", card())
    (tmp_path / "m" / "labels.txt").write_text("cat\n\ndog\nbird\n")
    assert registry.get("m").labels == ["cat", "dog", "bird"]
    registry.write("n", card())
    (tmp_path / "n" / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(ModelError, match="2 labels for 3 classes"):
        registry.get("n").labels  # noqa: B018
    registry.write("o", card())
    with pytest.raises(ModelError, match="cannot read labels"):
        registry.get("o").labels  # noqa: B018


def test_unknown_and_broken_models(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(NotFound):
        registry.get("nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="bad card"):
        registry.get("bad")


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../etc", "", "-x", "a" * 101, "a b"])
def test_names_that_leave_the_folder_are_refused(name: str) -> None:
    with pytest.raises(NotFound):
        check_name(name)


def test_missing_models_folder_lists_nothing(tmp_path: Path) -> None:
    assert ModelRegistry(tmp_path / "absent").names() == []
