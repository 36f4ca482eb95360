"""Chaos under load: the faults of tests/app/test_chaos.py while C clients submit, through
`glimpse up` (W workers, one API, its own append-only Redis).

    python bench/chaos.py                          # every fault, 25 clients, 2 workers
    python bench/chaos.py --faults worker_kill redis_stop_5 --clients 10
    python bench/chaos.py --out bench/results/chaos.json

Each fault is a phase: a job of a few seconds (the victim) runs, the clients submit small
jobs from pre-connected connections (bench/load.py's bodies and headers, each image its own,
a pause of --think-s between two of a client's submissions), the fault strikes, and the load
goes on until the service has recovered and --after-s more. Then every job is waited for and
counted against the store: jobs accepted (202), finished, refused (503/429, each with
Retry-After or not), lost (accepted, not finished), duplicated (the workers' own
`glimpse_jobs_total{outcome="finished"}` grew by more than the jobs that finished), and jobs
that ran though their submission was refused (or got no answer); submit latency p50/p99 during
the fault; the time to recover (/readyz 200 again; the killed worker's job queued again).
Everything stays on loopback, bounded in count and time; prints the JSON, exits 1 on a job
lost, duplicated or run though refused, any status but 202/503/429, or a submission
answered after more than 3 s during a fault.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import itertools
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.load import HEADERS, finished_count, multipart_body  # noqa: E402
from bench.run import Service, prepare_models, proc_stat  # noqa: E402
from glimpse.images import encode_png  # noqa: E402

FAULTS = (
    "worker_kill",  # SIGKILL the worker running the victim, half way through it
    "worker_kill_at_write",  # ... once all its evaluations are done (writing its result)
    "redis_kill",  # SIGKILL Redis; glimpse up starts it again from its append-only file
    "redis_stop_5",  # SIGSTOP Redis for 5 s, then SIGCONT
    "api_kill",  # SIGKILL the API; glimpse up starts it again
    "redis_stop_20",  # (after the API's restart: its Redis timeouts are tried again)
)
#: The victim: a few seconds of work, progress every 16 evaluations.
VICTIM = {
    "num_samples": 240,
    "segmentation": {"algorithm": "slic", "n_segments": 30},
    "batch_size": 16,
    "cache": False,
}
TERMINAL = ("finished", "failed", "canceled")
#: Every submission is answered within this, whatever the fault (GLIMPSE_REDIS_TIMEOUT_S 1.5).
BOUND_MS = 3000


@dataclass(frozen=True)
class Answer:
    """One submission: its status (None: no answer, `error` says why), its latency."""

    index: int
    started: float
    seconds: float
    status: int | None
    job_id: str | None = None
    retry_after: str | None = None
    error: str | None = None


def bodies(count: int, start: int) -> tuple[list[bytes], list[str]]:
    """`count` submissions of distinct 128x128 images (a smooth picture, its first row
    carrying the index: small PNGs, no two alike) and the images' sha256."""
    yy, xx = np.mgrid[0:128, 0:128]
    base = np.stack([yy * 2, xx * 2, (yy + xx)], axis=-1).astype(np.uint8)
    out, shas = [], []
    for i in range(start, start + count):
        pixels = base.copy()
        pixels[0, :8, 0] = np.frombuffer(i.to_bytes(8, "big"), np.uint8)
        png = encode_png(pixels)
        out.append(multipart_body(png, i))
        shas.append(hashlib.sha256(png).hexdigest())
    return out, shas


def children(pid: int, needle: str) -> list[int]:
    """Child processes of `pid` whose command line holds `needle` (Linux /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):
            if int(proc_stat(entry.name)[1]) == pid and needle.encode() in (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            ):
                found.append(int(entry.name))
    return found


class Load:
    """C clients, each on a connection opened before the clock starts (as bench/load.py's
    are), submitting `bodies` in turn until stopped; a connection the API dropped is opened
    again for the next submission."""

    def __init__(self, port: int, clients: int, payloads: list[bytes], think_s: float) -> None:
        self.port, self.payloads, self.think_s = port, payloads, think_s
        self.answers: list[Answer] = []
        self._next = itertools.count()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._ready = threading.Barrier(clients + 1)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        return conn

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = self._connect()
        self._ready.wait(30)
        while not self._stop.is_set():
            i = next(self._next)
            if i >= len(self.payloads):
                return
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/v1/explanations", self.payloads[i], HEADERS)
                r = conn.getresponse()
                data = r.read()
                seconds = time.perf_counter() - started
                job_id = json.loads(data).get("id") if r.status == 202 else None
                answer = Answer(i, started, seconds, r.status, job_id, r.getheader("retry-after"))
            except (OSError, http.client.HTTPException) as exc:
                seconds = time.perf_counter() - started
                answer = Answer(i, started, seconds, None, error=type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
            self.answers.append(answer)
            self._stop.wait(self.think_s)
        if conn is not None:
            conn.close()


class Stack:
    """What a phase needs of the running `glimpse up`: its API, processes and Redis."""

    def __init__(
        self, service: Service, log: Path, redis_url: str, workers: int, heartbeat_s: int
    ) -> None:
        from redis import Redis

        self.service, self.log = service, log
        self.n_workers, self.heartbeat_s = workers, heartbeat_s
        self.base = service.base
        self.redis = Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)

    def ready(self) -> bool:
        try:
            return httpx.get(self.base + "/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def workers(self) -> list[tuple[int, str | None]]:
        """(pid, job it runs) of the live worker processes that beat in the last 3
        heartbeats, found by the queue's set of workers as /readyz finds them. The pid comes
        from the worker's log line, not its RQ hash: a hash that expires in a Redis stall is
        written again by the next heartbeat without its pid."""
        from rq import Queue, Worker

        live = set(children(self.service.proc.pid, "worker.worker"))
        log = self.log.read_text(errors="replace")
        pids = {
            name: int(pid)
            for name, pid in re.findall(r"Worker (\w+): started with PID (\d+)", log)
            if int(pid) in live
        }
        now = datetime.now(UTC)
        found = []
        for w in Worker.all(queue=Queue("glimpse", connection=self.redis)):
            beat = w.last_heartbeat
            age = (now - beat.replace(tzinfo=UTC)).total_seconds() if beat else math.inf
            if age <= 3 * self.heartbeat_s and w.name in pids:
                found.append((pids[w.name], w.get_current_job_id()))
        return found

    def job(self, job_id: str) -> dict[str, str]:
        names = ("status", "done", "total", "restarts")
        raw = self.redis.hmget(f"glimpse:job:{job_id}", *names)
        return {n: v.decode() if v is not None else "" for n, v in zip(names, raw, strict=True)}

    def jobs_of_images(self, shas: set[str]) -> dict[str, tuple[str, str]]:
        """Every job in the store whose image is one of `shas`: id -> (sha, status)."""
        keys = [
            k
            for k in self.redis.scan_iter(match="glimpse:job:*", count=1000)
            if len(k.rsplit(b":", 1)[1]) == 32  # not :segments, :attribution
        ]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "id", "image_key", "status")
        found = {}
        for job_id, image_key, status in pipe.execute():
            sha = image_key.decode().rsplit(":", 1)[1] if image_key else ""
            if sha in shas:
                found[job_id.decode()] = (sha, status.decode())
        return found

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds until `check` holds (polled every 20 ms)."""
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.02)
        return time.monotonic() - started

    def first_times(
        self, checks: dict[str, Callable[[], bool]], timeout: float
    ) -> dict[str, float]:
        """Seconds until each check first held, all polled together every 20 ms."""
        started = time.perf_counter()
        times: dict[str, float] = {}
        while len(times) < len(checks):
            for name, check in checks.items():
                if name not in times and check():
                    times[name] = time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                missing = sorted(set(checks) - set(times))
                raise RuntimeError(f"{missing}: not within {timeout:.0f} s")
            time.sleep(0.02)
        return times

    def all_workers_beating(self) -> bool:
        return len({pid for pid, _ in self.workers()}) == self.n_workers

    def settle(self) -> None:
        """/readyz 200, every worker beating, nothing queued."""

        def ok() -> bool:
            queued = self.redis.llen("rq:queue:glimpse")
            return self.ready() and self.all_workers_beating() and not queued

        self.wait(ok, 120, "the service to settle")


def percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def run_phase(stack: Stack, fault: str, args: argparse.Namespace, victim_png: bytes, offset: int):
    """One fault under load; its figures."""
    stack.settle()
    finished_before = finished_count(stack.base)
    per_phase = args.clients * int((args.max_phase_s / max(args.think_s, 0.01)) + 2)
    payloads, shas = bodies(per_phase, offset)
    seed = offset  # the victim of each phase is a job of its own (no cache)
    params = {**VICTIM, "seed": seed}
    with httpx.Client(base_url=stack.base, timeout=30) as client:
        r = client.post(
            "/v1/explanations",
            files={"image": ("victim.png", victim_png, "image/png")},
            data={"params": json.dumps(params)},
        )
    assert r.status_code == 202, r.text
    victim = r.json()["id"]
    stack.wait(lambda: stack.job(victim)["status"] == "running", 60, "the victim to start")
    stack.wait(lambda: any(j == victim for _, j in stack.workers()), 30, "the victim's worker")
    (victim_pid,) = [pid for pid, j in stack.workers() if j == victim]
    assert victim_pid > 0, victim_pid
    figures: dict[str, object] = {"fault": fault}
    phase_started = time.perf_counter()
    with Load(stack.service.port, args.clients, payloads, args.think_s) as load:
        time.sleep(args.before_s)
        fault_at, recovered_at = strike(stack, fault, victim, victim_pid, figures)
        time.sleep(args.after_s)
    phase_s = time.perf_counter() - phase_started

    # Drain: every job of the phase (accepted or not) ends.
    answers = load.answers
    accepted = {a.job_id: a for a in answers if a.status == 202 and a.job_id}
    accepted_shas = {shas[a.index] for a in accepted.values()}
    all_shas = {shas[a.index] for a in answers}
    drain_started = time.monotonic()
    while True:
        jobs = stack.jobs_of_images(all_shas)
        pending = [j for j, (_, s) in jobs.items() if s not in TERMINAL]
        victim_status = stack.job(victim)["status"]
        if not pending and victim_status in TERMINAL and set(accepted) <= set(jobs):
            break
        if time.monotonic() - drain_started > args.drain_timeout_s:
            break
        time.sleep(0.5)
    drained_s = time.monotonic() - drain_started
    finished_delta = finished_count(stack.base) - finished_before

    by_sha = {shas[a.index]: a for a in answers}
    ran_refused = [j for j, (sha, _) in jobs.items() if sha not in accepted_shas]
    ran_though = Counter(
        "refused" if by_sha[jobs[j][0]].status is not None else "unanswered" for j in ran_refused
    )
    finished_jobs = sum(1 for _, s in jobs.values() if s == "finished")
    victim_finished = stack.job(victim)["status"] == "finished"
    lost = [j for j in accepted if jobs.get(j, ("", "missing"))[1] != "finished"]
    during = [a.seconds for a in answers if fault_at <= a.started <= recovered_at and a.status]
    answered = [a.seconds for a in answers if a.status is not None]
    statuses = Counter(a.status for a in answers if a.status is not None)
    refused = [a for a in answers if a.status in (503, 429)]
    figures.update(
        submissions=len(answers),
        accepted=len(accepted) + 1,  # the victim too
        finished=sum(1 for j in accepted if jobs.get(j, ("", ""))[1] == "finished")
        + victim_finished,
        refused_503=statuses.get(503, 0),
        refused_429=statuses.get(429, 0),
        refused_without_retry_after=sum(1 for a in refused if not a.retry_after),
        other_statuses=sorted(s for s in statuses if s not in (202, 503, 429)),
        connection_errors=dict(Counter(a.error for a in answers if a.error)),
        lost=len(lost) + (not victim_finished),
        duplicated=int(finished_delta - finished_jobs - victim_finished),
        ran_though_refused=ran_though.get("refused", 0),
        ran_though_unanswered=ran_though.get("unanswered", 0),
        worker_finished_count=finished_delta,
        victim_restarts=int(stack.job(victim)["restarts"] or 0),
        submit_during_fault_p50_ms=percentile_ms(during, 50),
        submit_during_fault_p99_ms=percentile_ms(during, 99),
        submit_during_fault_max_ms=percentile_ms(during, 100),
        submit_p50_ms=percentile_ms(answered, 50),
        submit_p99_ms=percentile_ms(answered, 99),
        phase_s=round(phase_s, 1),
        drained_s=round(drained_s, 1),
    )
    if len(answers) >= len(payloads):
        figures["note"] = "the phase used every prepared body: raise --max-phase-s"
    return figures, len(payloads)


def strike(
    stack: Stack, fault: str, victim: str, victim_pid: int, figures: dict[str, object]
) -> tuple[float, float]:
    """Inject the fault; wait for recovery. (fault start, recovery) on the perf_counter clock."""
    up = stack.service.proc.pid
    if fault in ("worker_kill", "worker_kill_at_write"):

        def point() -> bool:
            f = stack.job(victim)
            done, total = int(f["done"] or 0), int(f["total"] or 1)
            if fault == "worker_kill":
                return done >= total / 2
            return done == total or f["status"] != "running"

        stack.wait(point, 60, "the victim's kill point")
        at = stack.job(victim)
        os.kill(victim_pid, signal.SIGKILL)
        fault_at = time.perf_counter()
        figures["killed_at"] = f"{at['done']}/{at['total']} ({at['status']})"
        # Each recovery timed on its own, in one polling loop: /readyz 200 again, the job
        # queued again (or, killed after its result landed, finished by the dead run), a
        # replacement worker beating, the job ended.
        times = stack.first_times(
            {
                "ready": stack.ready,
                "requeued": lambda: (
                    stack.job(victim)["restarts"] == "1" or stack.job(victim)["status"] in TERMINAL
                ),
                "workers": stack.all_workers_beating,
                "ended": lambda: stack.job(victim)["status"] in TERMINAL,
            },
            120,
        )
        figures["ready_after_s"] = round(times["ready"], 2)
        recovered_at = fault_at + times["requeued"]
        if stack.job(victim)["restarts"] == "1":
            figures["victim_requeued_after_s"] = round(times["requeued"], 2)
        figures["victim_finished_after_s"] = round(times["ended"], 2)
        figures["workers_back_after_s"] = round(times["workers"], 2)
        return fault_at, recovered_at
    stack.wait(lambda: int(stack.job(victim)["done"] or 0) > 0, 60, "the victim's progress")
    if fault == "redis_kill":
        (pid,) = children(up, "redis-server")
        os.kill(pid, signal.SIGKILL)
        fault_at = time.perf_counter()
    elif fault.startswith("redis_stop_"):
        (pid,) = children(up, "redis-server")
        os.kill(pid, signal.SIGSTOP)
        fault_at = time.perf_counter()
        try:
            time.sleep(int(fault.rsplit("_", 1)[1]))
        finally:
            os.kill(pid, signal.SIGCONT)
    elif fault == "api_kill":
        (pid,) = children(up, "uvicorn")
        os.kill(pid, signal.SIGKILL)
        fault_at = time.perf_counter()
    else:
        raise ValueError(f"unknown fault {fault!r}")
    ended = time.perf_counter()
    time.sleep(0.2)  # glimpse up notices a dead child every 0.1 s
    figures["ready_after_s"] = round(stack.wait(stack.ready, 120, "/readyz") + 0.2, 2)
    figures["fault_s"] = round(ended - fault_at, 2)
    recovered_at = time.perf_counter()
    stack.wait(lambda: stack.job(victim)["status"] in TERMINAL, 120, "the victim")
    figures["victim_finished_after_s"] = round(time.perf_counter() - ended, 2)
    return fault_at, recovered_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--clients", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--think-s", type=float, default=0.25, help="between a client's posts")
    parser.add_argument("--before-s", type=float, default=2.0, help="load before the fault")
    parser.add_argument("--after-s", type=float, default=4.0, help="load after recovery")
    parser.add_argument(
        "--max-phase-s", type=float, default=60.0, help="bodies prepared for this long a phase"
    )
    parser.add_argument("--max-queue", type=int, default=40, help="GLIMPSE_MAX_QUEUE_LENGTH")
    parser.add_argument("--heartbeat-s", type=int, default=2, help="GLIMPSE_WORKER_HEARTBEAT_S")
    parser.add_argument("--drain-timeout-s", type=float, default=180.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from skimage import data

    victim_png = encode_png(data.chelsea())
    started = time.perf_counter()
    phases = []
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        name = prepare_models(models, "efficientnet")
        log = Path(scratch) / "up.log"
        # All clients come from one address here: the per-address rate limit is off.
        with Service(
            models,
            name,
            64,
            workers=args.workers,
            log=log,
            GLIMPSE_RATE_LIMIT_PER_MINUTE="0",
            GLIMPSE_MAX_QUEUE_LENGTH=str(args.max_queue),
            GLIMPSE_WORKER_HEARTBEAT_S=str(args.heartbeat_s),
        ) as service:
            match = re.search(r"redis at (\S+)", log.read_text())
            assert match, log.read_text()
            stack = Stack(service, log, match.group(1), args.workers, args.heartbeat_s)
            offset = 0
            for fault in args.faults:
                figures, used = run_phase(stack, fault, args, victim_png, offset)
                offset += used
                print(json.dumps(figures), file=sys.stderr, flush=True)
                phases.append(figures)
        output = log.read_text(errors="replace")
    report = {
        "clients": args.clients,
        "workers": args.workers,
        "think_s": args.think_s,
        "max_queue_length": args.max_queue,
        "worker_heartbeat_s": args.heartbeat_s,
        "faults": phases,
        "supervisor_restarts": re.findall(
            r"glimpse: (.+?) \(pid \d+\) exited with (-?\d+)", output
        ),
        # The API's log line of a 500 (app/errors.py): never expected.
        "api_unhandled_errors": output.count("unhandled error on"),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    bad = any(
        p["lost"]
        or p["duplicated"]
        or p["ran_though_refused"]
        or p["other_statuses"]
        or (p["submit_during_fault_max_ms"] or 0) > BOUND_MS
        for p in phases
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
