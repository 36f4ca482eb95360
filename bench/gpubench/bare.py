"""The model alone: evaluations per second per precision, batch size and execution mode.

Inputs are LIME's own batches of the photo, composed on the device beforehand, in the
model's dtype and channels_last; outputs stay on the device. Each configuration warms up
(two calls: CUDA graphs capture, cuDNN picks its kernels, torch.compile compiles), then runs
`rounds` timed rounds of as many calls as fill `round_s`, rotating among three input sets;
the device is synchronised around each round. The figure is the median round.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.gpubench.models import lime_batches
from bench.gpubench.report import Budget
from glimpse.cards import ModelCard
from glimpse.errors import ModelError
from worker.runtime.torch import PRECISIONS, TorchModel

INPUT_SETS = 3


@dataclass(frozen=True)
class Sweep:
    """What to measure: precisions x modes x batch sizes, and how long each round runs."""

    precisions: tuple[str, ...]
    modes: tuple[str, ...]
    batches: tuple[int, ...]
    round_s: float
    rounds: int


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def error_text(exc: BaseException) -> str:
    """One line: the exception and where it came from."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{place}"


def time_model(
    model: TorchModel, inputs: list[torch.Tensor], round_s: float, rounds: int
) -> dict[str, float]:
    """Evaluations per second of `model.forward_device` over `inputs` (equal batches)."""
    device = inputs[0].device
    n = len(inputs[0])
    started = time.perf_counter()
    for x in inputs[:2]:
        model.forward_device(x)
    sync(device)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    model.forward_device(inputs[0])
    sync(device)
    once = time.perf_counter() - started
    calls = max(3, min(500, math.ceil(round_s / max(once, 1e-6))))
    rates = []
    for _ in range(rounds):
        sync(device)
        started = time.perf_counter()
        for i in range(calls):
            model.forward_device(inputs[i % len(inputs)])
        sync(device)
        rates.append(calls * n / (time.perf_counter() - started))
    return {
        "evals_per_s": round(statistics.median(rates), 1),
        "evals_per_s_min": round(min(rates), 1),
        "evals_per_s_max": round(max(rates), 1),
        "calls_per_round": calls,
        "warmup_s": round(warmup_s, 3),
    }


def device_inputs(
    card: ModelCard, image: np.ndarray, device: torch.device, batches: tuple[int, ...]
) -> list[torch.Tensor]:
    """Three fp32 sets of the largest batch; smaller batches are their leading rows."""
    return lime_batches(card, image, INPUT_SETS, max(batches), device)


def cast(master: list[torch.Tensor], precision: str) -> list[torch.Tensor]:
    return [
        m.to(PRECISIONS[precision]).contiguous(memory_format=torch.channels_last) for m in master
    ]


def sweep(
    path: Path,
    card: ModelCard,
    image: np.ndarray,
    device: torch.device,
    plan: Sweep,
    budget: Budget,
) -> dict[str, Any]:
    """Every configuration of `plan` that fits before the bare section's deadline."""
    master = device_inputs(card, image, device, plan.batches)
    runs: list[dict[str, Any]] = []
    skipped: list[str] = []
    for precision in plan.precisions:
        inputs = cast(master, precision)
        for mode in plan.modes:
            if budget.past("bare"):
                skipped.append(f"{precision}/{mode}: past the section's deadline")
                continue
            try:
                model = TorchModel(
                    path,
                    card,
                    device=str(device),
                    precision=precision,
                    channels_last=True,
                    mode=mode,
                )
            except ModelError as exc:
                runs.append({"precision": precision, "mode": mode, "error": str(exc)})
                continue
            for batch in plan.batches:
                if budget.past("bare"):
                    skipped.append(f"{precision}/{mode}/{batch}: past the section's deadline")
                    continue
                row: dict[str, Any] = {"precision": precision, "mode": mode, "batch": batch}
                try:
                    row |= time_model(model, [x[:batch] for x in inputs], plan.round_s, plan.rounds)
                except (RuntimeError, ModelError) as exc:  # out of memory, a failed capture
                    row["error"] = error_text(exc)
                runs.append(row)
            del model
            free(device)
        del inputs
        free(device)
    del master
    free(device)
    return {"runs": runs, "best": best(runs), "modes": mode_gains(runs), "skipped": skipped}


def best(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per precision: the fastest configuration measured (mode, batch, evaluations/s)."""
    out: dict[str, dict[str, Any]] = {}
    for row in runs:
        if "evals_per_s" not in row:
            continue
        held = out.get(row["precision"])
        if held is None or row["evals_per_s"] > held["evals_per_s"]:
            out[row["precision"]] = {
                k: row[k]
                for k in ("mode", "batch", "evals_per_s", "evals_per_s_min", "evals_per_s_max")
            }
    return out


def best_batch(runs: list[dict[str, Any]], precision: str, mode: str) -> int | None:
    rows = [
        r
        for r in runs
        if r.get("precision") == precision and r.get("mode") == mode and "evals_per_s" in r
    ]
    return max(rows, key=lambda r: r["evals_per_s"])["batch"] if rows else None


def rate(runs: list[dict[str, Any]], precision: str, mode: str, batch: int) -> float | None:
    for r in runs:
        if (r.get("precision"), r.get("mode"), r.get("batch")) == (precision, mode, batch):
            return r.get("evals_per_s")
    return None


def mode_gains(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per precision and batch: each mode's rate over eager's (> 1: the mode pays there)."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r.get("mode") == "eager" or "evals_per_s" not in r:
            continue
        eager = rate(runs, r["precision"], "eager", r["batch"])
        if eager:
            gains = out.setdefault(r["precision"], {}).setdefault(r["mode"], {})
            gains[str(r["batch"])] = round(r["evals_per_s"] / eager, 3)
    return out


def probe(
    path: Path,
    card: ModelCard,
    image: np.ndarray,
    device: torch.device,
    precision: str,
    batch: int,
    modes: tuple[str, ...],
    round_s: float,
    rounds: int,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """One precision and batch in each of `modes` (torch.compile's: bench/gpubench/compiled.py
    runs this in a child process); `emit(row)` as each is measured. warmup_s holds the
    compile time."""
    inputs = cast(device_inputs(card, image, device, (batch,)), precision)
    for mode in modes:
        row: dict[str, Any] = {"precision": precision, "mode": mode, "batch": batch}
        try:
            model = TorchModel(
                path, card, device=str(device), precision=precision, channels_last=True, mode=mode
            )
            row |= time_model(model, inputs, round_s, rounds)
            del model
        except Exception as exc:  # a compiler failure of any kind is a figure, not a crash
            row["error"] = error_text(exc)
        emit(row)
        free(device)


def cudnn_benchmark(
    path: Path,
    card: ModelCard,
    image: np.ndarray,
    device: torch.device,
    config: dict[str, Any],
    round_s: float,
    rounds: int,
) -> dict[str, Any]:
    """The best configuration again with cuDNN's autotuner on (torch.backends.cudnn.benchmark:
    it times each convolution's algorithms at the first call of each shape). The service
    does not set it; this says whether it should."""
    inputs = cast(device_inputs(card, image, device, (config["batch"],)), config["precision"])
    torch.backends.cudnn.benchmark = True
    try:
        model = TorchModel(
            path,
            card,
            device=str(device),
            precision=config["precision"],
            channels_last=True,
            mode=config["mode"],
        )
        figures = time_model(model, inputs, round_s, rounds)
    finally:
        torch.backends.cudnn.benchmark = False
    return {
        **config,
        "benchmark_on": figures,
        "gain": round(figures["evals_per_s"] / config["evals_per_s"], 3),
    }
