"""Warm-up at start: the first submissions after a start or a deploy should cost what later
ones do.

Cold, a submission cost 5-10 times a warm one (35-70 ms against 7 ms in one process), and a
burst of 25 concurrent first submissions each paid it, for a p99 over 200 ms: FastAPI builds a
route's dependency graph and Starlette its middleware stack on first use, modules are imported
on first use (the multipart parser), Pillow opens its format plugins, every new Redis
connection shakes hands in several round trips (HELLO, CLIENT SETINFO) while holding up a
request, RQ asks the server's version before its first enqueue. This does that work once,
before uvicorn takes requests: one rehearsal submission through the whole ASGI stack, refused
at validation so that nothing is queued, then the rest by hand.

Best effort: with Redis down the API starts all the same (it answers 503 until Redis is back).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import numpy as np
from fastapi import FastAPI
from redis.exceptions import RedisError

from glimpse.errors import GlimpseError
from glimpse.images import decode_image, encode_png
from glimpse.params import parse_params

log = logging.getLogger("glimpse.api")

#: Redis connections opened ahead: one per submission that can be inside a thread of the
#: pool at once, up to what a busy API process sees (more are opened on demand).
WARM_CONNECTIONS = 32


#: The ASGI scope extension that marks the rehearsal: the metrics do not count it.
REHEARSAL = "glimpse.warm_up"

_BOUNDARY = "warm-up"


def _blank_png() -> bytes:
    """The image both halves of the warm-up submit or decode: 8 × 8 black."""
    return encode_png(np.zeros((8, 8, 3), np.uint8))


async def rehearse_submission(app: FastAPI) -> int:
    """POST /v1/explanations with a valid image and `num_samples: 0`, in process (no socket):
    the API answers 422 and queues nothing. Returns the status. With API keys on it stops at
    the 401 (a rehearsal carries no key); with a rate limit, it counts once for the client
    address `warm-up`."""
    png = _blank_png()
    body = b"".join(
        [
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="w.png"'
            "\r\nContent-Type: image/png\r\n\r\n".encode(),
            png,
            f'\r\n--{_BOUNDARY}\r\nContent-Disposition: form-data; name="params"\r\n\r\n'
            f'{{"num_samples": 0}}\r\n--{_BOUNDARY}--\r\n'.encode(),
        ]
    )
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/explanations",
        "raw_path": b"/v1/explanations",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"warm-up"),
            (b"content-type", f"multipart/form-data; boundary={_BOUNDARY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("warm-up", 0),
        "server": ("warm-up", 0),
        "extensions": {REHEARSAL: {}},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def warm_up(app: FastAPI) -> None:
    """The parts a rehearsal does not reach or may not (its 401 with keys on; Redis down)."""
    settings = app.state.settings
    decode_image(_blank_png(), max_pixels=settings.max_image_pixels)
    parse_params({})
    try:
        app.state.registry.get(settings.default_model)
    except GlimpseError as exc:  # reported per request, with its reason
        log.warning("warm-up: default model %r: %s", settings.default_model, exc.detail)
    pool = app.state.redis.connection_pool
    opened = []
    try:
        app.state.queue.get_redis_server_version()
        for _ in range(WARM_CONNECTIONS):
            opened.append(pool.get_connection())
    except (RedisError, OSError) as exc:
        log.warning("warm-up: redis unreachable: %s", exc)
    finally:
        for connection in opened:
            pool.release(connection)
