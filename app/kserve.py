"""KServe V1 compatibility: `:predict` and a synchronous `:explain` over the same queue.

Instances may be, as KServe's and TF Serving's examples send them:
    {"image_bytes": {"b64": "..."}}   TF Serving / KServe image classifiers
    {"data": "..."} or {"b64": "..."} TorchServe-style base64 of the file
    "..."                             a bare base64 string
    [[[r, g, b], ...], ...]           an H×W×3 (or H×W) array of 0..255 pixel values
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from redis import Redis
from rq import Queue

from app import submissions
from app.uploads import Submission
from glimpse.cards import ModelRegistry
from glimpse.errors import (
    BadRequest,
    GatewayTimeout,
    GlimpseError,
    InvalidParams,
    NotFound,
    PayloadTooLarge,
    UnsupportedImage,
)
from glimpse.images import decode_image, encode_png
from glimpse.settings import Settings
from glimpse.store import JobStore, new_job_id

PREDICT_FUNCTION = "worker.kserve_predict.run_prediction"
MAX_INSTANCES = 16
POLL_S = 0.05


def instances(body: Any) -> list[bytes]:
    """The image file bytes of each instance of a V1 request body."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object {"instances": [...]}')
    items = body.get("instances", body.get("inputs"))
    if not isinstance(items, list) or not items:
        raise BadRequest(
            '"instances" must be a non-empty list',
            errors=[{"loc": ["body", "instances"], "msg": "a non-empty list is required"}],
        )
    if len(items) > MAX_INSTANCES:
        raise BadRequest(f"at most {MAX_INSTANCES} instances per request")
    return [_instance(item, i) for i, item in enumerate(items)]


def _instance(item: Any, i: int) -> bytes:
    loc = ["body", "instances", str(i)]
    if isinstance(item, dict):
        inner = item.get("image_bytes", item)
        b64 = inner.get("b64", item.get("data")) if isinstance(inner, dict) else None
        if not isinstance(b64, str):
            raise BadRequest(
                "an instance object needs image_bytes.b64, b64 or data (base64 of the file)",
                errors=[{"loc": loc, "msg": "no base64 image found"}],
            )
        return _b64(b64, loc)
    if isinstance(item, str):
        return _b64(item, loc)
    if isinstance(item, list):
        return _pixels(item, loc)
    raise BadRequest("an instance must be an object, a base64 string or a pixel array")


def _b64(text: str, loc: list[str]) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            "not valid base64", errors=[{"loc": loc, "msg": "invalid base64"}]
        ) from None


def _pixels(item: list[Any], loc: list[str]) -> bytes:
    try:
        pixels = np.asarray(item, dtype=np.float64)
    except (ValueError, TypeError):
        raise BadRequest(
            "a pixel array must be a regular H×W×3 array of numbers",
            errors=[{"loc": loc, "msg": "ragged or non-numeric array"}],
        ) from None
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise BadRequest(
            f"a pixel array must be H×W×3 (or H×W); got shape {list(pixels.shape)}",
            errors=[{"loc": loc, "msg": "wrong shape"}],
        )
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise BadRequest(
            "pixel values must be between 0 and 255", errors=[{"loc": loc, "msg": "out of range"}]
        )
    return encode_png(np.round(pixels).astype(np.uint8))


#: Failures a worker reports that are about what the client sent: they keep their 4xx.
CLIENT_ERRORS = {e.title: e for e in (BadRequest, PayloadTooLarge, UnsupportedImage, InvalidParams)}


def reported_error(title: str, detail: str) -> GlimpseError:
    """The error a worker recorded as (title, detail): a 4xx where the client's input caused
    it (params over a limit found only once the superpixels are counted), else a 500."""
    kind = CLIENT_ERRORS.get(title)
    return kind(detail) if kind is not None else GlimpseError(f"{title}: {detail}")


@contextlib.contextmanager
def at_instance(i: int) -> Iterator[None]:
    """An error about the image (a 413/415, or `loc: ["image"]`) names instance i of the
    body instead; errors about the params, the same for every instance, pass unchanged."""
    try:
        yield
    except GlimpseError as exc:
        loc = ["body", "instances", str(i)]
        if exc.errors is None and exc.status in (413, 415):
            exc.errors = [{"loc": loc, "msg": exc.detail}]
        elif exc.errors and any(list(e["loc"]) == ["image"] for e in exc.errors):
            exc.errors = [
                {**e, "loc": loc} if list(e["loc"]) == ["image"] else e for e in exc.errors
            ]
        else:
            raise
        exc.detail = f"instance {i}: {exc.detail}"
        raise


def model_name(name: str, registry: ModelRegistry) -> str:
    try:
        registry.get(name)
    except GlimpseError:
        raise NotFound(f"no model named {name!r}") from None
    return name


def predict(
    images: list[bytes], name: str, *, settings: Settings, redis: Redis, queue: Queue
) -> list[list[dict[str, Any]]]:
    """Top classes of each image, from a worker, within settings.sync_timeout_s."""
    for i, data in enumerate(images):  # every instance is read before any is queued
        with at_instance(i):
            decode_image(data, max_pixels=settings.max_image_pixels)  # 413/415
    pending = []
    limit = math.ceil(settings.sync_timeout_s)
    for data in images:
        submissions.ensure_room(queue, settings)
        token = new_job_id()
        image_key = f"{settings.key_prefix}:predict:{token}:image"
        reply_key = f"{settings.key_prefix}:predict:{token}:reply"
        redis.set(image_key, data, ex=limit + 120)
        queue.enqueue_call(
            PREDICT_FUNCTION,
            args=[image_key, reply_key, name],
            timeout=limit + 30,
            ttl=limit,  # not taken by then: the caller has its 504 already
            result_ttl=0,
            failure_ttl=3600,
        )
        pending.append(reply_key)
    deadline = time.monotonic() + settings.sync_timeout_s
    answers = []
    for reply_key in pending:
        left = deadline - time.monotonic()
        popped = redis.blpop([reply_key], timeout=max(left, 0.01)) if left > 0 else None
        if popped is None:
            raise GatewayTimeout(f"no prediction within {settings.sync_timeout_s:g} s")
        answer = json.loads(popped[1])
        if "error" in answer:
            raise reported_error(answer["error"]["title"], answer["error"]["detail"])
        answers.append(answer["predictions"])
    return answers


def explain(
    images: list[bytes],
    name: str,
    parameters: Any,
    *,
    settings: Settings,
    store: JobStore,
    queue: Queue,
    registry: ModelRegistry,
    owner: str = "",
) -> dict[str, list[Any]]:
    """Submit one explanation job per image (cache and limits as POST /v1/explanations) and
    wait for them all within settings.sync_timeout_s. `owner`: the caller's API key id."""
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidParams(
            '"parameters" must be an object of explainer params',
            errors=[{"loc": ["body", "parameters"], "msg": "must be a JSON object"}],
        )
    params = {**(parameters or {}), "model": name}
    checked = []
    for i, data in enumerate(images):  # every instance passes every check before any is queued
        with at_instance(i):
            submission = Submission(image=data, params=params)
            checked.append(submissions.check(submission, settings=settings, registry=registry))
    jobs = [
        submissions.enqueue(one, settings=settings, store=store, queue=queue, owner=owner)[0]
        for one in checked
    ]
    deadline = time.monotonic() + settings.sync_timeout_s
    results = []
    for job in jobs:
        while True:
            current = submissions.get(store, job.id)
            if current.status == "finished":
                results.append(json.loads(current.result_json or "null"))
                break
            if current.status in ("failed", "canceled"):
                error = current.error or {}
                raise reported_error(
                    str(error.get("title")),
                    f"explanation {current.id} {current.status}: {error.get('detail')}",
                )
            if time.monotonic() > deadline:
                raise GatewayTimeout(
                    f"explanation {current.id} did not finish within {settings.sync_timeout_s:g} s;"
                    f" it goes on: poll /v1/explanations/{current.id}"
                )
            time.sleep(POLL_S)
    return {
        "predictions": [result["predictions"] for result in results],
        "explanations": results,
    }
