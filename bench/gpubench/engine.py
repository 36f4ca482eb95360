"""LIME and Kernel SHAP end to end on the photo, and what reduced precision does to them.

Engine runs go through bench/run.py's `engine_seconds` (1000 samples, top 1, quality off)
with the model wrapped so that the time inside it is known: evaluation is every call into
the runtime (the fused composition on the device, the forward pass, the outputs' trip back);
segmentation is the engine's own figure; fit is the rest (sampling, the regression, its
standard errors). `overhead_ratio` is bench/run.py's: engine seconds over the bare model's
seconds for the same evaluations, at the same precision, mode and batch (the bare rate from
the sweep; on a GPU it does not drift as the 2-core CPU's did).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.gpubench.bare import error_text, free, rate
from bench.gpubench.report import Budget
from bench.run import engine_seconds, overhead_ratio
from glimpse.cards import ModelCard
from glimpse.params import parse_params
from worker.engine.explain import explain
from worker.runtime.torch import TorchModel

METHODS = ("lime", "kernel_shap")


class Timed:
    """A fused model whose calls are timed (each returns host arrays, so each is complete
    when it returns): `seconds` accumulates the time spent inside it."""

    def __init__(self, model: TorchModel) -> None:
        self.model = model
        self.card = model.card
        self.fused = model.fused
        self.seconds = 0.0

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._timed(self.model, batch)  # type: ignore[no-any-return]

    def bind(
        self, image: np.ndarray, background: np.ndarray, segments: np.ndarray
    ) -> Callable[[np.ndarray], np.ndarray]:
        evaluate = self._timed(self.model.bind, image, background, segments)
        return lambda z: self._timed(evaluate, z)  # type: ignore[no-any-return]


def engine_run(
    model: TorchModel, image: np.ndarray, method: str, samples: int, batch: int
) -> dict[str, Any]:
    timed = Timed(model)
    run = engine_seconds(timed, image, method, samples, batch)
    return {
        "seconds": run["seconds"],
        "segmentation_s": run["segmentation_seconds"],
        "evaluation_s": timed.seconds,
        "fit_s": run["seconds"] - run["segmentation_seconds"] - timed.seconds,
        "model_evaluations": run["model_evaluations"],
        "segments": run["segments"],
    }


def engine_section(
    path: Path,
    card: ModelCard,
    image: np.ndarray,
    device: torch.device,
    configs: list[tuple[str, str, int]],
    bare_runs: list[dict[str, Any]],
    samples: int,
    repeats: int,
    budget: Budget,
) -> dict[str, Any]:
    """LIME and Kernel SHAP at each (precision, mode, batch) of `configs`: one warm run each
    (CUDA graphs capture the batch shapes the budget makes), then the median of `repeats`."""
    rows: list[dict[str, Any]] = []
    skipped = []
    for precision, mode, batch in configs:
        if budget.past("engine"):
            skipped.append(f"{precision}/{mode}/{batch}: past the section's deadline")
            continue
        try:
            model = TorchModel(
                path, card, device=str(device), precision=precision, channels_last=True, mode=mode
            )
            bare = rate(bare_runs, precision, mode, batch)
            for method in METHODS:
                engine_run(model, image, method, samples, batch)  # warm
                runs = [engine_run(model, image, method, samples, batch) for _ in range(repeats)]
                ratios = [
                    overhead_ratio(r["seconds"], r["model_evaluations"], bare) for r in runs if bare
                ]
                row = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
                rows.append(
                    {
                        "precision": precision,
                        "mode": mode,
                        "batch": batch,
                        "method": method,
                        **{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()},
                        "seconds_runs": [round(r["seconds"], 4) for r in runs],
                        "bare_evals_per_s": bare,
                        "overhead_ratio": round(statistics.median(ratios), 4) if ratios else None,
                    }
                )
            del model
        except Exception as exc:  # one configuration's failure is a figure, not the end
            rows.append(
                {"precision": precision, "mode": mode, "batch": batch, "error": error_text(exc)}
            )
        free(device)
    return {
        "samples": samples,
        "image": "skimage.data.chelsea() 451x300, quickshift superpixels, black background",
        "perturbation": "fused: z crosses per batch, composed on the model's device",
        "repeats": repeats,
        "runs": rows,
        "chosen": chosen(rows),
        "skipped": skipped,
    }


def chosen(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The configuration with the fastest LIME, with both methods' figures there: what the
    REST run serves with."""
    lime = [r for r in rows if r.get("method") == "lime" and "seconds" in r]
    if not lime:
        return {}
    fastest = min(lime, key=lambda r: r["seconds"])
    key = (fastest["precision"], fastest["mode"], fastest["batch"])
    out: dict[str, Any] = {
        "config": "/".join(str(k) for k in key),
        "precision": key[0],
        "mode": key[1],
        "batch": key[2],
    }
    for r in rows:
        if (r.get("precision"), r.get("mode"), r.get("batch")) == key and "seconds" in r:
            out[r["method"]] = r
    return out


def agreement_section(
    path: Path,
    card: ModelCard,
    image: np.ndarray,
    device: torch.device,
    precisions: tuple[str, ...],
    samples: int,
    batch: int,
) -> dict[str, Any]:
    """Spearman of each reduced precision's superpixel weights with fp32's, per method, on
    the same coalitions (same seed, so the same design) and the same class (fp32's top 1)."""
    weights: dict[str, dict[str, np.ndarray]] = {}
    top1: dict[str, int] = {}
    target: int | None = None
    for precision in ("fp32", *precisions):
        model = TorchModel(path, card, device=str(device), precision=precision, mode="eager")
        for method in METHODS:
            raw: dict[str, Any] = {"method": method, "num_samples": samples, "quality": False}
            if target is not None:
                raw["targets"] = {"classes": [target]}
            result = explain(image, model, parse_params(raw), batch_size=batch)
            if target is None:
                target = int(result.targets[0])
            weights.setdefault(precision, {})[method] = result.weights[0]
            top1[precision] = int(result.predictions[0][0])
        del model
        free(device)
    spearman = {
        p: {m: float(spearmanr(weights[p][m], weights["fp32"][m])[0]) for m in METHODS}
        for p in precisions
    }
    return {
        "model": "efficientnet-lite0 (ImageNet weights)",
        "samples": samples,
        "batch": batch,
        "class": target,
        "top1": top1,
        "segments": int(len(weights["fp32"]["lime"])),
        "spearman": spearman,
    }
