"""The throughput benchmark: prints one JSON object (see README, "Figures").

    python bench/run.py                       # EfficientNet-Lite0 (../shared/models), 1000 samples
    python bench/run.py --model resnet50         # ResNet50 architecture, seeded untrained weights
    python bench/run.py --skip-rest --skip-peers --samples 200     # a quick look

Everything runs on this machine: the engine in this process, the peers (lime_image, shap's
Partition explainer) on the same ONNX session, and the REST figures through a real
`glimpse up` (its own Redis, one worker) on a free loopback port.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "models"
sys.path.insert(0, str(REPO))

from glimpse.cards import PRESETS, ModelCard, ModelRegistry  # noqa: E402
from glimpse.images import encode_png  # noqa: E402
from glimpse.params import parse_params  # noqa: E402
from glimpse.settings import Settings  # noqa: E402


def efficientnet_card() -> ModelCard:
    """The card of the shared EfficientNet-Lite0 (../shared/models)."""
    return ModelCard(
        input_name="data",
        output_name="logits",
        num_classes=1000,
        **PRESETS["imagenet-squash"],  # type: ignore[arg-type]
    )


def prepare_models(root: Path, which: str) -> str:
    """Registers the benchmarked model in a scratch models folder; returns its name."""
    registry = ModelRegistry(root)
    if which == "efficientnet":
        name = "efficientnet-lite0"
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "model.onnx").symlink_to(SHARED / "efficientnet-lite0.onnx")
        shutil.copyfile(SHARED / "imagenet1k_labels.txt", folder / "labels.txt")
        registry.write(name, efficientnet_card())
        return name
    from glimpse.modelfiles import resnet50_card, write_resnet50_untrained

    name = "resnet50-untrained"
    folder = root / name
    folder.mkdir(parents=True)
    write_resnet50_untrained(folder / "model.onnx", seed=0)
    (folder / "labels.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
    registry.write(name, resnet50_card(description="UNTRAINED ResNet50 architecture: cost only"))
    return name


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss
    across exec, so a child started from a big parent would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_image() -> np.ndarray:
    from skimage import data

    return data.chelsea()


def bare_model_rate(model, image: np.ndarray, batch_size: int, samples: int) -> float:
    """Evaluations per second of the model alone, timed on the very batches LIME evaluates
    (quickshift superpixels, black background), composed beforehand and not timed."""
    from glimpse.params import Quickshift
    from worker.engine.input_grid import InputGrid
    from worker.engine.lime import Lime
    from worker.engine.perturb import Composer
    from worker.engine.segment import segment

    segments = segment(image, Quickshift())
    grid = InputGrid(model.card, image.shape[:2])
    compose = Composer(grid.image(image), grid.image(np.zeros(image.shape)), grid.labels(segments))
    z = Lime().sample(int(segments.max()) + 1, samples, np.random.default_rng(0)).z
    model(compose(z[:batch_size]))  # warm-up
    seconds = 0.0
    for start in range(0, samples, batch_size):
        batch = compose(z[start : start + batch_size])
        started = time.perf_counter()
        model(batch)
        seconds += time.perf_counter() - started
    return samples / seconds


def engine_seconds(model, image: np.ndarray, method: str, samples: int, batch_size: int) -> dict:
    from worker.engine.explain import explain

    # quality (deletion/insertion AUC) off: the same evaluations the peers and the bare
    # model are timed for
    params = parse_params({"method": method, "num_samples": samples, "quality": False})
    started = time.perf_counter()
    result = explain(image, model, params, batch_size=batch_size)
    return {
        "seconds": time.perf_counter() - started,
        "segmentation_seconds": result.segmentation_seconds,
        "evaluation_seconds": result.evaluation_seconds,
        "model_evaluations": result.model_evaluations,
        "segments": result.n_segments,
    }


def classifier_fn(model):
    """A peers' classifier: batches of (n, H, W, 3) images in 0..255 -> probabilities."""
    from worker.engine.explain import to_output_space
    from worker.engine.input_grid import InputGrid

    def predict(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        grid = InputGrid(model.card, images.shape[1:3])
        batch = np.stack([grid.image(im) for im in images]).astype(np.float32)
        return to_output_space(model(batch), model.card, "probability")

    return predict


def peer_lime_seconds(model, image: np.ndarray, samples: int, batch_size: int) -> float | None:
    try:
        from lime import lime_image
    except ImportError:
        return None
    explainer = lime_image.LimeImageExplainer(random_state=0)
    started = time.perf_counter()
    explainer.explain_instance(
        image,
        classifier_fn(model),
        top_labels=1,
        hide_color=0,
        num_samples=samples,
        batch_size=batch_size,
    )
    return time.perf_counter() - started


def peer_shap_partition_seconds(
    model, image: np.ndarray, samples: int, batch_size: int
) -> float | None:
    try:
        import shap
    except ImportError:
        return None
    predict = classifier_fn(model)
    masker = shap.maskers.Image(np.zeros(image.shape, np.float64), image.shape)
    explainer = shap.Explainer(lambda x: predict(x), masker, algorithm="partition")
    started = time.perf_counter()
    explainer(
        image[None].astype(np.float64),
        max_evals=samples,
        batch_size=batch_size,
        outputs=shap.Explanation.argsort.flip[:1],
        silent=True,
    )
    return time.perf_counter() - started


# --- through the real service -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and
    parentheses): [0] is the state, [1] the parent pid, [11] and [12] user and system ticks."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class Service:
    """`glimpse up` on a free port with a scratch models folder; stopped on exit."""

    def __init__(
        self,
        models_dir: Path,
        model: str,
        batch_size: int,
        workers: int = 1,
        log: Path | None = None,
        **settings: str,
    ) -> None:
        """`settings`: more GLIMPSE_* environment for the service; `log`: a file for its
        output (else discarded)."""
        self.port = free_port()
        env = {
            **os.environ,
            "GLIMPSE_MODELS_DIR": str(models_dir),
            "GLIMPSE_DEFAULT_MODEL": model,
            "GLIMPSE_BATCH_SIZE": str(batch_size),
            **settings,
        }
        env.pop("REDIS_URL", None)
        env.pop("GLIMPSE_REDIS_URL", None)
        output = log.open("ab") if log is not None else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--port", str(self.port)]
            + ["--workers", str(workers)],
            env=env,
            stdout=output or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
            start_new_session=True,
        )
        if output is not None:
            output.close()  # the child has its own descriptor
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Service:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("glimpse up exited before it was ready")
            time.sleep(0.3)
        raise RuntimeError("glimpse up was not ready within 120 s")

    def api_pids(self) -> list[int]:
        """The API's processes: the `uvicorn` that `glimpse up` started and its children
        (one per API process under `WEB_CONCURRENCY`). Linux /proc."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                ppid = int(proc_stat(stat.parent.name)[1])
                children.setdefault(ppid, []).append(int(stat.parent.name))

        def descendants(pid: int) -> list[int]:
            return [pid] + [d for c in children.get(pid, []) for d in descendants(c)]

        for pid in descendants(self.proc.pid):
            with contextlib.suppress(OSError):
                if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return descendants(pid)
        raise RuntimeError("glimpse up has no uvicorn process")

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def explain_over_rest(
    base: str,
    png: bytes,
    samples: int,
    seed: int,
    poll_s: float = 0.1,
    timeout_s: float | None = None,
) -> tuple[float, float]:
    """Submit → poll every `poll_s` until finished: (client-side latency, the job's own engine
    seconds). A job not finished within `timeout_s` (None: no limit) raises."""
    import httpx

    params = {
        "method": "lime",
        "num_samples": samples,
        "seed": seed,
        "cache": False,
        "quality": False,
    }
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=60) as client:
        job = client.post(
            "/v1/explanations",
            files={"image": ("image.png", png, "image/png")},
            data={"params": json.dumps(params)},
        ).json()
        while job["status"] in ("queued", "running"):
            if timeout_s is not None and time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"job still {job['status']} after {timeout_s} s")
            time.sleep(poll_s)  # 0.1: a brisk client; 20 ms polls cost the 2-core host real CPU
            job = client.get(f"/v1/explanations/{job['id']}").json()
    if job["status"] != "finished":
        raise RuntimeError(f"job ended {job['status']}: {job.get('error')}")
    return time.perf_counter() - started, float(job["result"]["stats"]["seconds"])


def client_figures(
    base: str,
    png: bytes,
    samples: int,
    clients: int,
    n: int,
    poll_s: float = 0.1,
    timeout_s: float | None = None,
) -> dict[str, float]:
    """`n` LIME requests (seeds 0..n-1) from `clients` concurrent clients: latency
    percentiles, explanations per second over the whole burst, what the service adds."""

    def one(seed: int) -> tuple[float, float]:
        return explain_over_rest(base, png, samples, seed, poll_s, timeout_s)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    latencies = [latency for latency, _ in runs]
    figures = {
        "requests": n,
        "p50_s": round(float(np.percentile(latencies, 50)), 3),
        "p95_s": round(float(np.percentile(latencies, 95)), 3),
        "explanations_per_s": round(n / wall, 4),
        # what the service adds to the job's own engine time (upload, queue, poll)
        "service_overhead_p50_s": round(
            float(np.median([latency - engine for latency, engine in runs])), 3
        ),
    }
    if clients == 1:
        figures["worker_engine_p50_s"] = round(float(np.median([e for _, e in runs])), 3)
    return figures


def rest_figures(
    models_dir: Path, model: str, image: np.ndarray, samples: int, batch_size: int, requests: int
) -> dict:
    png = encode_png(image)
    figures: dict[str, dict[str, float]] = {}
    with Service(models_dir, model, batch_size) as service:
        explain_over_rest(service.base, png, samples, seed=10_000)  # warm the worker's session
        for clients in (1, 8):
            n = requests if clients == 1 else max(requests, clients)
            figures[f"clients_{clients}"] = client_figures(service.base, png, samples, clients, n)
    return figures


def overhead_ratio(engine_seconds: float, model_evaluations: int, evals_per_s: float) -> float:
    """The engine's time over the bare model's for the same evaluations (README, Figures)."""
    return engine_seconds * evals_per_s / model_evaluations


def memory_curve(which: str, budgets: list[int], batch_size: int) -> dict[str, float]:
    """Peak RSS of a fresh process explaining with each budget."""
    curve = {}
    for budget in budgets:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--model",
                which,
                "--samples",
                str(budget),
                "--batch-size",
                str(batch_size),
                "--memory-probe",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        curve[str(budget)] = json.loads(out)["peak_rss_mb"]
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["efficientnet", "resnet50"], default="efficientnet")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rest-requests", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="engine runs; the median counts")
    parser.add_argument("--memory-budgets", default="1000,5000,20000")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-rest", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    from worker.runtime.loader import load_model

    settings = Settings()
    image = test_image()
    with tempfile.TemporaryDirectory() as scratch:
        models_dir = Path(scratch) / "models"
        name = prepare_models(models_dir, args.model)
        loaded = load_model(ModelRegistry(models_dir).get(name), settings)
        model = loaded.runtime
        if args.memory_probe:
            engine_seconds(model, image, "kernel_shap", args.samples, args.batch_size)
            print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
            return

        # Warm, as a worker is: sessions (the fused one too) built, caches filled.
        engine_seconds(model, image, "lime", 20, args.batch_size)
        runs = []
        for _ in range(args.repeat):  # interleaved, median of each: this machine is noisy
            runs.append(
                (
                    bare_model_rate(model, image, args.batch_size, args.samples),
                    engine_seconds(model, image, "lime", args.samples, args.batch_size),
                    engine_seconds(model, image, "kernel_shap", args.samples, args.batch_size),
                )
            )
        rate = float(np.median([r[0] for r in runs]))
        lime = sorted((r[1] for r in runs), key=lambda r: r["seconds"])[len(runs) // 2]
        shap_ = sorted((r[2] for r in runs), key=lambda r: r["seconds"])[len(runs) // 2]
        bare = lime["model_evaluations"] / rate
        lime_ratios = [
            overhead_ratio(r[1]["seconds"], r[1]["model_evaluations"], r[0]) for r in runs
        ]
        shap_ratios = [
            overhead_ratio(r[2]["seconds"], r[2]["model_evaluations"], r[0]) for r in runs
        ]
        report: dict[str, object] = {
            "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "runtime": loaded.runtime.description,
            "model": name,
            "image": "skimage.data.chelsea() 451x300",
            "samples": args.samples,
            "batch_size": args.batch_size,
            "repeats": args.repeat,
            "raw_evals_per_s": round(rate, 2),
            "lime_s": round(lime["seconds"], 3),
            "kernel_shap_s": round(shap_["seconds"], 3),
            "bare_model_s": round(bare, 3),
            # Each repeat's engine time against the bare model timed next to it, the median
            # of those: a paired ratio, robust to the machine speeding up or slowing down
            # between repeats (the bare rate alone varied 97-122 evaluations/s across runs).
            "overhead_ratio": round(float(np.median(lime_ratios)), 4),
            "overhead_ratio_runs": [round(r, 4) for r in lime_ratios],
            "kernel_shap_overhead_ratio": round(float(np.median(shap_ratios)), 4),
            "segmentation_s": round(lime["segmentation_seconds"], 3),
            "segments": lime["segments"],
        }
        report["engine_peak_rss_mb"] = round(peak_rss_mb(), 1)
        if not args.skip_peers:
            lime_peer = peer_lime_seconds(model, image, args.samples, args.batch_size)
            shap_peer = peer_shap_partition_seconds(model, image, args.samples, args.batch_size)
            report["peers"] = {
                "lime_image_s": None if lime_peer is None else round(lime_peer, 3),
                "shap_partition_s": None if shap_peer is None else round(shap_peer, 3),
            }
        report["peak_rss_mb"] = round(peak_rss_mb(), 1)  # with the peers' stacks loaded
        if not args.skip_rest:
            report["rest"] = rest_figures(
                models_dir, name, image, args.samples, args.batch_size, args.rest_requests
            )
        if not args.skip_memory:
            budgets = [int(b) for b in args.memory_budgets.split(",")]
            report["worker_peak_rss_mb_by_samples"] = memory_curve(
                args.model, budgets, args.batch_size
            )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
