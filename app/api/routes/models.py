"""`GET /v1/models`: the registered models, from their cards."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from app.api.deps import RegistryDep, SettingsDep
from app.auth import authenticate
from app.openapi_docs import problem_responses
from app.schemas import ModelInfo
from glimpse.cards import ModelRegistry
from glimpse.errors import GlimpseError
from glimpse.settings import Settings

router = APIRouter(
    prefix="/v1",
    tags=["models"],
    dependencies=[Depends(authenticate)],
    responses=problem_responses((401,)),
)
log = logging.getLogger("glimpse.api")


def list_models(registry: ModelRegistry, settings: Settings) -> list[ModelInfo]:
    models = []
    for name in registry.names():
        try:
            card = registry.get(name).card
        except GlimpseError as exc:  # a broken card is skipped, not a 500 for the client
            log.warning("model %r is not listed: %s", name, exc.detail)
            continue
        models.append(
            ModelInfo(
                name=name,
                input_size=card.input_size,
                num_classes=card.num_classes,
                default=name == settings.default_model,
                runtime=settings.runtime,
                providers=settings.runtime_providers,
            )
        )
    return models


@router.get("/models", response_model=list[ModelInfo], summary="The registered models")
async def get_models(registry: RegistryDep, settings: SettingsDep) -> list[ModelInfo]:
    return await run_in_threadpool(list_models, registry, settings)
