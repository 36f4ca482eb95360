"""Load: N submissions from C concurrent clients against W workers, through `glimpse up`.

    python bench/load.py                      # 500 submissions, 25 clients, 2 workers
    python bench/load.py --api-processes 2    # two uvicorn processes (WEB_CONCURRENCY)
    python bench/load.py --submissions 100 --clients 10

Checks, and prints as JSON: every accepted job finishes exactly once (the workers' own
`glimpse_jobs_total{outcome="finished"}` equals the number accepted, and each job id ends
`finished`), every refusal is a 503 with Retry-After, none is lost; submit latency
percentiles while the workers are busy, with the API's own view of them (its latency
histogram) and the CPU seconds the API and the load generator spent in the burst (all share
this machine's cores). Everything stays on loopback, bounded in count and
time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import Service, prepare_models, proc_stat  # noqa: E402
from glimpse.images import encode_png  # noqa: E402

#: A small but real job: the shared EfficientNet, 16 grid cells, 20 evaluations.
PARAMS = {"num_samples": 20, "segmentation": {"algorithm": "grid", "cell_size": 64}}


#: (status, seconds, job id, Retry-After) of one submission.
Answer = tuple[int, float, str | None, str | None]

BOUNDARY = "glimpse-load-boundary"
HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def multipart_body(png: bytes, i: int) -> bytes:
    """A submission as multipart/form-data: the `image` file part and the `params` part."""
    return b"".join(
        [
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{i}.png"\r\nContent-Type: image/png\r\n\r\n'.encode(),
            png,
            f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="params"\r\n\r\n'
            f"{json.dumps(PARAMS)}\r\n--{BOUNDARY}--\r\n".encode(),
        ]
    )


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes `pids` so far (Linux /proc)."""
    ticks = 0
    for pid in pids:
        fields = proc_stat(pid)
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def finished_count(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    match = re.search(r'^glimpse_jobs_total\{outcome="finished"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def server_latency_ms(base: str, quantiles: tuple[float, ...]) -> dict[str, float]:
    """The API's own latency of POST /v1/explanations, from its Prometheus histogram: for each
    quantile, the upper bound (ms) of the bucket that holds it. Beside the client's figures it
    tells the time inside the API from the time in sockets, run queues and the client."""
    text = httpx.get(base + "/metrics", timeout=10).text
    pattern = (
        r'^glimpse_http_request_duration_seconds_bucket\{le="([^"]+)",method="POST",'
        r'route="/v1/explanations"\} (\S+)$'
    )
    buckets = [(float(le), float(n)) for le, n in re.findall(pattern, text, re.M)]
    if not buckets:
        return {}
    total = buckets[-1][1]
    return {
        f"p{round(q * 100)}": next(le for le, n in buckets if n >= q * total) * 1000
        for q in quantiles
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=500)
    parser.add_argument("--clients", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deadline-s", type=float, default=900)
    parser.add_argument(
        "--api-processes", type=int, default=1, help="uvicorn processes (WEB_CONCURRENCY)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # distinct images: no two submissions are answered by the cache. The request bodies are
    # built before the clock starts: the figures are the service's, not the encoder's.
    bodies = [
        multipart_body(encode_png(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)), i)
        for i in range(args.submissions)
    ]
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        name = prepare_models(models, "efficientnet")
        # All clients come from one address here: the per-address rate limit is off.
        with Service(
            models,
            name,
            64,
            workers=args.workers,
            GLIMPSE_RATE_LIMIT_PER_MINUTE="0",
            WEB_CONCURRENCY=str(args.api_processes),
        ) as service:
            base = service.base
            api_pids = service.api_pids()
            clients = threading.local()
            ready = threading.Barrier(args.clients)

            def connect(_: int) -> None:
                # Clients keep their connections open, as real ones do: each opens one and
                # makes a first request (GET /healthz) before the clock starts. A connection
                # per request would measure TCP setup; so would 25 connections opened in the
                # same millisecond, which cost the first submissions up to 0.4 s.
                # http.client, not httpx: on 2 cores the load generator's CPU is the API's.
                clients.conn = http.client.HTTPConnection("127.0.0.1", service.port, 30)
                clients.conn.request("GET", "/healthz")
                clients.conn.getresponse().read()
                ready.wait(30)  # one connection per thread: no thread takes two

            def submit(i: int) -> Answer:
                started = time.perf_counter()
                clients.conn.request("POST", "/v1/explanations", bodies[i], HEADERS)
                r = clients.conn.getresponse()
                data = r.read()
                elapsed = time.perf_counter() - started
                job_id = json.loads(data).get("id") if r.status in (200, 202) else None
                return r.status, elapsed, job_id, r.getheader("retry-after")

            pool = ThreadPoolExecutor(args.clients)
            list(pool.map(connect, range(args.clients)))
            api_cpu = cpu_seconds(api_pids)
            client_cpu = time.process_time()
            started = time.perf_counter()
            with pool:
                answers = list(pool.map(submit, range(args.submissions)))
            submit_wall = time.perf_counter() - started
            client_cpu = time.process_time() - client_cpu
            api_cpu = cpu_seconds(api_pids) - api_cpu
            inside_api = server_latency_ms(base, (0.5, 0.95, 0.99))

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
        "api_processes": args.api_processes,
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
        "submit_accepted_p99_ms": round(
            float(np.percentile([a[1] for a in accepted], 99)) * 1000, 1
        ),
        "submit_refused_p99_ms": round(float(np.percentile([a[1] for a in refused], 99)) * 1000, 1)
        if refused
        else None,
        "api_latency_bucket_ms": inside_api,
        "submit_wall_s": round(submit_wall, 2),
        "submit_cpu_s": {"api": round(api_cpu, 2), "load_generator": round(client_cpu, 2)},
        "drained_s": round(drained, 2),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    sys.exit(0 if report["exactly_once"] and not other and report["lost"] == 0 else 1)


if __name__ == "__main__":
    main()
