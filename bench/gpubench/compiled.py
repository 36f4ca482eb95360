"""torch.compile, measured where it cannot hang the run: in a child process per precision,
killed at the compile section's deadline (a compile cannot be interrupted; inductor's
workers go with the child's process group). The child times `compile` and, on CUDA,
`compile_cuda_graphs` at the precision's best batch; `warmup_s` holds the compile time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from bench.gpubench.bare import Sweep, probe
from bench.gpubench.report import Budget
from bench.run import test_image
from glimpse.modelfiles import resnet50_card

#: Seconds a compile child needs at least to be worth starting.
NEEDS_S = {"cuda": 60.0, "cpu": 20.0}


def compile_section(
    entry: Path,
    path: Path,
    device: torch.device,
    precisions: tuple[str, ...],
    plan: Sweep,
    bare_report: dict[str, Any],
    budget: Budget,
) -> dict[str, Any]:
    """torch.compile at each of `precisions`' best batch, a child process each (`entry
    --probe JOB`), killed at the section's deadline."""
    runs: list[dict[str, Any]] = []
    skipped = []
    for precision in precisions:
        best = bare_report.get("best", {}).get(precision)
        left = budget.left("compile")
        if best is None or left < NEEDS_S[device.type]:
            skipped.append(f"{precision}: {'not measured bare' if best is None else 'no time'}")
            continue
        job = {
            "path": str(path),
            "device": str(device),
            "precision": precision,
            "batch": best["batch"],
            "round_s": plan.round_s,
            "rounds": plan.rounds,
        }
        child = subprocess.Popen(
            [sys.executable, str(entry), "--probe", json.dumps(job)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = child.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # inductor's compile workers too
            out, _ = child.communicate()
            killed = {**job, "mode": "compile", "error": f"killed at its deadline, {left:.0f} s"}
            out += "\n" + json.dumps(killed)
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if child.returncode and not rows:
            rows = [{**job, "error": f"the child exited with {child.returncode}"}]
        runs += rows
    return {"runs": runs, "skipped": skipped}


def verdict(bare_report: dict[str, Any]) -> dict[str, Any]:
    """Per precision: the mode of the fastest run, and each mode's gain over eager."""
    return {
        p: {
            "fastest_mode": best["mode"],
            "batch": best["batch"],
            "gain_over_eager": bare_report["modes"].get(p, {}),
        }
        for p, best in bare_report.get("best", {}).items()
    }


def run_probe(job: dict[str, Any]) -> None:
    """The compile child: prints each run as one JSON line as soon as it is measured."""
    device = torch.device(job["device"])
    probe(
        Path(job["path"]),
        resnet50_card(),
        test_image(),
        device,
        job["precision"],
        job["batch"],
        ("compile", "compile_cuda_graphs") if device.type == "cuda" else ("compile",),
        job["round_s"],
        job["rounds"],
        lambda row: print(json.dumps(row), flush=True),
    )
