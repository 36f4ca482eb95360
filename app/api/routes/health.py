"""Liveness (`/healthz`) and readiness (`/readyz`: Redis answers, a worker is alive and the
default model is registered: a deployment whose models step could not fetch one says so here).
Which workers are alive: app/workers.py.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from app.api.deps import QueueDep, RedisDep, RegistryDep, SettingsDep
from app.schemas import Health
from app.workers import live_workers

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
