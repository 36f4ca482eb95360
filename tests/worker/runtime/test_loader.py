"""worker/runtime/loader.py: where a worker's runtime really runs, asked of the runtime itself."""

from __future__ import annotations

import importlib.util

import pytest

from glimpse.settings import Settings
from worker.runtime.loader import RuntimeReport, probe_runtime


def test_a_cpu_worker_reports_the_cpu_provider() -> None:
    # gradients: PyTorch is installed with the test extras, so integrated_gradients and xrai
    # can run here (an ONNX Runtime model hands its file to the torch runtime for them)
    assert probe_runtime(Settings()) == RuntimeReport(
        runtime="onnxruntime", providers=["CPUExecutionProvider"], device="cpu", gradients=True
    )


def test_a_worker_without_pytorch_reports_no_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker installed without the torch extra tells /v1/models and the submit check."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else find_spec(name, *a),
    )
    assert probe_runtime(Settings()).gradients is False


def test_a_gpu_worker_without_a_gpu_says_so_and_runs_on_the_cpu() -> None:
    asked = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    report = probe_runtime(Settings(providers=asked))
    assert report.providers == ["CPUExecutionProvider"] and report.device == "cpu"
    assert report.note == (
        "no usable GPU here for TensorrtExecutionProvider, CUDAExecutionProvider: "
        "running on the CPU"
    )
