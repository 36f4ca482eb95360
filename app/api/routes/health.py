"""Liveness (`/healthz`) and readiness (`/readyz`: Redis answers and a worker is alive).

A worker is alive when its last heartbeat is recent: a killed worker's RQ registration
outlives it by a minute, and must not count.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from rq import Worker

from app.api.deps import QueueDep, RedisDep, SettingsDep
from app.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="200 while the process runs")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="200 when Redis answers and at least one worker is alive, else 503",
    responses={503: {"model": Health, "description": "not ready; `checks` says why"}},
)
def readyz(redis: RedisDep, queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        redis.ping()
        checks["redis"] = "ok"
        workers = alive(Worker.all(queue=queue), settings.worker_dead_after_s)
        checks["workers"] = f"{len(workers)} alive" if workers else "none alive"
    except RedisError as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
        workers = []
    ready = checks["redis"] == "ok" and bool(workers)
    body = Health(status="ready" if ready else "not ready", checks=checks)
    headers = None if ready else {"Retry-After": str(settings.retry_after_s)}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)


def alive(workers: list[Worker], limit: int) -> list[Worker]:
    """The workers that beat in the last `limit` seconds."""
    now = datetime.now(UTC)
    return [
        w
        for w in workers
        if w.last_heartbeat is not None
        and (now - w.last_heartbeat.replace(tzinfo=UTC)).total_seconds() <= limit
    ]
