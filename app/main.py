"""The Glimpse API: `create_app(settings)` builds it (uvicorn: `app.main:create_app --factory`).

The app validates and queues; it never loads a model runtime (no onnxruntime, no engine).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer

from app import errors, offline_docs, openapi_docs
from app.api.routes import batches, events, explanations, health, kserve, metrics, models, web
from app.auth import KeyRing
from app.body_deadline import BodyDeadline
from app.metrics import Metrics, MetricsMiddleware
from app.ratelimit import RateLimiter
from app.warmup import rehearse_submission, warm_up
from glimpse.batches import BatchStore
from glimpse.cards import ModelRegistry
from glimpse.settings import Settings, get_settings
from glimpse.store import JobStore

log = logging.getLogger("glimpse.api")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

DESCRIPTION = """\
LIME and Kernel SHAP explanations of ONNX image classifiers.

Submit an image with `POST /v1/explanations`, poll `GET /v1/explanations/{id}` (or follow
`GET /v1/explanations/{id}/events`, Server-Sent Events) until its `status` is `finished`,
then read the `result` and the artifacts (`segments.png`, `attribution.npy`,
`overlay.png`). Every error is `application/problem+json`.

Several images at once: `POST /v1/batches` queues one job per image under one batch id, and
`GET /v1/batches/{id}` reports them all.

Where the server has API keys configured, every `/v1` request carries one, as
`Authorization: Bearer KEY` or `X-API-Key: KEY`, and sees only its own jobs; submissions are
limited per key and minute (429 with `Retry-After`).
"""

TAGS = [
    {"name": "explanations", "description": "Explanation jobs and their artifacts"},
    {"name": "batches", "description": "Several images in one submission: a job per image"},
    {"name": "models", "description": "The registered models"},
    {"name": "kserve", "description": "KServe V1 data plane: :predict and synchronous :explain"},
    {"name": "health", "description": "Liveness, readiness and metrics"},
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await run_in_threadpool(warm_up, app)
    status = await rehearse_submission(app)
    if status not in (401, 422, 503):  # refused as meant: no key, num_samples 0, Redis down
        log.warning("warm-up: the rehearsal submission was answered %d, not refused", status)
    yield
    app.state.redis.close()


def api_redis(settings: Settings) -> Redis:
    """The API's Redis client: every reply within `redis_timeout_s` or a 503, so a stalled
    Redis never holds a request; a dropped connection is tried once more, a timeout is not."""
    return Redis.from_url(
        settings.redis_url or DEFAULT_REDIS_URL,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        lifespan=lifespan,
        title="Glimpse",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,  # app/offline_docs.py serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    redis = api_redis(settings)
    store = JobStore(redis, settings)
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    app.state.settings = settings
    app.state.redis = redis
    app.state.store = store
    app.state.batches = BatchStore(redis, settings)
    app.state.queue = queue
    app.state.registry = ModelRegistry(settings.models_dir)
    app.state.metrics = Metrics()
    app.state.metrics.watch(store, queue)
    app.state.keys = KeyRing(settings.api_key_hashes)
    app.state.rate_limiter = RateLimiter(redis, settings)

    errors.install(app)
    app.add_middleware(
        BodyDeadline, idle_s=settings.body_idle_timeout_s, total_s=settings.body_timeout_s
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(explanations.router)
    app.include_router(batches.router)
    app.include_router(events.router)
    app.include_router(models.router)
    app.include_router(kserve.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    openapi_docs.install(app)
    offline_docs.install(app)
    return app
