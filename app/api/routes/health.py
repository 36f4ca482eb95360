"""Liveness (`/healthz`) and readiness (`/readyz`: Redis answers, a worker is alive and the
default model is registered: a deployment whose models step could not fetch one says so here).

A worker is alive when its last heartbeat is recent: a killed worker's RQ registration
outlives it by a minute, and must not count.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.worker.base import BaseWorker

from app.api.deps import QueueDep, RedisDep, RegistryDep, SettingsDep
from app.schemas import Health
from glimpse.settings import Settings

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="200 while the process runs")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="200 when Redis answers, at least one worker is alive and the default model is "
    "registered, else 503",
    responses={503: {"model": Health, "description": "not ready; `checks` says why"}},
)
def readyz(
    redis: RedisDep, queue: QueueDep, registry: RegistryDep, settings: SettingsDep
) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        redis.ping()
        checks["redis"] = "ok"
        workers = live_workers(queue, settings)
        checks["workers"] = f"{len(workers)} alive" if workers else "none alive"
    except RedisError as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
        workers = []
    model = settings.default_model
    registered = registry.has(model)
    checks["model"] = (
        f"{model} registered"
        if registered
        else f"default model {model!r} is not in {registry.root}: run `glimpse models init` "
        "(fetches ResNet50) or `glimpse models add NAME FILE.onnx --labels FILE --default`"
    )
    ready = checks["redis"] == "ok" and bool(workers) and registered
    body = Health(status="ready" if ready else "not ready", checks=checks)
    headers = None if ready else {"Retry-After": str(settings.retry_after_s)}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)


def live_workers(queue: Queue, settings: Settings) -> list[BaseWorker]:
    """The queue's workers that beat within the last 3 heartbeats (RedisError if Redis is
    away)."""
    return alive(Worker.all(queue=queue), settings.worker_dead_after_s)


def alive(workers: Sequence[BaseWorker], limit: int) -> list[BaseWorker]:
    """The workers that beat in the last `limit` seconds."""
    now = datetime.now(UTC)
    return [
        w
        for w in workers
        if w.last_heartbeat is not None
        and (now - w.last_heartbeat.replace(tzinfo=UTC)).total_seconds() <= limit
    ]
