"""Every error the API sends is RFC 9457 problem+json, rendered here.

Domain errors (glimpse.errors) carry their status; FastAPI's validation errors become 422,
Starlette's HTTP errors (unknown route, wrong method) keep their status, an unreachable Redis
is a 503 with Retry-After, and anything else is a 500 that says nothing of the internals.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from glimpse.errors import GlimpseError, ServiceUnavailable, TooManyRequests, Unauthorized

log = logging.getLogger("glimpse.api")

PROBLEM_TYPE_PREFIX = "urn:glimpse:problem:"


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem_type(title: str) -> str:
    return PROBLEM_TYPE_PREFIX + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": problem_type(title),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [{"loc": list(e["loc"]), "msg": str(e["msg"])} for e in errors]
    return ProblemResponse(body, status_code=status, headers=headers)


async def glimpse_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, GlimpseError)
    headers = None
    if isinstance(exc, ServiceUnavailable | TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, Unauthorized):
        challenge = 'Bearer realm="glimpse"' + (', error="invalid_token"' if exc.invalid else "")
        headers = {"WWW-Authenticate": challenge}
    if exc.status >= 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, exc.title, exc.detail)
    return problem(exc.status, exc.title, exc.detail, errors=exc.errors, headers=headers)


async def validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "invalid")}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    detail = f"{'.'.join(first['loc'])}: {first['msg']}"
    return problem(422, "Invalid parameters", detail, errors=errors)


async def http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    if exc.status_code == 404 and detail == phrase:
        detail = f"no route for {request.url.path}"
    return problem(exc.status_code, phrase, detail, headers=getattr(exc, "headers", None))


async def redis_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    settings = request.app.state.settings
    log.warning("redis unreachable: %s", exc)
    return problem(
        503,
        ServiceUnavailable.title,
        "the job store (Redis) is unreachable; try again later",
        headers={"Retry-After": str(settings.retry_after_s)},
    )


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client disconnected before its request was read: nobody hears an answer. 499
    (nginx's "client closed request") in the logs and metrics, and no traceback."""
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def unexpected_error(request: Request, exc: Exception) -> ProblemResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal error", "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(GlimpseError, glimpse_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RedisConnectionError, redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, redis_unavailable)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected_error)
