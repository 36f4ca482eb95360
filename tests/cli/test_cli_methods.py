"""`glimpse explain --method partition_shap|gradcam|occlusion`: the same files plus figure.png
(and hierarchy.npy for partition_shap)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main

GRID = '{"algorithm": "grid", "cell_size": 100}'


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("partition_shap", ["--samples", "20", "--segmentation", GRID]),
        ("gradcam", []),
        ("occlusion", ["--window", "150", "--stride", "150", "--background", "inpaint_telea"]),
    ],
)
def test_each_method_writes_every_file(
    settings_env, chelsea_file: Path, tmp_path: Path, method: str, options: list[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        ["explain", str(chelsea_file), "--method", method, "--out", str(out), "--quiet", *options]
    )
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == method
    k = len(result["explanations"])
    maps = np.load(out / "attribution.npy")
    assert maps.shape == (k, 300, 451)
    assert (out / "segments.png").is_file()
    for e in result["explanations"]:
        assert (out / f"overlay-{e['class_index']}.png").is_file()
    with Image.open(out / "figure.png") as figure:
        assert figure.size[0] > 451 * (k + 1)
    assert (out / "hierarchy.npy").is_file() == (method == "partition_shap")
    if method == "occlusion":  # window = stride = 150 on 451×300: 4 × 2 windows
        assert result["stats"]["model_evaluations"] == 4 * 2 + 1


def test_layer_names_the_feature_map(
    settings_env, chelsea_file: Path, tmp_path: Path, capsys
) -> None:
    code = main(
        [
            "explain",
            str(chelsea_file),
            "--method",
            "gradcam",
            "--layer",
            "nope",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    assert code != 0
    assert "nope" in capsys.readouterr().err


def test_methods_compare_in_one_run_and_draw_the_comparison(
    settings_env, chelsea_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = ["explain", str(chelsea_file), "--methods", "gradcam, lime,kernel_shap"]
    code = main([*argv, "--samples", "30", "--segmentation", GRID, "--out", str(out), "--quiet"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "gradcam"
    compared = [m["method"] for m in result["comparison"]["methods"]]
    assert compared == ["gradcam", "lime", "kernel_shap"]
    count = result["segments"]["count"]
    assert all(
        len(m["explanations"][0]["importance"]) == count for m in result["comparison"]["methods"]
    )
    with Image.open(out / "figure-compare.png") as figure:
        compared_size = figure.size
    assert compared_size[0] > 3 * 200
    with Image.open(out / "figure.png") as figure:  # the first method's, as for one method
        assert figure.size != compared_size


def test_a_bad_methods_list_names_the_option(
    settings_env, chelsea_file: Path, tmp_path: Path, capsys
) -> None:
    code = main(["explain", str(chelsea_file), "--methods", "lime,lime", "--quiet"])
    assert code == 2
    assert "--methods: " in capsys.readouterr().err and not (tmp_path / "glimpse-out").exists()
