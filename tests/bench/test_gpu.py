"""bench/gpu.py before device time is spent on it: its wheels list covers what the service
imports and the device lacks (computed from the imports), the runtime options it measures
behave on the CPU, and its dry run (`--device cpu`: a tiny model, every section) writes a
JSON with every section, in numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EFFICIENTNET

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.gpubench import models, wheels  # noqa: E402
from glimpse.errors import ModelError  # noqa: E402
from glimpse.modelfiles import resnet50_card  # noqa: E402
from glimpse.settings import Settings, get_settings  # noqa: E402
from worker.runtime.torch import TorchModel  # noqa: E402

SECTIONS = ("preflight", "bare", "engine", "agreement", "rest", "compile")


def test_requirements_list_what_the_service_imports_and_the_device_lacks() -> None:
    needed = wheels.missing_on_device()
    listed = wheels.read_requirements()
    assert "fastapi" in needed and "torch" not in needed  # the computation sees both sides
    assert sorted(set(needed) - set(listed)) == []
    extra = set(listed) - set(needed) - set(wheels.SHADOWED) - set(wheels.BINARIES)
    assert sorted(extra) == [], "listed but neither needed, shadowed on purpose nor a binary"
    assert all(version for version in listed.values()), "every wheel pinned (name==version)"
    script = (REPO / "bench" / "gpu_wheels.sh").read_text()
    assert "--no-deps" in script and "bench/gpu-requirements.txt" in script


def test_runtime_options_the_run_measures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tiny.onnx"
    models.write_tiny(path)
    card = resnet50_card()
    for precision, mode in (("tf32", "eager"), ("fp16", "eager"), ("fp32", "cuda_graphs")):
        with pytest.raises(ModelError, match="needs a CUDA device"):
            TorchModel(path, card, device="cpu", precision=precision, mode=mode)
    with pytest.raises(ModelError, match="choose one of"):
        TorchModel(path, card, device="cpu", mode="fast")

    monkeypatch.setenv("GLIMPSE_TORCH_MODE", "compile")
    monkeypatch.setenv("GLIMPSE_RUNTIME", "torch")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert "compile" in settings.runtime_providers
        model = TorchModel(path, card, device="cpu")  # mode from the settings
    finally:
        get_settings.cache_clear()
    assert model.mode == "compile" and "compile" in model.providers
    eager = TorchModel(path, card, device="cpu", mode="eager")
    batch = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    expected = eager(batch)
    got = model(batch)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert Settings(precision="tf32").precision == "tf32"


def numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return []


def positive(*values: Any) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in values)


@pytest.mark.slow
def test_dry_run_writes_every_section(tmp_path: Path) -> None:
    assert EFFICIENTNET.is_file(), f"the shared model {EFFICIENTNET} is missing"
    argv = [sys.executable, "bench/gpu.py", "--device", "cpu", "--results-dir", str(tmp_path)]
    done = subprocess.run(
        [*argv, "--efficientnet", str(EFFICIENTNET)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-cpu.json").read_text())
    for name in SECTIONS:
        section = report[name]
        assert "error" not in section, (name, section["error"])
        values = numbers(section)
        assert values and all(math.isfinite(v) for v in values), name
    assert report["preflight"]["import_failures"] == {}
    assert report["wall_s"] <= report["profile"]["budget_s"] + 30

    bare = report["bare"]
    assert {(r["precision"], r["batch"]) for r in bare["runs"] if r["mode"] == "eager"} == {
        (p, b) for p in ("fp32", "bf16") for b in (4, 8)
    }
    assert all(positive(r["evals_per_s"]) for r in bare["runs"]), bare["runs"]
    assert set(bare["best"]) == {"fp32", "bf16"}
    assert [r["mode"] for r in report["compile"]["runs"]] == ["compile"]
    assert positive(report["compile"]["runs"][0]["evals_per_s"])

    engine = report["engine"]
    assert {(r["precision"], r["method"]) for r in engine["runs"]} == {
        (p, m) for p in ("fp32", "bf16") for m in ("lime", "kernel_shap")
    }
    for run in engine["runs"]:
        assert run["model_evaluations"] == engine["samples"]
        parts = (run["segmentation_s"], run["evaluation_s"], run["fit_s"])
        assert positive(run["seconds"], run["overhead_ratio"], *parts), run
        assert math.isclose(sum(parts), run["seconds"], rel_tol=1e-3, abs_tol=1e-3)
    assert {"lime", "kernel_shap"} <= set(engine["chosen"])

    spearman = report["agreement"]["spearman"]["bf16"]
    assert all(-1 <= spearman[m] <= 1 for m in ("lime", "kernel_shap"))

    rest = report["rest"]
    sequential = rest["workers_1"]["clients_1"]
    assert sequential["requests"] == 3
    assert positive(sequential["p50_s"], sequential["explanations_per_s"])
    assert sequential["p95_s"] >= sequential["p50_s"]
    for workers in ("workers_1", "workers_2"):
        assert positive(rest[workers]["clients_8"]["explanations_per_s"])

    rows = {row["name"]: row for row in report["targets"]}
    assert len(rows) == 7
    assert rows["resnet50_tf32_evals_per_s"]["measured"] is None  # no TF32 on the CPU
    for name, row in rows.items():
        if name == "spearman_reduced_vs_fp32":
            assert -1 <= row["measured"] <= 1 and isinstance(row["met"], bool), row
        elif name != "resnet50_tf32_evals_per_s":
            assert positive(row["measured"]) and isinstance(row["met"], bool), row
