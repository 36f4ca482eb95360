"""FastAPI dependencies, as `Annotated` aliases; everything hangs off `app.state`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis
from rq import Queue

from glimpse.cards import ModelRegistry
from glimpse.settings import Settings
from glimpse.store import JobStore


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_redis(request: Request) -> Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


def get_store(request: Request) -> JobStore:
    return request.app.state.store  # type: ignore[no-any-return]


def get_queue(request: Request) -> Queue:
    return request.app.state.queue  # type: ignore[no-any-return]


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[Redis, Depends(get_redis)]
StoreDep = Annotated[JobStore, Depends(get_store)]
QueueDep = Annotated[Queue, Depends(get_queue)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
