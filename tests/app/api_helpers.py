"""Constants and small helpers of the API tests (imported by name: tests/app is on sys.path)."""

from __future__ import annotations

import base64
import json

import httpx
from services import BROKEN_MODEL, DEFAULT_MODEL, png_bytes

__all__ = ["BROKEN_MODEL", "DEFAULT_MODEL", "png_bytes"]

CAT = 285

# Small and quick: ~60 evaluations on about 20 superpixels.
FAST_PARAMS = {"num_samples": 60, "segmentation": {"algorithm": "slic", "n_segments": 20}}


def submit_multipart(client: httpx.Client, image: bytes, params: dict | None = None):
    data = {"params": json.dumps(params)} if params is not None else None
    return client.post(
        "/v1/explanations", files={"image": ("image.png", image, "image/png")}, data=data
    )


def submit_json(client: httpx.Client, image: bytes, params: dict | None = None):
    body: dict = {"image_b64": base64.b64encode(image).decode()}
    if params is not None:
        body["params"] = params
    return client.post("/v1/explanations", json=body)


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json", r.headers
    body = r.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["title"] and body["detail"]
    return body
