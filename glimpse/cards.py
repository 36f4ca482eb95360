"""Model cards and the models folder (docs/models.md): pure data, no model runtime.

A model is a folder `NAME/` holding `model.onnx`, `model.json` (the card) and its labels file.
The folder's default model is named in its `.default` file (`glimpse models default NAME`), so
the CLI, the API and the workers that share a folder agree on it. The API lists and validates
against cards; only the worker opens `model.onnx`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from glimpse.errors import ModelError, NotFound

#: A model name is one folder name: no separators, no "..", nothing a path could read as
#: absolute or as a parent. `fullmatch` (not `$`, which allows a trailing newline).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

#: The file of the models folder naming its default model (a dot: never a model's name).
DEFAULT_FILE = ".default"
#: The default model of a folder that names none, and of a request that names none.
FALLBACK_DEFAULT = "resnet50"


def is_valid_name(name: object) -> bool:
    """A model name, or a file name inside a model's folder (the labels file)."""
    return isinstance(name, str) and bool(NAME_PATTERN.fullmatch(name)) and ".." not in name


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelCard(BaseModel):
    """How to feed a model and read what it says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_name: str
    layout: Literal["NCHW"] = "NCHW"
    input_size: tuple[int, int] = Field(description="(height, width) of the model input")
    resize: Literal["squash", "shorter_side"] = "squash"
    resize_shorter_to: int | None = Field(
        default=None, description="shorter_side: resize to this, then center-crop input_size"
    )
    scale: float = Field(default=1 / 255, description="multiplies 0..255 pixel values")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: Literal["RGB", "BGR"] = "RGB"
    output_name: str
    output_kind: Literal["logits", "probabilities"] = "logits"
    num_classes: int = Field(gt=0)
    labels_file: str | None = "labels.txt"
    description: str = ""

    @field_validator("labels_file")
    @classmethod
    def _labels_in_the_folder(cls, value: str | None) -> str | None:
        """The labels file is a file of the model's folder, never a path out of it."""
        if value is not None and not is_valid_name(value):
            raise ValueError(f"labels_file {value!r} must be a file name in the model folder")
        return value

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(width, height) that an image of height × width is resized to before the center
        crop to input_size: input_size itself (squash), or the shorter side scaled to
        resize_shorter_to, so an extreme aspect ratio makes a very long other side."""
        in_h, in_w = self.input_size
        if self.resize == "squash":
            return in_w, in_h
        factor = (self.resize_shorter_to or max(in_h, in_w)) / min(height, width)
        return max(in_w, round(width * factor)), max(in_h, round(height * factor))


PRESETS: dict[str, dict[str, object]] = {
    # torchvision / ONNX model zoo ImageNet convention.
    "imagenet": {
        "input_size": (224, 224),
        "resize": "shorter_side",
        "resize_shorter_to": 256,
        "scale": 1 / 255,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "channel_order": "RGB",
        "output_kind": "logits",
    },
    # The shared EfficientNet-Lite0 was checked with a plain 224x224 resize.
    "imagenet-squash": {
        "input_size": (224, 224),
        "resize": "squash",
        "scale": 1 / 255,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "channel_order": "RGB",
        "output_kind": "logits",
    },
}


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    folder: Path
    card: ModelCard

    @property
    def onnx_path(self) -> Path:
        return self.folder / "model.onnx"

    @cached_property
    def labels(self) -> list[str]:
        if self.card.labels_file is None:
            return [str(i) for i in range(self.card.num_classes)]
        path = self.folder / self.card.labels_file
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ModelError(f"model {self.name!r}: cannot read labels {path}: {exc}") from exc
        labels = [line.strip() for line in lines if line.strip()]
        if len(labels) != self.card.num_classes:
            raise ModelError(
                f"model {self.name!r}: {len(labels)} labels for {self.card.num_classes} classes"
            )
        return labels


def check_name(name: str) -> str:
    """Model names are folder names: no separators, no '..', nothing that leaves the folder."""
    if not is_valid_name(name):
        raise NotFound(
            f"model name {name!r} is not a valid model name (letters, digits, '.', '_' and '-', "
            "at most 100, starting with a letter or digit, no '..')"
        )
    return name


class ModelRegistry:
    """The models folder: `NAME/model.json` cards. Folders may change while it runs: every
    call looks at the card file again, and parses it again only when it changed (size,
    modification time or inode: a card replaced by a rename is seen at once)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._parsed: dict[str, tuple[tuple[int, int, int], RegisteredModel]] = {}

    def folder(self, name: str) -> Path:
        """The folder of model `name`: a direct child of the models folder, whatever `name`
        is (NotFound otherwise). Links inside the models folder are the operator's and are
        followed: a model folder or its model.onnx may link to a shared copy."""
        folder = self.root / check_name(name)
        if os.path.normpath(folder.parent) != os.path.normpath(self.root):
            raise NotFound(f"model name {name!r} is not a valid model name")
        return folder

    def get(self, name: str) -> RegisteredModel:
        folder = self.folder(name)
        card_path = folder / "model.json"
        try:
            found = card_path.stat()
        except OSError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            self._parsed.pop(name, None)
            raise NotFound(f"no model named {name!r} in {self.root}")
        version = (found.st_mtime_ns, found.st_size, found.st_ino)
        known = self._parsed.get(name)
        if known is not None and known[0] == version:
            return known[1]
        try:
            card = ModelCard.model_validate(json.loads(card_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError) as exc:
            raise ModelError(f"model {name!r}: bad card {card_path}: {exc}") from exc
        model = RegisteredModel(name=name, folder=folder, card=card)
        self._parsed[name] = (version, model)
        return model

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if (p / "model.json").is_file() and is_valid_name(p.name)
        )

    def has(self, name: str) -> bool:
        """Whether `name` is registered here (a valid name whose folder holds a card)."""
        return is_valid_name(name) and (self.root / name / "model.json").is_file()

    def set_default(self, name: str) -> None:
        """Make `name` (registered here) the folder's default: written whole, then renamed."""
        self.get(name)
        path = self.root / DEFAULT_FILE
        tmp = path.with_name(f"{DEFAULT_FILE}.{os.getpid()}.tmp")
        tmp.write_text(name + "\n", encoding="utf-8")
        tmp.replace(path)

    def all(self) -> list[RegisteredModel]:
        return [self.get(name) for name in self.names()]

    def write(self, name: str, card: ModelCard) -> Path:
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.json"
        path.write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def read_default(root: Path) -> str | None:
    """The name in `root/.default` (None: no file, or not a valid name). Read again only
    when the file changed, so callers may ask on every request."""
    try:
        found = (Path(root) / DEFAULT_FILE).stat()
    except OSError:
        return None
    return _read_default(str(root), found.st_mtime_ns, found.st_size, found.st_ino)


@functools.lru_cache(maxsize=16)
def _read_default(root: str, mtime_ns: int, size: int, inode: int) -> str | None:
    del mtime_ns, size, inode  # the cache key: the file as it is now
    try:
        name = (Path(root) / DEFAULT_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if is_valid_name(name) else None
