"""Model cards, presets and the models folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glimpse.cards import PRESETS, ModelCard, ModelRegistry, check_name, is_valid_name
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


ESCAPES = ["../../etc/passwd", "/etc/passwd", "a\\b", "a\x00b", "abc\n", "a..b", "..x", "\u0430bc"]


@pytest.mark.parametrize("name", ESCAPES, ids=[repr(n) for n in ESCAPES])
def test_names_are_one_plain_folder_name(tmp_path: Path, name: str) -> None:
    """Also what `$` would let through (a trailing newline), backslashes, NUL and look-alike
    letters; the registry reads nothing for them, not even a model.json that exists."""
    root = tmp_path / "models"
    registry = ModelRegistry(root)
    registry.write("ok", card())
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "model.json").write_text(card().model_dump_json())
    assert not is_valid_name(name)
    for call in (registry.get, registry.folder, lambda n: registry.write(n, card())):
        with pytest.raises(NotFound, match="not a valid model name"):
            call(name)
    with pytest.raises(NotFound):
        registry.get("../etc")
    assert registry.names() == ["ok"]
    assert registry.folder("ok") == root / "ok" and is_valid_name("resnet50-v2.7_b")


def test_names_on_disk_that_are_not_valid_are_not_listed(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.write("ok", card())
    for bad in ("a..b", "-dash"):
        (tmp_path / bad).mkdir()
        (tmp_path / bad / "model.json").write_text(card().model_dump_json())
    assert registry.names() == ["ok"]


@pytest.mark.parametrize("labels", ["../labels.txt", "/etc/passwd", "sub/labels.txt", ".."])
def test_a_card_labels_file_stays_in_the_model_folder(labels: str) -> None:
    with pytest.raises(ValueError, match="file name in the model folder"):
        card(labels_file=labels)
    assert card(labels_file="imagenet_labels.txt").labels_file == "imagenet_labels.txt"


@pytest.mark.parametrize(
    ("height", "width", "resized"),
    [
        (300, 451, (385, 256)),
        (480, 640, (341, 256)),
        (1, 40_000, (10_240_000, 256)),
        (10, 10, (256, 256)),
    ],
)
def test_resized_size_of_a_shorter_side_card(height: int, width: int, resized: tuple) -> None:
    assert card().resized_size(height, width) == resized
    squash = card(resize="squash", resize_shorter_to=None)
    assert squash.resized_size(height, width) == (224, 224)
