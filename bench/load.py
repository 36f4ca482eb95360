"""Load: N submissions from C concurrent clients against W workers, through `glimpse up`.

    python bench/load.py                      # 500 submissions, 25 clients, 2 workers
    python bench/load.py --submissions 100 --clients 10

Checks, and prints as JSON: every accepted job finishes exactly once (the workers' own
`glimpse_jobs_total{outcome="finished"}` equals the number accepted, and each job id ends
`finished`), every refusal is a 503 with Retry-After, none is lost; submit latency
percentiles while the workers are busy. Everything stays on loopback, bounded in count and
time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import Service, prepare_models  # noqa: E402
from glimpse.images import encode_png  # noqa: E402

#: A small but real job: the shared EfficientNet, 16 grid cells, 20 evaluations.
PARAMS = {"num_samples": 20, "segmentation": {"algorithm": "grid", "cell_size": 64}}


def finished_count(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    match = re.search(r'^glimpse_jobs_total\{outcome="finished"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=500)
    parser.add_argument("--clients", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deadline-s", type=float, default=900)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # distinct images: no two submissions are answered by the cache
    images = [
        encode_png(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
        for _ in range(args.submissions)
    ]
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        name = prepare_models(models, "efficientnet")
        # All clients come from one address here: the per-address rate limit is off.
        with (
            Service(
                models, name, 64, workers=args.workers, GLIMPSE_RATE_LIMIT_PER_MINUTE="0"
            ) as service,
            httpx.Client(
                base_url=service.base,
                timeout=30,
                limits=httpx.Limits(max_connections=args.clients),
            ) as http,
        ):
            base = service.base

            def submit(i: int) -> tuple[int, float, str | None, str | None]:
                # Clients keep their connections open, as real ones do (a connection per
                # request would measure the client's TCP and TLS-context setup).
                started = time.perf_counter()
                r = http.post(
                    "/v1/explanations",
                    files={"image": (f"{i}.png", images[i], "image/png")},
                    data={"params": json.dumps(PARAMS)},
                    timeout=30,
                )
                elapsed = time.perf_counter() - started
                job_id = r.json().get("id") if r.status_code in (200, 202) else None
                return r.status_code, elapsed, job_id, r.headers.get("retry-after")

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                answers = list(pool.map(submit, range(args.submissions)))
            submit_wall = time.perf_counter() - started

            accepted = [a for a in answers if a[0] == 202]
            refused = [a for a in answers if a[0] == 503]
            other = [a for a in answers if a[0] not in (202, 503)]
            ids = [a[2] for a in accepted]
            statuses: dict[str, str] = {}
            deadline = time.monotonic() + args.deadline_s
            with httpx.Client(base_url=base, timeout=30) as client:
                pending = set(ids)
                while pending and time.monotonic() < deadline:
                    for job_id in list(pending):
                        status = client.get(f"/v1/explanations/{job_id}").json()["status"]
                        if status not in ("queued", "running"):
                            statuses[job_id] = status
                            pending.discard(job_id)
                    time.sleep(0.5)
            drained = time.perf_counter() - started
            finished_by_workers = finished_count(base)

    latencies = np.array([a[1] for a in answers])
    report = {
        "submissions": args.submissions,
        "clients": args.clients,
        "workers": args.workers,
        "accepted": len(accepted),
        "refused_503": len(refused),
        "refused_without_retry_after": sum(1 for a in refused if not a[3]),
        "other_statuses": sorted({a[0] for a in other}),
        "distinct_job_ids": len(set(ids)),
        "finished": sum(1 for s in statuses.values() if s == "finished"),
        "not_finished": dict(Counter(s for s in statuses.values() if s != "finished")),
        "lost": len(ids) - len(statuses),
        "worker_finished_count": finished_by_workers,
        "exactly_once": len(statuses) == len(ids) == finished_by_workers
        and all(s == "finished" for s in statuses.values()),
        "submit_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "submit_p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1),
        "submit_p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
        "submit_wall_s": round(submit_wall, 2),
        "drained_s": round(drained, 2),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    sys.exit(0 if report["exactly_once"] and not other and report["lost"] == 0 else 1)


if __name__ == "__main__":
    main()
