"""Every 4xx/503 of the contract, each provoked by a malformed request of its kind; all are
problem+json. The live API (uvicorn) where the default settings do, in-process app variants
(real Redis) where a test needs other limits."""

from __future__ import annotations

import base64
import io
import json
import struct
import uuid
import zlib

import httpx
import numpy as np
import pytest
from api_helpers import FAST_PARAMS, assert_problem, submit_json, submit_multipart
from PIL import Image
from services import Api, free_port


@pytest.fixture(scope="module")
def live(api: Api) -> httpx.Client:
    """The live API; these tests never need a worker."""
    return api.client


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (its pixel data is a stub)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- 400 -------------------------------------------------------------------------------------
def test_400_broken_json_body(live: httpx.Client) -> None:
    r = live.post(
        "/v1/explanations", content=b'{"image_b64": ', headers={"content-type": "application/json"}
    )
    body = assert_problem(r, 400)
    assert body["errors"][0]["loc"] == ["body"]


def test_400_json_body_that_is_not_an_object(live: httpx.Client) -> None:
    assert_problem(live.post("/v1/explanations", json=["x"]), 400)


def test_400_bad_base64(live: httpx.Client) -> None:
    body = assert_problem(live.post("/v1/explanations", json={"image_b64": "not base64!!"}), 400)
    assert body["errors"][0]["loc"] == ["body", "image_b64"]


def test_400_json_without_image(live: httpx.Client) -> None:
    body = assert_problem(live.post("/v1/explanations", json={"params": {}}), 400)
    assert body["errors"][0]["loc"] == ["body", "image_b64"]


def test_400_json_with_unknown_field(live: httpx.Client, small_png: bytes) -> None:
    image_b64 = base64.b64encode(small_png).decode()
    r = live.post("/v1/explanations", json={"image_b64": image_b64, "x": 1})
    assert assert_problem(r, 400)["errors"][0]["loc"] == ["body", "x"]


def test_400_multipart_without_image_part(live: httpx.Client) -> None:
    r = live.post("/v1/explanations", files={"params": (None, json.dumps(FAST_PARAMS))})
    body = assert_problem(r, 400)
    assert body["errors"][0]["loc"] == ["body", "image"]


def test_400_multipart_params_not_json(live: httpx.Client, small_png: bytes) -> None:
    r = live.post(
        "/v1/explanations",
        files={"image": ("a.png", small_png, "image/png")},
        data={"params": "{num_samples: 5"},
    )
    assert assert_problem(r, 400)["errors"][0]["loc"] == ["body", "params"]


@pytest.mark.parametrize("text", ["", "  \n"])
def test_400_multipart_params_part_that_is_empty(
    live: httpx.Client, small_png: bytes, text: str
) -> None:
    """A `params` part must hold a JSON object; for the defaults the part is left out."""
    r = live.post(
        "/v1/explanations",
        files={"image": ("a.png", small_png, "image/png"), "params": (None, text)},
    )
    body = assert_problem(r, 400)
    assert body["errors"][0]["loc"] == ["body", "params"] and "empty" in body["detail"]


def test_400_two_image_parts_name_the_part(live: httpx.Client, small_png: bytes) -> None:
    """Two `image` parts used to be accepted, the last one explained: which one the client
    meant cannot be known."""
    r = live.post(
        "/v1/explanations",
        files=[
            ("image", ("a.png", small_png, "image/png")),
            ("image", ("b.png", small_png, "image/png")),
        ],
    )
    body = assert_problem(r, 400)
    assert body["errors"][0]["loc"] == ["body", "image"] and "2 `image` parts" in body["detail"]


def test_400_broken_multipart(live: httpx.Client) -> None:
    r = live.post(
        "/v1/explanations",
        content=b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n',
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"


# --- 413 -------------------------------------------------------------------------------------
def test_413_declared_content_length(app_client, small_png: bytes) -> None:
    client = app_client(max_upload_bytes=1000)
    body = assert_problem(submit_multipart(client, small_png, FAST_PARAMS), 413)
    assert "limit" in body["detail"]


def test_413_streamed_body_without_content_length(app_client, small_png: bytes) -> None:
    client = app_client(max_upload_bytes=1000)
    payload = json.dumps({"image_b64": base64.b64encode(small_png * 4).decode()}).encode()

    def chunks():
        for i in range(0, len(payload), 500):
            yield payload[i : i + 500]

    r = client.post(
        "/v1/explanations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_problem(r, 413)


def test_413_image_bytes_over_the_limit_inside_the_envelope(app_client, small_png: bytes) -> None:
    client = app_client(max_upload_bytes=len(small_png) - 1)
    assert_problem(submit_json(client, small_png, FAST_PARAMS), 413)


def test_413_too_many_pixels(app_client, small_png: bytes) -> None:
    client = app_client(max_image_pixels=1000)
    assert "pixels" in assert_problem(submit_multipart(client, small_png), 413)["detail"]


def test_413_header_declaring_huge_dimensions(live: httpx.Client) -> None:
    body = assert_problem(submit_multipart(live, huge_png_header(100_000, 100_000)), 413)
    assert "pixels" in body["detail"]


# --- 415 -------------------------------------------------------------------------------------
def test_415_garbage_bytes(live: httpx.Client) -> None:
    assert_problem(submit_multipart(live, b"\x00\x01 definitely not an image" * 10), 415)
    assert_problem(submit_json(live, b"GARBAGE" * 10), 415)


def test_415_gif(live: httpx.Client) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="GIF")
    assert "GIF" in assert_problem(submit_multipart(live, buf.getvalue()), 415)["detail"]


def test_415_empty_image(live: httpx.Client) -> None:
    assert_problem(submit_multipart(live, b""), 415)


def test_415_unsupported_media_type(live: httpx.Client, small_png: bytes) -> None:
    r = live.post("/v1/explanations", content=small_png, headers={"content-type": "image/png"})
    assert_problem(r, 415)
    assert_problem(live.post("/v1/explanations", content=b"x"), 415)


# --- 422 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"bogus": 1}, ["params", "bogus"]),
        ({"num_samples": 5}, ["params", "num_samples"]),
        ({"num_samples": 100_001}, ["params", "num_samples"]),
        ({"method": "magic"}, ["params", "method"]),
        ({"model": "no-such-model"}, ["params", "model"]),
        ({"model": "../etc"}, ["params", "model"]),
        ({"targets": {"classes": [1000]}}, ["params", "targets", "classes"]),
        (
            {"segmentation": {"algorithm": "slic", "n_segments": 1}},
            ["params", "segmentation", "slic", "n_segments"],
        ),
        ([1, 2], ["params"]),
    ],
)
def test_422_invalid_params(live: httpx.Client, small_png: bytes, params, loc) -> None:
    for submit in (submit_multipart, submit_json):
        body = assert_problem(submit(live, small_png, params), 422)
        assert body["errors"][0]["loc"] == loc, body
        assert body["errors"][0]["msg"]


def test_422_params_are_checked_before_the_image(live: httpx.Client) -> None:
    assert_problem(submit_multipart(live, b"garbage", {"bogus": 1}), 422)


# --- 404 / 405 -------------------------------------------------------------------------------
def test_404_unknown_route_and_405_wrong_method(live: httpx.Client) -> None:
    assert_problem(live.get("/v2/nothing"), 404)
    assert_problem(live.put("/v1/explanations"), 405)
    assert_problem(live.post("/v1/models"), 405)


# --- 503 -------------------------------------------------------------------------------------
def test_503_when_the_queue_is_full(app_client, small_png: bytes) -> None:
    queue = f"full-{uuid.uuid4().hex[:8]}"
    client = app_client(max_queue_length=1, queue_name=queue, key_prefix=queue, retry_after_s=7)
    assert submit_multipart(client, small_png, FAST_PARAMS).status_code == 202
    r = submit_multipart(client, small_png, {**FAST_PARAMS, "cache": False})
    assert_problem(r, 503)
    assert r.headers["retry-after"] == "7"
    # A cache hit needs no room in the queue.
    assert submit_multipart(client, small_png, FAST_PARAMS).status_code == 200


def test_503_when_redis_is_unreachable(app_client, small_png: bytes) -> None:
    client = app_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", retry_after_s=3)
    for r in (
        submit_multipart(client, small_png, FAST_PARAMS),
        client.get(f"/v1/explanations/{'a' * 32}"),
        client.delete(f"/v1/explanations/{'a' * 32}"),
    ):
        assert_problem(r, 503)
        assert r.headers["retry-after"] == "3"
    r = client.get("/readyz")
    assert r.status_code == 503 and "unreachable" in r.json()["checks"]["redis"]
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "glimpse_redis_up 0.0" in metrics.text
