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

from collections.abc import Sequence
from datetime import UTC, datetime

from redis import Redis
from rq import Queue, Worker
from rq.worker.base import BaseWorker

from glimpse.settings import Settings


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
