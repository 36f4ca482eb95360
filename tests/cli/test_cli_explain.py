"""`glimpse explain` (docs/cli.md): the files it writes, in process and as a subprocess, and
one clear line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from onnx_models import region_model
from PIL import Image

from cli.main import main
from glimpse import artifacts
from glimpse.images import decode_image, decode_segments_png, encode_png
from glimpse.result import ExplanationResult
from glimpse.visual import Visual

REPO = Path(__file__).resolve().parents[2]


def check_outputs(out: Path, method: str, classes: int) -> ExplanationResult:
    result = ExplanationResult.model_validate(json.loads((out / "result.json").read_text()))
    assert result.method == method
    assert (result.image.width, result.image.height) == (451, 300)
    assert result.predictions[0].class_index == 285
    assert result.predictions[0].label == "Egyptian cat"
    assert len(result.predictions) == 5 and len(result.explanations) == classes
    attribution = np.load(out / "attribution.npy")
    assert attribution.dtype == np.float32 and attribution.shape == (classes, 300, 451)
    segments = decode_segments_png((out / "segments.png").read_bytes())
    assert segments.shape == (300, 451) and segments.max() + 1 == result.segments.count
    for k, explanation in enumerate(result.explanations):
        assert len(explanation.weights) == result.segments.count
        np.testing.assert_allclose(
            attribution[k], np.asarray(explanation.weights, np.float32)[segments]
        )
        assert (out / f"overlay-{explanation.class_index}.png").is_file()
    return result


def test_explain_lime_in_process_writes_every_file(
    settings_env, chelsea_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lime"
    code = main(["explain", str(chelsea_file), "--samples", "100", "--out", str(out)])
    assert code == 0
    result = check_outputs(out, "lime", 1)
    assert result.model.name == "efficientnet-lite0" and result.model.runtime == "onnxruntime"
    assert result.explanations[0].score is not None
    assert result.stats.model_evaluations <= 100
    captured = capsys.readouterr()
    assert "Egyptian cat" in captured.out and str(out) in captured.out
    assert "eval" in captured.err  # the progress bar


def test_explain_with_auto_samples_stops_by_itself(
    settings_env, chelsea_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "auto"
    argv = ["explain", str(chelsea_file), "--method", "kernel_shap", "--samples", "auto"]
    grid = '{"algorithm": "grid", "cell_size": 112}'  # 2 x 2 cells of the model's input
    code = main(
        [*argv, "--max-samples", "400", "--tolerance", "0.02", "--segmentation", grid]
        + ["--out", str(out)]
    )
    assert code == 0
    result = check_outputs(out, "kernel_shap", 1)
    assert result.stats.rounds is not None and result.stats.converged is not None
    assert result.stats.model_evaluations <= 400
    e = result.explanations[0]
    assert e.top_resolution is not None and e.top_settled == (e.top_resolution <= 0.02)


def test_explain_kernel_shap_top_k(settings_env, chelsea_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "shap"
    code = main(
        [
            "explain",
            str(chelsea_file),
            "--method",
            "kernel_shap",
            "--samples",
            "100",
            "--top-k",
            "2",
            "--segmentation",
            "slic",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    result = check_outputs(out, "kernel_shap", 2)
    assert result.segments.algorithm == "slic"
    for e in result.explanations:
        assert e.score is None
        assert sum(e.weights) + e.base_value == pytest.approx(e.probability, abs=1e-6)


def test_explain_as_a_subprocess(models_dir: Path, chelsea_file: Path, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"},  # the bar is checked
        "GLIMPSE_MODELS_DIR": str(models_dir),
        "GLIMPSE_DEFAULT_MODEL": "efficientnet-lite0",
    }
    out = tmp_path / "sub"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "explain",
            str(chelsea_file),
            "--method",
            "kernel_shap",
            "--samples",
            "60",
            "--classes",
            "281,285",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = check_outputs(out, "kernel_shap", 2)
    assert [e.class_index for e in result.explanations] == [281, 285]
    assert "60/60" in proc.stderr


def test_default_out_is_glimpse_out_slash_image_stem(
    settings_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "tiny-cat.png"
    image.write_bytes(encode_png(skimage.data.chelsea()[::4, ::4].copy()))
    monkeypatch.chdir(tmp_path)
    assert (
        main(["explain", str(image), "--samples", "20", "--segmentation", "grid", "--quiet"]) == 0
    )
    assert (tmp_path / "glimpse-out" / "tiny-cat" / "result.json").is_file()


def test_explain_with_an_onnx_file_as_model(settings_env, tmp_path: Path) -> None:
    model = region_model(tmp_path / "region.onnx", 16, 16, slice(0, 8), slice(0, 8))
    image = tmp_path / "img.png"
    # 32x32 (the smallest side explained), squashed to the model's 16x16: 8-pixel cells of
    # the image are its 4x4 grid, and the region is the top-left 16x16 of the image.
    image.write_bytes(encode_png(np.full((32, 32, 3), 200, np.uint8)))
    out = tmp_path / "out"
    args = [
        "explain",
        str(image),
        "--model",
        str(model),
        "--preset",
        "imagenet-squash",
        "--segmentation",
        '{"algorithm": "grid", "cell_size": 8}',
        "--samples",
        "64",
        "--top-k",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["model"]["name"] == "region"
    assert [p["label"] for p in result["predictions"]] == ["0", "1"]
    assert result["segments"]["count"] == 16
    weights = np.array(result["explanations"][0]["weights"])
    assert set(np.argsort(-weights)[:4]) == {0, 1, 4, 5}  # the top-left 8x8 block
    labels = tmp_path / "labels.txt"
    labels.write_text("region\nconstant\n")
    assert main([*args, "--labels", str(labels)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["predictions"][0]["label"] == "region"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["explain", "{missing}"], "no such image file"),
        (["explain", "{text}"], "unsupported image"),
        (["explain", "{empty}"], "unsupported image"),
        (["explain", "{image}", "--model", "no-such-model"], "no model named 'no-such-model'"),
        (["explain", "{image}", "--model", "{tmp}/absent.onnx"], "no model file"),
        (["explain", "{image}", "--samples", "5"], "--samples"),
        (["explain", "{image}", "--samples", "100001"], "--samples"),
        (["explain", "{image}", "--samples", "many"], 'neither an integer nor "auto"'),
        (["explain", "{image}", "--samples", "auto", "--max-samples", "5"], "--max-samples"),
        (["explain", "{image}", "--samples", "auto", "--tolerance", "0"], "--tolerance"),
        (["explain", "{image}", "--classes", "3,1000"], "out of range"),
        (["explain", "{image}", "--classes", "a,b"], "--classes"),
        (["explain", "{image}", "--top-k", "50"], "--top-k"),
        (["explain", "{image}", "--segmentation", "watershed"], "--segmentation"),
        (["explain", "{image}", "--background", "purple"], "--background"),
        (
            ["explain", "{image}", "--segmentation", '{"algorithm": "grid", "cell_size": 1}'],
            "--segmentation",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    settings_env, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    image = tmp_path / "ok.png"
    image.write_bytes(encode_png(np.zeros((8, 8, 3), np.uint8)))
    names = {
        "missing": str(tmp_path / "nope.jpg"),
        "text": str(tmp_path / "notes.txt"),
        "empty": str(tmp_path / "empty.png"),
        "image": str(image),
        "tmp": str(tmp_path),
    }
    for key, value in names.items():
        argv = [a.replace("{" + key + "}", value) for a in argv]
    code = main([*argv, "--out", str(tmp_path / "o"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("glimpse: ") and needle in lines[0]
    assert not (tmp_path / "o").exists()


def test_top_k_and_classes_are_exclusive(settings_env, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["explain", "x.png", "--top-k", "2", "--classes", "1"])
    assert info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        # the image below the minimum side: the same check as the API's and the worker's
        (["explain", "{tiny}"], "{tiny}: the image is 8x31 pixels"),
        (["explain", "{tiny}", "--method", "gradcam"], "each side must be at least 32 pixels"),
        (
            ["explain", "{image}", "--method", "occlusion", "--window", "8", "--stride", "4"],
            "--window/--stride: occlusion with window 8 and stride 4 on this 40x36 image needs "
            "73 evaluations",
        ),
        (
            ["explain", "{image}", "--method", "occlusion", "--window", "40"],
            "--window/--stride: one window of 40 pixels covers the whole 40x36 image",
        ),
        (
            ["explain", "{image}", "--segmentation", '{"algorithm": "grid", "cell_size": 64}'],
            "--segmentation: a grid of 64-pixel cells is one cell",
        ),
        (["explain", "{image}", "--classes", "1000"], "--top-k/--classes: [1000] out of range"),
    ],
)
def test_what_the_api_refuses_at_submit_the_cli_refuses_before_loading_the_model(
    settings_env,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    needle: str,
) -> None:
    import worker.runtime.loader

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(worker.runtime.loader, "build_runtime", no_model)
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encode_png(np.zeros((31, 8, 3), np.uint8)))
    image = tmp_path / "ok.png"
    image.write_bytes(encode_png(np.zeros((36, 40, 3), np.uint8)))
    names = {"tiny": str(tiny), "image": str(image)}
    for key, value in names.items():
        argv = [a.replace("{" + key + "}", value) for a in argv]
        needle = needle.replace("{" + key + "}", value)
    code = main([*argv, "--samples", "20", "--out", str(tmp_path / "o"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("glimpse: invalid parameters: ") and needle in lines[0], lines[0]
    assert not (tmp_path / "o").exists()


def test_visualisation_flags_draw_the_overlays_and_the_figure(
    settings_env, chelsea_file: Path, tmp_path: Path
) -> None:
    plain, drawn = tmp_path / "plain", tmp_path / "drawn"
    argv = ["explain", str(chelsea_file), "--samples", "60", "--quiet", "--top-k", "2"]
    assert main([*argv, "--out", str(plain)]) == 0
    flags = ["--polarity", "positive", "--color-map", "viridis", "--overlay", "grayscale"]
    flags += ["--clip", "10,99", "--draw", "outlines", "--legend", "--max-side", "200"]
    assert main([*argv, *flags, "--out", str(drawn)]) == 0
    result = check_outputs(drawn, "lime", 2)  # attribution.npy as ever: float32, full size
    for e in result.explanations:
        with Image.open(drawn / f"overlay-{e.class_index}.png") as img:
            assert img.size == (200, 133)
        with Image.open(plain / f"overlay-{e.class_index}.png") as img:
            assert img.size == (451, 300)
    with Image.open(drawn / "figure.png") as img:
        assert max(img.size) <= 200
    # the same drawing as the API's overlay.png with the same options
    visual = Visual("positive", 99, 10, "viridis", "grayscale", "outlines", True, 200)
    segments = decode_segments_png((drawn / "segments.png").read_bytes())
    image = decode_image(chelsea_file.read_bytes(), max_pixels=10**8).pixels
    again = artifacts.overlay_png(image, result, segments, None, index=1, visual=visual)
    assert (drawn / f"overlay-{result.explanations[1].class_index}.png").read_bytes() == again


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--clip", "70,60"], "--clip: LOWER must be below"),
        (["--clip", "99.95,"], "--clip: '99.95,' is not LOWER,UPPER"),
        (["--clip", "200"], "--clip: UPPER must be within 0..100"),
        (["--draw", "outlines", "--clip", "50"], "--clip: LOWER must be below UPPER (50)"),
        (["--max-side", "4"], "--max-side: must be at least 16"),
    ],
)
def test_bad_visualisation_flags_are_one_line_before_the_model_loads(
    settings_env, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags, needle
) -> None:
    image = tmp_path / "ok.png"
    image.write_bytes(encode_png(np.zeros((36, 40, 3), np.uint8)))
    code = main(["explain", str(image), *flags, "--out", str(tmp_path / "o"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "o").exists()
