"""The API reads worker registrations without touching its own Redis timeouts
(app/workers.py): a real RQ worker registered in a real Redis, the API's client from
app/main.py:api_redis."""

from __future__ import annotations

from datetime import UTC, datetime

from rq import Queue, Worker
from services import RedisServer

from app.main import api_redis
from app.workers import WorkerView, live_workers
from glimpse.settings import Settings


def registered_worker(redis_server: RedisServer, queue_name: str) -> Worker:
    queue = Queue(queue_name, connection=redis_server.client)
    worker = Worker([queue], connection=redis_server.client, name=f"{queue_name}-worker")
    worker.register_birth()
    worker.heartbeat()
    worker.set_state("idle")
    return worker


def test_reading_workers_keeps_the_api_timeouts(redis_server: RedisServer) -> None:
    settings = Settings(redis_url=redis_server.url, redis_timeout_s=1.5)  # type: ignore[call-arg]
    redis = api_redis(settings)
    queue = Queue("view-timeouts", connection=redis)
    worker = registered_worker(redis_server, "view-timeouts")
    try:
        found = live_workers(queue, settings)
        assert [w.name for w in found] == [worker.name]
        assert all(isinstance(w, WorkerView) for w in found)
        # What RQ's own Worker would have done to the API's pool: 415 s for every connection
        # opened after it, on a stalled Redis.
        assert redis.connection_pool.connection_kwargs["socket_timeout"] == 1.5
        Worker.all(queue=queue)
        assert redis.connection_pool.connection_kwargs["socket_timeout"] > 400
    finally:
        worker.register_death()
        redis.close()


def test_a_worker_is_alive_only_while_it_beats(redis_server: RedisServer) -> None:
    settings = Settings(redis_url=redis_server.url, worker_heartbeat_s=2)  # type: ignore[call-arg]
    redis = api_redis(settings)
    queue = Queue("view-alive", connection=redis)
    worker = registered_worker(redis_server, "view-alive")
    try:
        assert len(live_workers(queue, settings)) == 1
        stale = datetime(2026, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        redis_server.client.hset(worker.key, "last_heartbeat", stale)
        assert live_workers(queue, settings) == []
    finally:
        worker.register_death()
        redis.close()
