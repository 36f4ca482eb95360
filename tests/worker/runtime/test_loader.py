"""worker/runtime/loader.py: where a worker's runtime really runs, asked of the runtime itself."""

from __future__ import annotations

from glimpse.settings import Settings
from worker.runtime.loader import RuntimeReport, probe_runtime


def test_a_cpu_worker_reports_the_cpu_provider() -> None:
    assert probe_runtime(Settings()) == RuntimeReport(
        runtime="onnxruntime", providers=["CPUExecutionProvider"], device="cpu"
    )


def test_a_gpu_worker_without_a_gpu_says_so_and_runs_on_the_cpu() -> None:
    asked = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    report = probe_runtime(Settings(providers=asked))
    assert report.providers == ["CPUExecutionProvider"] and report.device == "cpu"
    assert report.note == (
        "no usable GPU here for TensorrtExecutionProvider, CUDAExecutionProvider: "
        "running on the CPU"
    )
