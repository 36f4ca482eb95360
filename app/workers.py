"""The API's view of the queue's workers: read from Redis, never allowed to touch the API's
Redis client.

RQ's `Worker.__init__` raises its connection pool's `socket_timeout` to the worker's own
(415 s by default: the blocking dequeue needs it), and `Worker.all` builds a Worker for each
registration. Called on the API's client, every connection the pool opened afterwards waited
up to 415 s on a stalled Redis instead of `GLIMPSE_REDIS_TIMEOUT_S`: a new API process hung
its requests for the whole stall. `WorkerView` reads the same registrations and leaves the
connection as it is.

A worker is alive when its last heartbeat is recent: a killed worker's RQ registration
outlives it by a minute, and must not count.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.worker.base import BaseWorker

from glimpse.errors import InvalidParams
from glimpse.params import GRADIENT_METHODS, Method
from glimpse.settings import Settings
from glimpse.store import JobStore

METHODS: tuple[str, ...] = typing.get_args(Method)


class WorkerView(Worker):
    """A worker registration as the API reads it; never run."""

    def _set_connection(self, connection: Redis) -> Redis:
        return connection  # the API's timeouts stay the API's


def live_workers(queue: Queue, settings: Settings) -> list[BaseWorker]:
    """The queue's workers that beat within the last 3 heartbeats (RedisError if Redis is
    away)."""
    return alive(WorkerView.all(queue=queue), settings.worker_dead_after_s)


def alive(workers: Sequence[BaseWorker], limit: int) -> list[BaseWorker]:
    """The workers that beat in the last `limit` seconds."""
    now = datetime.now(UTC)
    return [
        w
        for w in workers
        if w.last_heartbeat is not None
        and (now - w.last_heartbeat.replace(tzinfo=UTC)).total_seconds() <= limit
    ]


def live_runtimes(store: JobStore, queue: Queue, settings: Settings) -> list[dict[str, Any]]:
    """What the live workers report they run on (none reachable: [])."""
    try:
        names = [w.name for w in live_workers(queue, settings)]
        return store.runtimes(names)
    except RedisError:
        return []


def offered_methods(reports: list[dict[str, Any]]) -> list[str]:
    """The methods the live workers can run: the gradient methods only where one of them has
    autodiff (PyTorch). With no report yet, every method (nothing is known to be missing)."""
    if not reports or any(r.get("gradients") for r in reports):
        return list(METHODS)
    return [m for m in METHODS if m not in GRADIENT_METHODS]


def check_offered(method: str, reports: list[dict[str, Any]], field: str = "method") -> None:
    """A 422 at submit for a method no live worker can run (the gradient methods on workers
    without PyTorch), rather than a job that fails once a worker takes it. `field`: where
    the client asked for it (`method`, or `methods` for a comparison)."""
    if method in offered_methods(reports):
        return
    raise InvalidParams(
        f"params.{field}: {method} needs gradients, and none of the {len(reports)} live "
        "workers has PyTorch: run workers with glimpse[torch] installed (the worker image "
        "built with TORCH=1, or GLIMPSE_RUNTIME=torch); GET /v1/models lists the methods "
        "offered",
        errors=[{"loc": ["params", field], "msg": f"no live worker offers {method}"}],
    )
