"""KServe V1 compatibility: `:predict` and a synchronous `:explain` over the same queue.

Instances may be, as KServe's and TF Serving's examples send them:
    {"image_bytes": {"b64": "..."}}   TF Serving / KServe image classifiers
    {"data": "..."} or {"b64": "..."} TorchServe-style base64 of the file
    "..."                             a bare base64 string
    [[[r, g, b], ...], ...]           an H×W×3 (or H×W) array of 0..255 pixel values

Several instances are a batch: at most settings.max_batch_images of them, each checked before
any is queued (an error names its instance), all queued in one MULTI/EXEC, each counted by the
rate limit (app/api/routes/kserve.py), the answers in instance order.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from redis import Redis
from rq import Queue

from app import submissions
from app.batches import check_many, naming
from app.uploads import check_batch_count, check_batch_size
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
POLL_S = 0.05
LOC = ["body", "instances"]


def instances(body: Any, settings: Settings) -> list[bytes]:
    """The image file bytes of each instance of a V1 request body (413 past the batch limits:
    settings.max_batch_images instances, max_upload_bytes each, max_batch_bytes together)."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object {"instances": [...]}')
    items = body.get("instances", body.get("inputs"))
    if not isinstance(items, list) or not items:
        raise BadRequest(
            '"instances" must be a non-empty list',
            errors=[{"loc": ["body", "instances"], "msg": "a non-empty list is required"}],
        )
    check_batch_count(len(items), settings.max_batch_images, loc=list(LOC), label="instance")
    images = [_instance(item, i) for i, item in enumerate(items)]
    check_batch_size(images, settings, loc=list(LOC), label="instance", index=str)
    return images


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


def at_instance(i: int) -> AbstractContextManager[None]:
    """An error about instance i names it (app/batches.py `naming`)."""
    return naming([*LOC, str(i)], f"instance {i}")


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
    submissions.ensure_room(queue, settings, adding=len(images))
    pending = []
    limit = math.ceil(settings.sync_timeout_s)
    # One MULTI/EXEC stores and queues every instance: all of them, or none.
    with redis.pipeline(transaction=True) as pipe:
        pipe.multi()  # explicit, as RQ expects of a pipeline it is handed
        for data in images:
            token = new_job_id()
            image_key = f"{settings.key_prefix}:predict:{token}:image"
            reply_key = f"{settings.key_prefix}:predict:{token}:reply"
            pipe.set(image_key, data, ex=limit + 120)
            queue.enqueue_call(
                PREDICT_FUNCTION,
                args=[image_key, reply_key, name],
                timeout=limit + 30,
                ttl=limit,  # not taken by then: the caller has its 504 already
                result_ttl=0,
                failure_ttl=3600,
                pipeline=pipe,
            )
            pending.append(reply_key)
        pipe.execute()
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
    """Submit one explanation job per image (cache and limits as POST /v1/batches: all
    checked, then all queued in one transaction) and wait for them all within
    settings.sync_timeout_s. `owner`: the caller's API key id."""
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidParams(
            '"parameters" must be an object of explainer params',
            errors=[{"loc": ["body", "parameters"], "msg": "must be a JSON object"}],
        )
    params = {**(parameters or {}), "model": name}
    checked = check_many(images, params, settings=settings, registry=registry, at=at_instance)
    queued = submissions.enqueue_many(
        checked, settings=settings, store=store, queue=queue, owner=owner
    )
    jobs = [job for job, _ in queued]
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
