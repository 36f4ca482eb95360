"""`glimpse explain A B C`: several images in one process, the model loaded once, a folder
per image (docs/cli.md), and a bad image refused before anything is loaded or written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data

import worker.runtime.loader
from cli.commands.explain import out_dirs
from cli.main import main
from glimpse.images import encode_png

QUICK = ["--samples", "20", "--segmentation", '{"algorithm": "grid", "cell_size": 32}']


@pytest.fixture
def cats(tmp_path: Path) -> list[Path]:
    """Three small cats, two of them named cat.png (in two folders), one cat-2.png."""
    small = skimage.data.chelsea()[::3, ::3]
    pixels = [small, np.ascontiguousarray(small[:, ::-1]), np.ascontiguousarray(small[::-1])]
    paths = [tmp_path / "a" / "cat.png", tmp_path / "b" / "cat.png", tmp_path / "cat-2.png"]
    for path, image in zip(paths, pixels, strict=True):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encode_png(np.ascontiguousarray(image)))
    return paths


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The model files build_runtime is asked to load, in order."""
    seen: list[Path] = []
    build = worker.runtime.loader.build_runtime

    def counted(path, *args, **kwargs):
        seen.append(path)
        return build(path, *args, **kwargs)

    monkeypatch.setattr(worker.runtime.loader, "build_runtime", counted)
    return seen


def test_several_images_one_model_load_a_folder_each(
    settings_env, cats: list[Path], tmp_path: Path, loads, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["explain", *map(str, cats), *QUICK, "--top-k", "2", "--out", str(out)]) == 0
    assert len(loads) == 1
    folders = [out / "cat", out / "cat-3", out / "cat-2"]  # cat-2 is the third image's own
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in folders)
    for path, folder in zip(cats, folders, strict=True):
        result = json.loads((folder / "result.json").read_text())
        assert result["image"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert result["predictions"][0]["label"] == "Egyptian cat"
        assert np.load(folder / "attribution.npy").shape == (2, 100, 151)
        for name in ("segments.png", "figure.png"):
            assert (folder / name).is_file()
        for e in result["explanations"]:
            assert (folder / f"overlay-{e['class_index']}.png").is_file()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, folder in zip(lines, folders, strict=True):
        assert line.startswith("cat") and line.endswith(f"-> {folder}")


def test_without_out_each_image_goes_to_glimpse_out_slash_its_stem(
    settings_env, cats: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["explain", str(cats[0]), str(cats[2]), *QUICK]) == 0
    for stem in ("cat", "cat-2"):
        assert (tmp_path / "glimpse-out" / stem / "result.json").is_file()
    bars = capsys.readouterr().err
    assert "cat.png" in bars and "cat-2.png" in bars  # a progress bar per image, named


def test_a_bad_image_among_several_stops_before_the_model_loads(
    settings_env, cats: list[Path], tmp_path: Path, loads, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encode_png(np.zeros((31, 8, 3), np.uint8)))
    out = tmp_path / "o"
    for bad, needle in (
        (text, f"glimpse: unsupported image: {text}: "),
        (tiny, f"glimpse: invalid parameters: {tiny}: the image is 8x31 pixels"),
        (tmp_path / "absent.png", "glimpse: not found: no such image file: "),
    ):
        code = main(["explain", str(cats[0]), str(bad), str(cats[1]), *QUICK, "--out", str(out)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(needle), lines
    assert loads == [] and not out.exists()


@pytest.mark.parametrize(
    ("names", "folders"),
    [
        (["x/a.png"], ["glimpse-out/a"]),
        (["a.png", "b.jpg"], ["glimpse-out/a", "glimpse-out/b"]),
        (["x/a.png", "y/a.jpg", "a.webp"], ["glimpse-out/a", "glimpse-out/a-2", "glimpse-out/a-3"]),
        (["a.png", "a.jpg", "a-2.png"], ["glimpse-out/a", "glimpse-out/a-3", "glimpse-out/a-2"]),
        (["a-2.png", "a.png", "a.jpg"], ["glimpse-out/a-2", "glimpse-out/a", "glimpse-out/a-3"]),
    ],
)
def test_out_dirs(names: list[str], folders: list[str]) -> None:
    assert out_dirs([Path(n) for n in names], None) == [Path(f) for f in folders]
    mine = out_dirs([Path(n) for n in names], "mine")
    if len(names) == 1:
        assert mine == [Path("mine")]
    else:
        assert mine == [Path("mine") / Path(f).name for f in folders]
