"""One batch of 8 photos against 8 single submissions waited on one after the other.

    python bench/batch.py                   # 8 photos, LIME, 200 evaluations, 1 worker, 2 rounds
    python bench/batch.py --workers 2 --samples 100 --repeat 3

Through `glimpse up` (bench/run.py's Service) with the shared EfficientNet-Lite0, on the 8
photos of bench/scale/oracle.py (skimage, scikit-learn and matplotlib samples). Each round
explains all of them twice with the same params: once as one batch (`GlimpseClient
.explain_many`: one POST /v1/batches, then polling the batch), once as 8 submissions, each
submitted and waited for before the next (`submit` + `wait`), the way a script that has no
batches explains a folder. `cache: false`, so the second pass computes everything again;
rounds alternate which pass goes first. Prints one JSON object and writes
bench/results/batch.json: the wall times, the workers' own seconds of the jobs (`engine_s`,
from each result's stats), what the service and client add around them (`overhead_s`, wall −
engine, with one worker only: on a shared machine the engine's share swings with the load,
this much less; with several the jobs of a batch overlap), and whether both passes computed
the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import Service, prepare_models  # noqa: E402
from bench.scale.oracle import PHOTOS, load_photo  # noqa: E402
from glimpse.client import GlimpseClient, Job  # noqa: E402
from glimpse.images import encode_png  # noqa: E402

OUT = REPO / "bench" / "results" / "batch.json"


def as_batch(client: GlimpseClient, images: list[bytes], params: dict) -> tuple[float, list[Job]]:
    started = time.perf_counter()
    explained = client.explain_many(images, overlays=False, timeout=1800, **params)
    return time.perf_counter() - started, [e.job for e in explained]


def one_by_one(client: GlimpseClient, images: list[bytes], params: dict) -> tuple[float, list[Job]]:
    started = time.perf_counter()
    jobs = [client.wait(client.submit(image, **params), timeout=600) for image in images]
    return time.perf_counter() - started, jobs


def engine_seconds(jobs: list[Job]) -> float:
    return sum(job.result.stats.seconds for job in jobs if job.result is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="lime")
    parser.add_argument("--samples", type=int, default=200, help="model evaluations per photo")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="rounds (the order alternates)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    params = {"method": args.method, "num_samples": args.samples, "seed": 0, "cache": False}
    photos = list(PHOTOS)
    images = [encode_png(load_photo(name)) for name in photos]  # before any clock starts
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        name = prepare_models(models, "efficientnet")
        with (
            Service(
                models, name, 64, workers=args.workers, GLIMPSE_RATE_LIMIT_PER_MINUTE="0"
            ) as service,
            GlimpseClient(service.base, timeout=60) as client,
        ):
            # warm: the worker's session built, the API's first submission made
            client.explain(images[0], overlays=False, **{**params, "num_samples": 20})
            for r in range(args.repeat):
                passes = [("batch", as_batch), ("singles", one_by_one)]
                if r % 2:
                    passes.reverse()
                found = {label: run(client, images, params) for label, run in passes}
                (batch_s, batch_jobs), (single_s, single_jobs) = found["batch"], found["singles"]
                same = all(
                    a.result is not None
                    and b.result is not None
                    and [e.weights for e in a.result.explanations]
                    == [e.weights for e in b.result.explanations]
                    for a, b in zip(batch_jobs, single_jobs, strict=True)
                )
                found_round = {
                    "first": passes[0][0],
                    "batch_s": round(batch_s, 3),
                    "singles_s": round(single_s, 3),
                    "batch_engine_s": round(engine_seconds(batch_jobs), 3),
                    "singles_engine_s": round(engine_seconds(single_jobs), 3),
                    "same_weights": same,
                }
                if args.workers == 1:  # with more, a batch's jobs overlap: wall < engine
                    found_round["batch_overhead_s"] = round(batch_s - engine_seconds(batch_jobs), 3)
                    found_round["singles_overhead_s"] = round(
                        single_s - engine_seconds(single_jobs), 3
                    )
                rounds.append(found_round)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 3)

    batch_s, singles_s = median("batch_s"), median("singles_s")
    overheads = {}
    if args.workers == 1:
        batch_overhead, singles_overhead = median("batch_overhead_s"), median("singles_overhead_s")
        overheads = {
            "batch_overhead_s": batch_overhead,
            "singles_overhead_s": singles_overhead,
            "overhead_saved_per_photo_s": round(
                (singles_overhead - batch_overhead) / len(images), 3
            ),
        }
    report = {
        "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": f"{name} (shared, onnxruntime CPU, batch 64)",
        "photos": photos,
        "params": params,
        "workers": args.workers,
        "client": "GlimpseClient: explain_many(overlays=False) vs submit + wait per photo",
        "rounds": rounds,
        "batch_s": batch_s,
        "singles_s": singles_s,
        "speedup": round(singles_s / batch_s, 3),
        **overheads,
        "same_weights": all(r["same_weights"] for r in rounds),
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
