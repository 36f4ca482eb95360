"""Faults, end to end, each test with its own redis-server, API and worker processes:
a worker SIGKILLed in the middle of a job, Redis killed under load and started again from its
append-only file. Nothing accepted is lost, nothing runs to a result twice, and no dead run's
partial progress is ever shown."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import DEFAULT_MODEL, assert_problem, submit_multipart
from services import Api, RedisServer, WorkerProcess, wait_for_job, wait_until

from glimpse.settings import Settings
from glimpse.store import JobStore

# A job of a few seconds on two cores: time to see it run, and to kill what runs it.
SLOW = {
    "num_samples": 240,
    "segmentation": {"algorithm": "slic", "n_segments": 30},
    "seed": 7,
    "cache": False,
}
HEARTBEAT_S = 1  # dead after 3 s without one


class Service:
    """A Redis, one API, and workers started on demand, all torn down at the end."""

    def __init__(self, models_dir: Path, *, appendonly: bool = False, **env: str) -> None:
        self.redis = RedisServer(appendonly=appendonly)
        self.env = {
            "GLIMPSE_MODELS_DIR": str(models_dir),
            "GLIMPSE_DEFAULT_MODEL": DEFAULT_MODEL,
            "REDIS_URL": self.redis.url,
            "GLIMPSE_BATCH_SIZE": "16",
            "GLIMPSE_WORKER_HEARTBEAT_S": str(HEARTBEAT_S),
            **env,
        }
        self.api = Api(self.env)
        self.workers: list[WorkerProcess] = []
        settings = Settings(redis_url=self.redis.url)  # type: ignore[call-arg]
        self.store = JobStore(self.redis.client, settings)

    @property
    def client(self) -> httpx.Client:
        return self.api.client

    def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.redis.client)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        output = self.api.output()
        self.api.stop()
        self.redis.stop()
        assert "Traceback" not in output, output  # never a 500


@pytest.fixture
def service(service_models_dir: Path) -> Iterator[Service]:
    svc = Service(service_models_dir)
    yield svc
    svc.stop()


@pytest.fixture
def durable_service(service_models_dir: Path) -> Iterator[Service]:
    svc = Service(service_models_dir, appendonly=True)
    yield svc
    svc.stop()


def submit(client: httpx.Client, image: bytes, **params: object) -> str:
    r = submit_multipart(client, image, {**SLOW, **params})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_running(client: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    """The job once some of its evaluations are done."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/explanations/{job_id}").json()
        if job["status"] == "running" and job["progress"]["done"] > 0:
            return job
        assert job["status"] in {"queued", "running"}, job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def ready(client: httpx.Client) -> bool:
    return client.get("/readyz").status_code == 200


def test_a_killed_workers_job_is_taken_up_again_and_finishes_once(
    service: Service, chelsea_png: bytes
) -> None:
    first = service.start_worker()
    job_id = submit(service.client, chelsea_png)
    partial = wait_running(service.client, job_id)
    first.kill()

    # The dead worker stops counting as alive once it misses 3 heartbeats.
    wait_until(lambda: not ready(service.client), timeout=15, what="/readyz to fail")
    assert service.client.get(f"/v1/explanations/{job_id}").json()["status"] == "running"

    second = service.start_worker()
    job = wait_for_job(service.client, job_id, timeout=300)
    assert job["status"] == "finished", second.output()
    assert job["started_at"] > partial["started_at"]  # a second run, started after the kill
    assert ready(service.client)

    result = job["result"]
    assert result["stats"]["model_evaluations"] >= SLOW["num_samples"] > partial["progress"]["done"]
    record = service.redis.client.hgetall(service.store.job_key(job_id))
    assert record[b"restarts"] == b"1"
    assert service.store.stats()["jobs_finished"] == 1  # ran to a result once

    # The same request run without interruption gives the same numbers: nothing of the
    # killed run leaked into the result.
    again = wait_for_job(service.client, submit(service.client, chelsea_png), timeout=300)
    assert again["status"] == "finished"
    assert again["result"]["explanations"] == result["explanations"]


def test_a_job_whose_worker_dies_every_time_ends_failed(
    service_models_dir: Path, chelsea_png: bytes
) -> None:
    svc = Service(service_models_dir, GLIMPSE_JOB_RETRIES="0")
    try:
        first = svc.start_worker()
        job_id = submit(svc.client, chelsea_png)
        wait_running(svc.client, job_id)
        first.kill()
        svc.start_worker()
        job = wait_for_job(svc.client, job_id, timeout=120)
        assert job["status"] == "failed"
        assert job["error"]["title"] == "Worker died"
        assert "1 attempts" in job["error"]["detail"]
    finally:
        svc.stop()


def test_redis_killed_under_load_503s_then_everything_recovers_from_the_append_only_file(
    durable_service: Service, chelsea_png: bytes, small_png: bytes
) -> None:
    svc = durable_service
    worker = svc.start_worker()
    wait_until(lambda: ready(svc.client), timeout=30, what="/readyz")
    running = submit(svc.client, chelsea_png)
    queued = [submit(svc.client, chelsea_png, seed=s) for s in (1, 2, 3)]
    wait_running(svc.client, running)

    svc.redis.kill()
    r = submit_multipart(svc.client, small_png, {"num_samples": 50})
    body = assert_problem(r, 503)
    assert int(r.headers["Retry-After"]) > 0 and "Redis" in body["detail"]
    assert_problem(svc.client.get(f"/v1/explanations/{queued[0]}"), 503)
    assert svc.client.get("/readyz").status_code == 503
    assert svc.client.get("/healthz").status_code == 200
    time.sleep(2 * HEARTBEAT_S)  # the worker notices while Redis is away

    svc.redis.start()  # same port, same folder: the append-only file is replayed
    assert worker.proc.poll() is None  # the worker waited for Redis instead of exiting
    wait_until(lambda: ready(svc.client), timeout=30, what="/readyz after Redis came back")
    after = submit(svc.client, small_png, num_samples=50)
    for job_id in [running, *queued, after]:
        job = wait_for_job(svc.client, job_id, timeout=300)
        assert job["status"] == "finished", job
    assert worker.proc.poll() is None


def timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_stalled_redis_bounds_every_request_and_readiness_recovers(
    service: Service, small_png: bytes
) -> None:
    svc = service
    svc.start_worker()
    wait_until(lambda: ready(svc.client), timeout=30, what="/readyz")
    job_id = submit(svc.client, small_png, num_samples=50)
    wait_for_job(svc.client, job_id)
    os.kill(svc.redis.proc.pid, signal.SIGSTOP)  # alive, holding every connection, silent
    try:
        for call in (
            lambda: svc.client.get("/readyz"),
            lambda: submit_multipart(svc.client, small_png, {"num_samples": 50, "seed": 9}),
            lambda: svc.client.get(f"/v1/explanations/{job_id}"),
        ):
            r, seconds = timed(call)
            assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0, r.text
            assert seconds < 3, (r.request.url, seconds)
        r, seconds = timed(lambda: svc.client.get("/v1/models"))  # the cards are on disk
        assert r.status_code == 200 and r.json() and seconds < 3
        r, seconds = timed(lambda: svc.client.get("/healthz"))
        assert r.status_code == 200 and seconds < 1
    finally:
        os.kill(svc.redis.proc.pid, signal.SIGCONT)
    r, seconds = timed(lambda: svc.client.get("/readyz"))
    assert r.status_code == 200 and seconds < 2, r.text
    assert svc.client.get(f"/v1/explanations/{job_id}").json()["status"] == "finished"
