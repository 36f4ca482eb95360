"""`GET /v1/models`: the registered models, from their cards."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Depends

from app.api.deps import QueueDep, RegistryDep, SettingsDep, StoreDep
from app.auth import authenticate
from app.openapi_docs import problem_responses
from app.schemas import ModelInfo
from app.workers import live_runtimes, offered_methods
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


def list_models(
    registry: ModelRegistry, settings: Settings, reports: list[dict[str, Any]]
) -> list[ModelInfo]:
    """The cards, with where the live workers run them (the settings' choice when no worker
    has said)."""
    runtime = reports[0]["runtime"] if reports else settings.runtime
    providers = _unique(p for r in reports for p in r["providers"]) or settings.runtime_providers
    devices = _unique(r["device"] for r in reports)
    notes = _unique(r["note"] for r in reports if r.get("note"))
    methods = offered_methods(reports)
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
                runtime=runtime,
                providers=providers,
                devices=devices,
                notes=notes,
                methods=methods,
            )
        )
    return models


@router.get("/models", response_model=list[ModelInfo], summary="The registered models")
def get_models(
    registry: RegistryDep, store: StoreDep, queue: QueueDep, settings: SettingsDep
) -> list[ModelInfo]:
    return list_models(registry, settings, live_runtimes(store, queue, settings))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
