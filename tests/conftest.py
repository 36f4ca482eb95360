"""Fixtures shared by every test package: the shared models and a models folder holding them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from skimage import data as skdata

from glimpse.cards import PRESETS, ModelCard, ModelRegistry
from glimpse.images import encode_png
from glimpse.settings import get_settings

# Fixtures of the end-to-end API/worker tests (real redis-server, uvicorn, RQ worker).
pytest_plugins = ["api_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = (REPO.parent / "shared" / "models").resolve()
EFFICIENTNET = SHARED_MODELS / "efficientnet-lite0.onnx"
IMAGENET_LABELS = SHARED_MODELS / "imagenet1k_labels.txt"


def efficientnet_card() -> ModelCard:
    return ModelCard(
        input_name="data",
        output_name="logits",
        num_classes=1000,
        labels_file="labels.txt",
        description="EfficientNet-Lite0, ImageNet-1k weights (shared test model)",
        **PRESETS["imagenet-squash"],  # type: ignore[arg-type]
    )


def register_efficientnet(models_dir: Path, name: str = "efficientnet-lite0") -> Path:
    """A models folder with the shared EfficientNet, linked (never copied into the repo)."""
    if not EFFICIENTNET.is_file():
        pytest.fail(
            f"the shared model {EFFICIENTNET} is missing: ../shared must sit beside the repo"
        )
    folder = models_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").unlink(missing_ok=True)
    (folder / "model.onnx").symlink_to(EFFICIENTNET)
    shutil.copyfile(IMAGENET_LABELS, folder / "labels.txt")
    ModelRegistry(models_dir).write(name, efficientnet_card())
    return folder


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    register_efficientnet(root)
    return root


@pytest.fixture
def settings_env(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings from the environment, as the installed `glimpse` command reads them."""
    monkeypatch.setenv("GLIMPSE_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("GLIMPSE_DEFAULT_MODEL", "efficientnet-lite0")
    get_settings.cache_clear()
    yield models_dir
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def chelsea_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """skimage's chelsea as a PNG file on disk."""
    path = tmp_path_factory.mktemp("img") / "chelsea.png"
    path.write_bytes(encode_png(skdata.chelsea()))
    return path
