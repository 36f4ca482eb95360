"""Reading a submission: the body is streamed with a byte limit, then split into the image
bytes and the raw `params` object (multipart/form-data or JSON with base64). A batch is read
the same way, with several images (`read_batch`)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from glimpse.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from glimpse.settings import Settings

#: Room for multipart headers, boundaries and the `params` part on top of the image.
ENVELOPE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Submission:
    image: bytes
    params: Any  # the raw params object (dict or None), validated later


@dataclass(frozen=True)
class BatchSubmission:
    images: list[bytes]  # in submission order
    params: Any  # the raw params object of every image (dict or None), validated later


def body_limit(content_type: str, max_upload_bytes: int) -> int:
    if content_type == "application/json":
        return (max_upload_bytes + 2) // 3 * 4 + ENVELOPE_BYTES
    return max_upload_bytes + ENVELOPE_BYTES


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) a declared or streamed size above `limit`.

    The body is kept on the request, so `request.form()` parses it without reading again.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if size > limit:
            raise PayloadTooLarge(f"the request body is {size} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # noqa: SLF001 - starlette's own cache of the body
    return body


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_submission(request: Request, max_upload_bytes: int) -> Submission:
    kind = media_type(request)
    if kind == "multipart/form-data":
        await read_body(request, body_limit(kind, max_upload_bytes))
        submission = await _from_multipart(request)
    elif kind == "application/json" or kind.endswith("+json"):
        body = await read_body(request, body_limit("application/json", max_upload_bytes))
        submission = _from_json(body)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not accepted; send multipart/form-data "
            "with an `image` part, or application/json with `image_b64`"
        )
    if len(submission.image) > max_upload_bytes:
        raise PayloadTooLarge(
            f"the image is {len(submission.image)} bytes; the limit is {max_upload_bytes}"
        )
    return submission


async def _from_multipart(request: Request) -> Submission:
    form = await request.form(max_files=2, max_fields=10, max_part_size=ENVELOPE_BYTES)
    try:
        _only_known_parts(form, "`image`")
        for name in ("image", "params"):
            if (count := len(form.getlist(name))) > 1:
                several = " (several images: POST them to /v1/batches)" if name == "image" else ""
                raise BadRequest(
                    f"the multipart body has {count} `{name}` parts; send one{several}",
                    errors=[{"loc": ["body", name], "msg": f"{count} parts, expected one"}],
                )
        image = form.get("image")
        if image is None:
            raise BadRequest(
                "the multipart body has no `image` part",
                errors=[{"loc": ["body", "image"], "msg": "field required"}],
            )
        if not isinstance(image, UploadFile):
            raise BadRequest(
                "the `image` part must be a file (a part with a filename)",
                errors=[{"loc": ["body", "image"], "msg": "must be a file part"}],
            )
        data = await image.read()
        return Submission(image=data, params=await _params_part(form))
    finally:
        await form.close()


async def _params_part(form: FormData) -> Any:
    """The `params` part's JSON object, or None where there is no such part."""
    raw = form.get("params")
    if isinstance(raw, UploadFile):
        raw = (await raw.read()).decode("utf-8", errors="replace")
    if raw is None:
        return None
    if not raw.strip():
        raise BadRequest(
            "the `params` part is empty; send a JSON object, or leave the part out for every "
            "default",
            errors=[{"loc": ["body", "params"], "msg": "empty part"}],
        )
    return loads_json(raw, loc=["body", "params"], what="the `params` part")


def _json_object(body: bytes, field: str) -> dict[str, Any]:
    """The JSON body: an object of `field` (the image or images) and optionally `params`."""
    doc = loads_json(body, loc=["body"], what="the body")
    if not isinstance(doc, dict):
        raise BadRequest(
            f'the JSON body must be an object {{"{field}", "params"}}',
            errors=[{"loc": ["body"], "msg": "must be a JSON object"}],
        )
    unknown = sorted(set(doc) - {field, "params"})
    if unknown:
        raise BadRequest(
            f"unknown field {unknown[0]!r}; send `{field}` and optionally `params`",
            errors=[{"loc": ["body", k], "msg": "unknown field"} for k in unknown],
        )
    return doc


def _only_known_parts(form: FormData, send: str) -> None:
    """400 for a multipart part other than `image` and `params`; `send`: what to send."""
    unknown = sorted(set(form.keys()) - {"image", "params"})
    if unknown:
        raise BadRequest(
            f"unknown form part {unknown[0]!r}; send {send} and optionally `params`",
            errors=[{"loc": ["body", k], "msg": "unknown form part"} for k in unknown],
        )


def _from_json(body: bytes) -> Submission:
    doc = _json_object(body, "image_b64")
    data = _b64_image(doc.get("image_b64"), loc=["body", "image_b64"], name="`image_b64`")
    return Submission(image=data, params=doc.get("params"))


def _b64_image(value: Any, *, loc: list[str | int], name: str) -> bytes:
    """The file bytes of a base64 string (or data: URL) at `loc`; 400 for anything else."""
    if not isinstance(value, str) or not value:
        raise BadRequest(
            f"{name} is required: the base64 of the image file",
            errors=[{"loc": loc, "msg": "field required (a base64 string)"}],
        )
    if value.startswith("data:") and "," in value:  # a data: URL
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            f"{name} is not valid base64", errors=[{"loc": loc, "msg": "not valid base64"}]
        ) from None


# --- batches ----------------------------------------------------------------------------------
async def read_batch(request: Request, settings: Settings) -> BatchSubmission:
    """A batch: multipart/form-data with one `image` part per image (and one optional
    `params`), or JSON `{"images_b64": [...], "params": {...}}`; at most max_batch_images
    images, each within max_upload_bytes, max_batch_bytes together."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        await read_body(request, body_limit(kind, settings.max_batch_bytes))
        batch = await _batch_from_multipart(request, settings.max_batch_images)
    elif kind == "application/json" or kind.endswith("+json"):
        body = await read_body(request, body_limit("application/json", settings.max_batch_bytes))
        batch = _batch_from_json(body, settings.max_batch_images)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not accepted; send multipart/form-data "
            "with `image` parts, or application/json with `images_b64`"
        )
    check_batch_size(batch.images, settings, loc=["body", "images"], label="image")
    return batch


def check_batch_size(
    images: Sequence[bytes],
    settings: Settings,
    *,
    loc: list[str | int],
    label: str,
    index: Callable[[int], str | int] = int,
) -> None:
    """413 for more than max_batch_images images, an image over max_upload_bytes (at `loc` +
    its index), or more than max_batch_bytes of them together."""
    check_batch_count(len(images), settings.max_batch_images, loc=loc, label=label)
    for i, data in enumerate(images):
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"{label} {i} is {len(data)} bytes; the limit is {settings.max_upload_bytes}",
                errors=[{"loc": [*loc, index(i)], "msg": "too many bytes"}],
            )
    total = sum(len(data) for data in images)
    if total > settings.max_batch_bytes:
        raise PayloadTooLarge(
            f"the {label}s are {total} bytes together; the limit is {settings.max_batch_bytes}",
            errors=[{"loc": loc, "msg": "too many bytes together"}],
        )


def check_batch_count(count: int, limit: int, *, loc: list[str | int], label: str) -> None:
    if count > limit:
        raise PayloadTooLarge(
            f"{count} {label}s in one request; the limit is {limit}",
            errors=[{"loc": loc, "msg": f"at most {limit} {label}s"}],
        )


async def _batch_from_multipart(request: Request, max_images: int) -> BatchSubmission:
    try:  # a `params` file part may be one file more
        form = await request.form(
            max_files=max_images + 1, max_fields=10, max_part_size=ENVELOPE_BYTES
        )
    except StarletteHTTPException as exc:  # starlette's 400: the same 413 as a counted batch
        if exc.status_code == 400 and str(exc.detail).startswith("Too many files"):
            raise PayloadTooLarge(
                f"more than {max_images} images in one request; the limit is {max_images}",
                errors=[{"loc": ["body", "images"], "msg": f"at most {max_images} images"}],
            ) from None
        raise
    try:
        _only_known_parts(form, "`image` parts")
        if (count := len(form.getlist("params"))) > 1:
            raise BadRequest(
                f"the multipart body has {count} `params` parts; send one, for every image",
                errors=[{"loc": ["body", "params"], "msg": f"{count} parts, expected one"}],
            )
        parts = form.getlist("image")
        if not parts:
            raise BadRequest(
                "the multipart body has no `image` part; send one per image",
                errors=[{"loc": ["body", "images"], "msg": "field required"}],
            )
        check_batch_count(len(parts), max_images, loc=["body", "images"], label="image")
        images = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise BadRequest(
                    f"image part {i} must be a file (a part with a filename)",
                    errors=[{"loc": ["body", "images", i], "msg": "must be a file part"}],
                )
            images.append(await part.read())
        return BatchSubmission(images=images, params=await _params_part(form))
    finally:
        await form.close()


def _batch_from_json(body: bytes, max_images: int) -> BatchSubmission:
    doc = _json_object(body, "images_b64")
    items = doc.get("images_b64")
    if not isinstance(items, list) or not items:
        raise BadRequest(
            "`images_b64` is required: a non-empty list of the base64 of each image file",
            errors=[{"loc": ["body", "images_b64"], "msg": "a non-empty list is required"}],
        )
    check_batch_count(len(items), max_images, loc=["body", "images"], label="image")
    images = [
        _b64_image(item, loc=["body", "images_b64", i], name=f"`images_b64[{i}]`")
        for i, item in enumerate(items)
    ]
    return BatchSubmission(images=images, params=doc.get("params"))


def loads_json(text: str | bytes, *, loc: list[str], what: str) -> Any:
    """Strict JSON of a client: 400 for anything json.loads refuses or chokes on.

    Beyond broken syntax and bytes that are not UTF-8: nesting deeper than the interpreter's
    recursion limit (RecursionError), integers of more than 4300 digits (ValueError), and the
    NaN/Infinity literals and overflowing numbers (1e400) that Python accepts but JSON does not.
    """
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadRequest(
            f"{what} is nested too deeply to be read",
            errors=[{"loc": loc, "msg": "JSON nested too deeply"}],
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(
            f"{what} is not valid JSON: {exc}", errors=[{"loc": loc, "msg": "invalid JSON"}]
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value
