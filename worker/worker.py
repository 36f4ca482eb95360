"""The Glimpse worker: an RQ SimpleWorker (no fork per job) whose ONNX sessions stay warm.

Run it with `python -m worker.worker` (settings from the environment, `REDIS_URL` required).
SIGINT/SIGTERM stop it: a running job stops at its next batch and ends `failed` with
"Worker stopped"; a second signal is RQ's cold shutdown.

Surviving faults:
- A worker proves it is alive every `worker_heartbeat_s`, also while a job runs (a thread
  beats for it, since a SimpleWorker's loop is busy running the job). One that is killed
  stops beating; after 3 missed heartbeats its job is *abandoned*, and the next worker's
  maintenance pass queues it again (RQ's retry, `job_retries` times) after
  `worker.jobs.on_failure` has reset its progress.
- When Redis goes away the worker waits for it and registers again, keeping its warm models;
  a job that lost Redis mid-run is abandoned and taken up again the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker.base import WorkerStatus

from glimpse.errors import GlimpseError
from glimpse.settings import Settings, get_settings
from glimpse.store import JobStore
from worker import jobs
from worker.runtime.loader import RuntimeReport, probe_runtime

log = logging.getLogger("glimpse.worker")


class Heartbeat:
    """While a job runs, refresh the worker's and the execution's TTLs from a thread."""

    def __init__(self, worker: GlimpseWorker, job: Job, execution: Execution) -> None:
        self.worker, self.job, self.execution = worker, job, execution
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.worker.heartbeat_s):
            try:
                self.worker.maintain_heartbeats(self.job, self.execution)
            except RedisError as exc:  # the job notices too; keep trying until it ends
                log.warning("heartbeat of job %s failed: %s", self.job.id, exc)


class WorkerQueue(Queue):
    """RQ's queue with a registry-maintenance lock of `lock_s` instead of RQ's 899 s: a
    worker that dies or loses Redis in the middle of a maintenance pass would otherwise stop
    every worker from finding abandoned jobs for 15 minutes."""

    lock_s = 10

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=self.lock_s))


class GlimpseWorker(SimpleWorker):
    """Runs jobs in this process, so `worker.jobs.warm_models()` keeps sessions across jobs."""

    def __init__(self, *args: Any, heartbeat_s: int = 10, dead_after_s: int = 30, **kwargs: Any):
        self.heartbeat_s, self.dead_after_s = heartbeat_s, dead_after_s
        # Idle, the worker beats each time its blocking dequeue times out (worker_ttl - 15 s);
        # busy, the Heartbeat thread beats every job_monitoring_interval.
        kwargs.setdefault("worker_ttl", heartbeat_s + 15)
        kwargs.setdefault("job_monitoring_interval", heartbeat_s)
        # Maintenance (abandoned jobs back to the queue) on every idle wake-up: a dead
        # worker's job is queued again within dead_after_s + heartbeat_s of its last beat.
        kwargs.setdefault("maintenance_interval", heartbeat_s)
        super().__init__(*args, **kwargs)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long a run holds its job without a heartbeat (RQ's SimpleWorker holds it for
        the whole job timeout, so a killed worker's job would wait that long)."""
        return self.dead_after_s

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        # RQ leaves the worker's registration the job's heartbeat TTL (dead_after_s) here;
        # give it the TTL the in-job beats keep, so a worker on its first batch never lapses
        # out of /readyz and /v1/models before the Heartbeat thread's first beat.
        self.heartbeat(self.job_monitoring_interval + 60)

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        with Heartbeat(self, job, execution):
            self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        jobs.request_stop()
        super().request_stop(signum, frame)


def build_worker(
    settings: Settings, connection: Redis, report: RuntimeReport | None = None
) -> GlimpseWorker:
    queue = WorkerQueue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    queue.lock_s = settings.worker_dead_after_s  # a pass takes milliseconds
    worker = GlimpseWorker(
        [queue],
        connection=connection,
        serializer=JSONSerializer,
        heartbeat_s=settings.worker_heartbeat_s,
        dead_after_s=settings.worker_dead_after_s,
    )
    if report is not None:  # under the name it registers with: /v1/models reads it there
        JobStore(connection, settings).record_runtime(worker.name, dataclasses.asdict(report))
    return worker


def announce_runtime(settings: Settings) -> RuntimeReport:
    """Log where the runtime runs; a GPU asked for and missing is a warning, not an error."""
    report = probe_runtime(settings)
    log.info("runtime %s on %s: %s", report.runtime, report.device, ", ".join(report.providers))
    if report.note:
        log.warning("%s", report.note)
    return report


def preload(settings: Settings) -> None:
    """Load the default model now, so the first job does not pay for it."""
    models = jobs.warm_models(settings)
    if not models.registry.has(settings.default_model):
        log.warning("default model %r is not registered; nothing preloaded", settings.default_model)
        return
    try:
        models.get(settings.default_model)
    except GlimpseError as exc:
        log.warning("cannot preload %r: %s", settings.default_model, exc.detail)


def wait_for_redis(connection: Redis, max_wait_s: float = 30.0) -> None:
    """Block until Redis answers, backing off from 0.5 s to `max_wait_s` between tries."""
    wait = 0.5
    while True:
        try:
            connection.ping()
            return
        except RedisError as exc:
            log.warning("Redis unreachable (%s); trying again in %.1f s", exc, wait)
            time.sleep(wait)
            wait = min(wait * 2, max_wait_s)


def serve(settings: Settings, connection: Redis, report: RuntimeReport | None = None) -> None:
    """Work until asked to stop. RQ's loop gives up when Redis fails it (a timeout, an error
    outside its dequeue); then wait for Redis and register afresh, models still warm."""
    while True:
        try:
            worker = build_worker(settings, connection, report)
        except RedisError as exc:
            log.warning("cannot register with Redis: %s", exc)
            wait_for_redis(connection)
            continue
        try:
            worker.work(with_scheduler=False, logging_level="INFO")
        except RedisError as exc:  # its teardown could not reach Redis either
            log.warning("the worker loop lost Redis: %s", exc)
        if worker._stop_requested or jobs.stop_requested():
            return
        log.warning("the worker loop ended without a stop request; reconnecting to Redis")
        wait_for_redis(connection)


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    settings = get_settings()
    if not settings.redis_url:
        print("worker: REDIS_URL is not set", file=sys.stderr)
        return 2
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # batch work: the API on the same host stays responsive
    connection = Redis.from_url(
        settings.redis_url, socket_connect_timeout=5, health_check_interval=30
    )
    report = announce_runtime(settings)
    preload(settings)
    wait_for_redis(connection)
    serve(settings, connection, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
