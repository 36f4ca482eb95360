"""app/warmup.py: the API warms up before it takes requests, and the warm-up leaves no trace:
nothing queued or stored, nothing counted in the metrics, and a start with Redis down still
starts."""

from __future__ import annotations

import asyncio
import uuid

from redis import Redis

from app.main import create_app
from app.warmup import WARM_CONNECTIONS, rehearse_submission, warm_up
from glimpse.keys import hash_key, new_key


def test_the_rehearsal_is_refused_at_validation_and_leaves_no_trace(
    settings_for, redis_server
) -> None:
    name = f"warm-{uuid.uuid4().hex[:8]}"
    app = create_app(settings_for(queue_name=name, key_prefix=name))
    assert asyncio.run(rehearse_submission(app)) == 422  # num_samples 0

    redis: Redis = redis_server.client
    assert redis.keys(f"{name}:*") == []  # no job, no image, no cache entry
    assert app.state.queue.count == 0
    metrics = app.state.metrics.registry
    assert (
        metrics.get_sample_value(
            "glimpse_http_requests_total",
            {"route": "/v1/explanations", "method": "POST", "status": "422"},
        )
        is None
    )


def test_with_api_keys_the_rehearsal_stops_at_the_401(settings_for) -> None:
    app = create_app(settings_for(api_key_hashes=hash_key(new_key())))
    assert asyncio.run(rehearse_submission(app)) == 401


def test_warm_up_opens_redis_connections_ahead(settings_for) -> None:
    app = create_app(settings_for())
    warm_up(app)
    pool = app.state.redis.connection_pool
    assert len(pool._available_connections) >= WARM_CONNECTIONS  # noqa: SLF001
    assert app.state.queue.redis_server_version  # RQ's version probe is done


def test_with_redis_down_the_api_still_starts(app_client) -> None:
    # Nothing listens on port 1: the warm-up's Redis part fails at once, and is skipped.
    client = app_client(redis_url="redis://127.0.0.1:1/0")
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503, r.text


def test_the_first_submission_after_start_is_served(app_client, small_png: bytes) -> None:
    name = f"warm-{uuid.uuid4().hex[:8]}"
    client = app_client(queue_name=name, key_prefix=name)
    r = client.post(
        "/v1/explanations",
        files={"image": ("a.png", small_png, "image/png")},
        data={"params": '{"num_samples": 20, "cache": false}'},
    )
    assert r.status_code == 202, r.text
    text = client.get("/metrics").text
    # Only the real submission is counted, not the rehearsal before it.
    assert 'route="/v1/explanations",status="202"} 1.0' in text
    assert 'status="422"' not in text
