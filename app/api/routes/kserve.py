"""KServe V1 data plane: `GET /v1/models/{name}`, `:predict`, `:explain` (synchronous)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from app import kserve
from app.api.deps import QueueDep, RedisDep, RegistryDep, SettingsDep, StoreDep
from app.auth import OwnerDep, authenticate
from app.openapi_docs import problem_responses
from app.ratelimit import count_images, limit_submissions
from app.uploads import body_limit, loads_json, read_body
from glimpse.cards import ModelRegistry
from glimpse.settings import Settings

router = APIRouter(
    prefix="/v1/models",
    tags=["kserve"],
    dependencies=[Depends(authenticate)],
    responses=problem_responses((401,)),
)

V1_ERRORS = (400, 404, 413, 415, 422, 429, 503, 504)

IMAGE_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
V1_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "instances": {"type": "array", "items": {}},
                    "parameters": {"type": "object", "description": "explainer params (:explain)"},
                },
                "required": ["instances"],
            },
            "examples": {
                "image_bytes": {
                    "summary": "TF Serving / KServe image_bytes",
                    "value": {"instances": [{"image_bytes": {"b64": IMAGE_B64}}]},
                },
                "torchserve": {
                    "summary": "TorchServe-style data",
                    "value": {"instances": [{"data": IMAGE_B64}]},
                },
                "pixels": {
                    "summary": "an H×W×3 pixel array (0..255)",
                    "value": {
                        "instances": [[[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [9, 9, 9]]]]
                    },
                },
            },
        }
    },
}


async def _read(
    name: str, request: Request, settings: Settings, registry: ModelRegistry
) -> tuple[str, list[bytes], dict[str, Any]]:
    """(the model, each instance's image bytes, the body) of a V1 request; each instance
    counts one image against the rate limit."""
    raw = await read_body(request, body_limit("application/json", settings.max_batch_bytes))
    body = loads_json(raw, loc=["body"], what="the body")
    model = kserve.model_name(name, registry)
    images = kserve.instances(body, settings)
    await count_images(request, len(images), loc=list(kserve.LOC))
    return model, images, body


@router.get(
    "/{name}",
    summary="KServe V1 model readiness",
    responses=problem_responses((404,)),
)
def model_ready(name: str, registry: RegistryDep) -> dict[str, Any]:
    return {"name": kserve.model_name(name, registry), "ready": True}


@router.post(
    "/{name}:predict",
    summary="KServe V1 predict: the top classes of each instance",
    responses=problem_responses(V1_ERRORS),
    openapi_extra={"requestBody": V1_BODY},
    dependencies=[Depends(limit_submissions)],
)
async def predict(
    name: str,
    request: Request,
    settings: SettingsDep,
    redis: RedisDep,
    queue: QueueDep,
    registry: RegistryDep,
) -> dict[str, Any]:
    model, images, _ = await _read(name, request, settings, registry)
    predictions = await run_in_threadpool(
        kserve.predict, images, model, settings=settings, redis=redis, queue=queue
    )
    return {"predictions": predictions}


@router.post(
    "/{name}:explain",
    summary="KServe V1 explain: synchronous explanations (params in `parameters`)",
    description=(
        "Submits one explanation job per instance, exactly as `POST /v1/batches` would (every "
        "instance checked before any is queued, all queued at once, each counted by the rate "
        "limit), and waits for them within the server's time limit (`GLIMPSE_SYNC_TIMEOUT_S`); "
        "past it the answer is 504 and the jobs go on. The answer lists the results in "
        "instance order."
    ),
    responses=problem_responses(V1_ERRORS),
    openapi_extra={"requestBody": V1_BODY},
    dependencies=[Depends(limit_submissions)],
)
async def explain(
    name: str,
    request: Request,
    owner: OwnerDep,
    settings: SettingsDep,
    store: StoreDep,
    queue: QueueDep,
    registry: RegistryDep,
) -> dict[str, Any]:
    model, images, body = await _read(name, request, settings, registry)
    return await run_in_threadpool(
        kserve.explain,
        images,
        model,
        body.get("parameters"),
        settings=settings,
        store=store,
        queue=queue,
        registry=registry,
        owner=owner,
    )
