"""`python -m worker.health`: exit 0 when a worker of this host beat recently (the container
health check of the worker images), else 1 with the reason on stderr.

A worker of this host is an RQ worker registered with this host name; recently is within
3 heartbeats, the same rule /readyz uses.
"""

from __future__ import annotations

import socket
import sys
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from glimpse.settings import get_settings


def main() -> int:
    settings = get_settings()
    if not settings.redis_url:
        print("health: REDIS_URL is not set", file=sys.stderr)
        return 1
    host = socket.gethostname()
    try:
        connection = Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
        workers = [w for w in Worker.all(connection=connection) if w.hostname == host]
    except RedisError as exc:
        print(f"health: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    ages = [
        (now - w.last_heartbeat.replace(tzinfo=UTC)).total_seconds()
        for w in workers
        if w.last_heartbeat is not None
    ]
    if not any(age <= settings.worker_dead_after_s for age in ages):
        print(
            f"health: no worker of {host} beat in {settings.worker_dead_after_s} s", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
