"""Liveness (`/healthz`) and readiness (`/readyz`: Redis answers and a worker is alive)."""

from __future__ import annotations

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
        workers = Worker.all(queue=queue)
        checks["workers"] = f"{len(workers)} alive" if workers else "none alive"
    except RedisError as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
        workers = []
    ready = checks["redis"] == "ok" and bool(workers)
    body = Health(status="ready" if ready else "not ready", checks=checks)
    headers = None if ready else {"Retry-After": str(settings.retry_after_s)}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)
