"""RQ job functions: importable, module-level, JSON-able arguments (the job id only).

A job reads its params and image from the job store, explains it with warm models through
the one pipeline (worker/pipeline.py), and writes progress, then the result and segments,
through guarded writes: a job deleted while
it runs is noticed at the next progress report (between batches) and stops.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import get_current_job

from glimpse.errors import GlimpseError
from glimpse.params import ExplainParams
from glimpse.settings import Settings, get_settings
from glimpse.store import JobStore
from worker.engine.evaluate import Cancelled
from worker.pipeline import ModelInUse, decode, explain_image
from worker.runtime.loader import WarmModels

log = logging.getLogger(__name__)

#: At most this many progress writes per second.
PROGRESS_INTERVAL_S = 0.1

_warm: WarmModels | None = None
_stop_requested = False


def warm_models(settings: Settings | None = None) -> WarmModels:
    """The process's models: sessions are built once and stay warm across jobs."""
    global _warm
    if _warm is None:
        _warm = WarmModels(settings or get_settings())
    return _warm


def request_stop() -> None:
    """Ask the running job to stop at its next progress report (worker shutting down)."""
    global _stop_requested
    _stop_requested = True


def stop_requested() -> bool:
    return _stop_requested


class WorkerStopped(Cancelled):
    """The worker is shutting down; the job ends failed so a client can resubmit it."""


def _connection(settings: Settings) -> Redis:
    job = get_current_job()
    if job is not None:
        return job.connection
    return Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379/0")


def run_explanation(job_id: str) -> str:
    """Explain the job `job_id`; returns its final status ('finished', 'failed', 'canceled')."""
    settings = get_settings()
    store = JobStore(_connection(settings), settings)
    attempt = secrets.token_hex(8)
    if not store.start(job_id, attempt):
        log.info("job %s was deleted before it started", job_id)
        return "canceled"
    started = time.perf_counter()
    try:
        status, evaluations, evaluation_seconds = _run(store, settings, job_id, attempt)
    except WorkerStopped:
        detail = "the worker shut down while the job ran; submit it again"
        store.fail(job_id, "Worker stopped", detail, attempt=attempt)
        store.record_run(seconds=time.perf_counter() - started)
        return "failed"
    except Cancelled:  # counted by the DELETE that canceled it, or by the run that took over
        log.info("job %s canceled or taken over while running", job_id)
        return "canceled"
    except (RedisConnectionError, RedisTimeoutError):
        # Nothing can be recorded without Redis. The job stays in RQ's started registry; once
        # this attempt's heartbeat lapses it is abandoned and queued again (job_retries).
        log.exception("job %s lost Redis; it will be taken up again", job_id)
        raise
    except GlimpseError as exc:
        log.warning("job %s failed: %s: %s", job_id, exc.title, exc.detail)
        store.fail(job_id, exc.title, exc.detail, attempt=attempt)
        store.record_run(seconds=time.perf_counter() - started)
        return "failed"
    except Exception as exc:  # a job must end in a state a client can read
        log.exception("job %s crashed", job_id)
        title = "Job timed out" if type(exc).__name__ == "JobTimeoutException" else "Internal error"
        store.fail(job_id, title, f"{type(exc).__name__}: {exc}", attempt=attempt)
        store.record_run(seconds=time.perf_counter() - started)
        return "failed"
    store.record_run(
        seconds=time.perf_counter() - started if status == "finished" else None,
        evaluations=evaluations,
        evaluation_seconds=evaluation_seconds,
    )
    return status


def _run(store: JobStore, settings: Settings, job_id: str, attempt: str) -> tuple[str, int, float]:
    job = store.get(job_id)
    if job is None:
        raise Cancelled()
    params = ExplainParams.model_validate(job.params)
    image_bytes = store.image(job)
    if image_bytes is None:
        raise GlimpseError("the uploaded image expired before the job ran")
    image = decode(image_bytes, settings)
    loaded = warm_models(settings).get(params.model or settings.default_model)
    model = ModelInUse(
        name=loaded.name,
        card=loaded.registered.card,
        labels=loaded.registered.labels,
        runtime=loaded.runtime,
    )
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        if _stop_requested:
            raise WorkerStopped()
        now = time.monotonic()
        if now - last < PROGRESS_INTERVAL_S and done < total:
            return
        last = now
        if not store.progress(job_id, done, total, attempt=attempt):
            raise Cancelled()

    # checked again here: the job may predate a lowered limit, or not have come through the API
    explained = explain_image(image, model, params, settings, progress=progress)
    explanation = explained.explanation
    written = store.finish(
        job_id,
        result_json=explained.result.model_dump_json(),
        segments_png=explained.segments_png(),
        done=explanation.model_evaluations,
        attempt=attempt,
        attribution=explained.stored_maps(),
    )
    if not written:
        return "canceled", explanation.model_evaluations, explanation.evaluation_seconds
    return "finished", explanation.model_evaluations, explanation.evaluation_seconds


def on_failure(job: Any, connection: Redis, exc_type: Any, exc_value: Any, tb: Any) -> None:
    """RQ failure callback: the job function died in a way it could not record itself (its
    worker killed, Redis lost mid-run, a crash in RQ). RQ alone decides what happens next:
    when it will run the job again (retries left), the job goes back to queued, progress
    cleared; only when it will not is the job `failed`, with the reason."""
    settings = get_settings()
    store = JobStore(connection, settings)
    name = getattr(exc_type, "__name__", "Error")
    if job.should_retry:  # RQ queues it again right after this callback
        log.warning("job %s: its run died (%s); queued again", job.id, name)
        store.requeue(job.id)
        return
    if name == "AbandonedJobError":
        detail = (
            "the worker running this job stopped answering (killed, out of memory or cut off "
            f"from Redis) on every one of its {settings.job_retries + 1} attempts"
        )
        store.fail(job.id, "Worker died", detail)
        return
    title = "Job timed out" if name == "JobTimeoutException" else "Job crashed"
    store.fail(job.id, title, f"{name}: {exc_value}")
