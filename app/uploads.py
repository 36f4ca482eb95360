"""Reading a submission: the body is streamed with a byte limit, then split into the image
bytes and the raw `params` object (multipart/form-data or JSON with base64)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from glimpse.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

#: Room for multipart headers, boundaries and the `params` part on top of the image.
ENVELOPE_BYTES = 256 * 1024
JSON_FIELDS = frozenset({"image_b64", "params"})


@dataclass(frozen=True)
class Submission:
    image: bytes
    params: Any  # the raw params object (dict or None), validated later


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
        unknown = sorted(set(form.keys()) - {"image", "params"})
        if unknown:
            raise BadRequest(
                f"unknown form part {unknown[0]!r}; send `image` and optionally `params`",
                errors=[{"loc": ["body", k], "msg": "unknown form part"} for k in unknown],
            )
        for name in ("image", "params"):
            if (count := len(form.getlist(name))) > 1:
                raise BadRequest(
                    f"the multipart body has {count} `{name}` parts; send one",
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
        raw = form.get("params")
        params: Any = None
        if isinstance(raw, UploadFile):
            raw = (await raw.read()).decode("utf-8", errors="replace")
        if raw is not None:
            if not raw.strip():
                raise BadRequest(
                    "the `params` part is empty; send a JSON object, or leave the part out "
                    "for every default",
                    errors=[{"loc": ["body", "params"], "msg": "empty part"}],
                )
            params = loads_json(raw, loc=["body", "params"], what="the `params` part")
        return Submission(image=data, params=params)
    finally:
        await form.close()


def _from_json(body: bytes) -> Submission:
    doc = loads_json(body, loc=["body"], what="the body")
    if not isinstance(doc, dict):
        raise BadRequest(
            'the JSON body must be an object {"image_b64", "params"}',
            errors=[{"loc": ["body"], "msg": "must be a JSON object"}],
        )
    unknown = sorted(set(doc) - JSON_FIELDS)
    if unknown:
        raise BadRequest(
            f"unknown field {unknown[0]!r}; send `image_b64` and optionally `params`",
            errors=[{"loc": ["body", k], "msg": "unknown field"} for k in unknown],
        )
    b64 = doc.get("image_b64")
    if not isinstance(b64, str) or not b64:
        raise BadRequest(
            "`image_b64` is required: the base64 of the image file",
            errors=[{"loc": ["body", "image_b64"], "msg": "field required (a base64 string)"}],
        )
    if b64.startswith("data:") and "," in b64:  # a data: URL
        b64 = b64.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            "`image_b64` is not valid base64",
            errors=[{"loc": ["body", "image_b64"], "msg": "not valid base64"}],
        ) from None
    return Submission(image=data, params=doc.get("params"))


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
