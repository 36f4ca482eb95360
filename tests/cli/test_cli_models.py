"""`glimpse models add|list|fetch|make-resnet50` on a models folder of its own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from onnx_models import pooled_classifier, region_model
from services import FileServer

from cli.main import main
from glimpse.cards import ModelRegistry
from glimpse.settings import get_settings


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "models"
    monkeypatch.setenv("GLIMPSE_MODELS_DIR", str(root))
    monkeypatch.setenv("GLIMPSE_DEFAULT_MODEL", "cls")
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def labels(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"labels{n}.txt"
    path.write_text("".join(f"class {i}\n" for i in range(n)))
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("glimpse: ")
    return lines[0]


def test_add_copies_the_model_and_writes_an_inferred_card(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = pooled_classifier(
        tmp_path / "src.onnx", input_name="pixels", output_name="scores", num_classes=5
    )
    assert main(["models", "add", "cls", str(model), "--labels", str(labels(tmp_path, 5))]) == 0
    assert "registered 'cls'" in capsys.readouterr().out
    assert (folder / "cls" / "model.onnx").read_bytes() == model.read_bytes()
    assert not (folder / "cls" / "model.onnx").is_symlink()
    card = json.loads((folder / "cls" / "model.json").read_text())
    assert card["input_name"] == "pixels" and card["output_name"] == "scores"
    assert card["num_classes"] == 5 and card["input_size"] == [224, 224]
    assert card["resize"] == "shorter_side" and card["resize_shorter_to"] == 256
    assert card["labels_file"] == "labels.txt"
    assert ModelRegistry(folder).get("cls").labels[4] == "class 4"


def test_add_with_the_squash_preset_and_a_fixed_size(folder: Path, tmp_path: Path) -> None:
    model = region_model(tmp_path / "r.onnx", 16, 16, slice(0, 4), slice(0, 4))
    argv = [
        "models",
        "add",
        "tiny",
        str(model),
        "--labels",
        str(labels(tmp_path, 2)),
        "--preset",
        "imagenet-squash",
    ]
    assert main(argv) == 0
    card = ModelRegistry(folder).get("tiny").card
    assert card.resize == "squash" and card.input_size == (16, 16)


def test_list_marks_the_default(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "list"]) == 0
    assert "no models" in capsys.readouterr().out
    lab = str(labels(tmp_path, 1000))
    for name in ("cls", "other"):
        assert (
            main(
                [
                    "models",
                    "add",
                    name,
                    str(pooled_classifier(tmp_path / f"{name}.onnx")),
                    "--labels",
                    lab,
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if " cls " in line)
    assert row.startswith("*") and "224x224" in row and "1000" in row
    assert next(line for line in lines if " other " in line).startswith(" ")
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {"name": "cls", "input_size": [224, 224], "num_classes": 1000, "default": True},
        {"name": "other", "input_size": [224, 224], "num_classes": 1000, "default": False},
    ]


@pytest.mark.parametrize(
    ("make", "label_count", "needle"),
    [
        (lambda p: pooled_classifier(p, num_classes=10), 9, "9 labels, the model has 10 classes"),
        (
            lambda p: pooled_classifier(p, input_shape=["N", 1, 28, 28], num_classes=10),
            10,
            "3 channels",
        ),
        (
            lambda p: pooled_classifier(p, input_shape=["N", 28, 28, 3], num_classes=10),
            10,
            "3 channels",
        ),
        (lambda p: p.with_suffix(".txt"), 10, "no such model file"),
    ],
)
def test_add_refuses_what_does_not_fit(
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make,
    label_count: int,
    needle: str,
) -> None:
    model = make(tmp_path / "m.onnx")
    code = main(
        ["models", "add", "bad", str(model), "--labels", str(labels(tmp_path, label_count))]
    )
    assert code == 2
    assert needle in one_error_line(capsys)
    assert ModelRegistry(folder).names() == []


def test_add_refuses_bad_names_and_existing_models(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, lab = str(pooled_classifier(tmp_path / "m.onnx")), str(labels(tmp_path, 1000))
    assert main(["models", "add", "../evil", model, "--labels", lab]) == 2
    assert "not a valid model name" in one_error_line(capsys)
    assert main(["models", "add", "m", model, "--labels", lab]) == 0
    capsys.readouterr()
    assert main(["models", "add", "m", model, "--labels", lab]) == 2
    assert "--force" in one_error_line(capsys)
    assert main(["models", "add", "m", model, "--labels", lab, "--force"]) == 0


def resnet_like(tmp_path: Path) -> tuple[Path, str]:
    path = pooled_classifier(
        tmp_path / "resnet50-v2-7.onnx", output_name="resnetv24_dense0_fwd", weights_as_inputs=True
    )
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def synset(tmp_path: Path) -> tuple[Path, str]:
    """A file in the zoo's synset.txt form: WordNet id, then the names."""
    path = tmp_path / "synset.txt"
    path.write_text("".join(f"n{i:08d} class {i}, kind {i}\n" for i in range(1000)))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    """A local stand-in for the model zoo: the settings point the fetch at it, and its pinned
    checksums are those of the files it serves."""
    site = tmp_path / "site"
    site.mkdir()
    _, model_sha = resnet_like(site)
    _, labels_sha = synset(site)
    server = FileServer(site)
    monkeypatch.setenv("GLIMPSE_RESNET50_URL", f"{server.url}/resnet50-v2-7.onnx")
    monkeypatch.setenv("GLIMPSE_RESNET50_SHA256", model_sha)
    monkeypatch.setenv("GLIMPSE_RESNET50_LABELS_URL", f"{server.url}/synset.txt")
    monkeypatch.setenv("GLIMPSE_RESNET50_LABELS_SHA256", labels_sha)
    get_settings.cache_clear()
    yield server
    server.stop()


def test_fetch_registers_downloads_that_match_the_pinned_sha256(
    folder: Path, zoo: FileServer
) -> None:
    assert main(["models", "fetch", "resnet50"]) == 0
    got = ModelRegistry(folder).get("resnet50")
    assert got.card.input_name == "data" and got.card.output_name == "resnetv24_dense0_fwd"
    assert got.card.resize == "shorter_side" and got.card.resize_shorter_to == 256
    assert got.card.input_size == (224, 224) and got.card.output_kind == "logits"
    assert got.labels[0] == "class 0, kind 0" and got.labels[999] == "class 999, kind 999"
    assert sorted(p.name for p in got.folder.iterdir()) == [
        "labels.txt",
        "model.json",
        "model.onnx",
    ]
    assert zoo.requests == {"/synset.txt": 1, "/resnet50-v2-7.onnx": 1}


def test_fetch_with_a_labels_file_downloads_only_the_model(
    folder: Path, tmp_path: Path, zoo: FileServer
) -> None:
    assert main(["models", "fetch", "resnet50", "--labels", str(labels(tmp_path, 1000))]) == 0
    assert ModelRegistry(folder).get("resnet50").labels[0] == "class 0"
    assert zoo.requests == {"/resnet50-v2-7.onnx": 1}


def test_fetch_refuses_a_download_with_another_sha256(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = resnet_like(tmp_path)
    argv = [
        "models",
        "fetch",
        "resnet50",
        "--labels",
        str(labels(tmp_path, 1000)),
        "--url",
        path.as_uri(),
    ]
    assert main(argv) == 2
    assert "expected 79102261eb6e" in one_error_line(capsys)
    assert ModelRegistry(folder).names() == [] and not (folder / "resnet50").exists()


def test_fetch_offline_is_one_clear_line(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "models",
        "fetch",
        "resnet50",
        "--labels",
        str(labels(tmp_path, 1000)),
        "--url",
        "http://127.0.0.1:9/resnet50-v2-7.onnx",
    ]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "cannot download" in line and "offline?" in line and "README" in line


def test_fetch_needs_1000_labels(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "fetch", "resnet50", "--labels", str(labels(tmp_path, 10))]) == 2
    assert "10 labels" in one_error_line(capsys)


def test_make_resnet50_registers_an_untrained_model(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "make-resnet50", "--seed", "3"]) == 0
    assert "UNTRAINED" in capsys.readouterr().out
    got = ModelRegistry(folder).get("resnet50-untrained")
    assert "UNTRAINED" in got.card.description and "seed 3" in got.card.description
    assert got.card.labels_file is None and got.labels[:2] == ["0", "1"]
    assert got.card.input_name == "data" and got.card.output_name == "resnetv24_dense0_fwd"
    assert got.onnx_path.stat().st_size > 100_000_000


@pytest.fixture
def no_override(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The models folder alone decides the default (GLIMPSE_DEFAULT_MODEL unset)."""
    monkeypatch.delenv("GLIMPSE_DEFAULT_MODEL")
    get_settings.cache_clear()
    return folder


def test_the_default_is_kept_with_the_models_folder(
    no_override: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, model = str(labels(tmp_path, 1000)), str(pooled_classifier(tmp_path / "m.onnx"))
    assert main(["models", "default"]) == 0
    assert capsys.readouterr().out.strip() == "resnet50"  # a folder that names none
    assert main(["models", "add", "one", model, "--labels", lab]) == 0
    assert main(["models", "add", "two", model, "--labels", lab, "--default"]) == 0
    assert (no_override / ".default").read_text() == "two\n"
    capsys.readouterr()
    assert main(["models", "default"]) == 0
    assert capsys.readouterr().out.strip() == "two"
    assert main(["models", "default", "one"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["default"]) for m in listed] == [("one", True), ("two", False)]
    assert main(["models", "default", "three"]) == 2
    assert "no model named 'three'" in one_error_line(capsys)


def test_init_fetches_resnet50_as_the_default_once(
    no_override: Path, zoo: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "init"]) == 0
    assert (no_override / ".default").read_text() == "resnet50\n"
    assert ModelRegistry(no_override).get("resnet50").labels[1] == "class 1, kind 1"
    assert main(["models", "init"]) == 0  # registered already: nothing downloaded again
    assert "is registered" in capsys.readouterr().out.splitlines()[-1]
    assert zoo.requests == {"/synset.txt": 1, "/resnet50-v2-7.onnx": 1}


def test_init_offline_says_in_one_line_how_to_add_a_model(
    no_override: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GLIMPSE_RESNET50_LABELS_URL", "http://127.0.0.1:9/synset.txt")
    get_settings.cache_clear()
    assert main(["models", "init"]) == 2
    line = one_error_line(capsys)
    assert "cannot be fetched" in line and "glimpse models add NAME FILE.onnx" in line
    assert not (no_override / "resnet50").exists() and not (no_override / ".default").exists()


def test_init_names_a_configured_default_that_is_missing(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "init"]) == 2  # GLIMPSE_DEFAULT_MODEL=cls: nothing to fetch
    assert "'cls' is not registered" in one_error_line(capsys)
