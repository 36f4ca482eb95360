"""FastAPI dependencies, as `Annotated` aliases; everything hangs off `app.state`.

They are `async` though they never await: FastAPI runs a plain `def` dependency in its
thread pool, and a hop to a thread and back per dependency made a submission wait on
two dozen of them under load.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis
from rq import Queue

from glimpse.batches import BatchStore
from glimpse.cards import ModelRegistry
from glimpse.settings import Settings
from glimpse.store import JobStore


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


async def get_batches(request: Request) -> BatchStore:
    batches: BatchStore = request.app.state.batches
    return batches


async def get_queue(request: Request) -> Queue:
    queue: Queue = request.app.state.queue
    return queue


async def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[Redis, Depends(get_redis)]
StoreDep = Annotated[JobStore, Depends(get_store)]
BatchStoreDep = Annotated[BatchStore, Depends(get_batches)]
QueueDep = Annotated[Queue, Depends(get_queue)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
