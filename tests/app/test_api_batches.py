"""POST/GET/DELETE /v1/batches end to end: the session's uvicorn, Redis and worker for the
batches that run, in-process app variants (their own queue and key prefix, no worker: what
they accept stays queued and is counted) for the refusals and limits."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from api_helpers import CAT, DEFAULT_MODEL, FAST_PARAMS, assert_problem, png_bytes, submit_multipart
from services import Api, RedisServer, wait_for_job, wait_until
from skimage import data as skdata

from app.batches import batch_status


def chelsea_like(chelsea: np.ndarray) -> list[bytes]:
    """Three different files of the same cat: the photo, mirrored, and at half size."""
    return [
        png_bytes(chelsea),
        png_bytes(np.ascontiguousarray(chelsea[:, ::-1])),
        png_bytes(np.ascontiguousarray(chelsea[::2, ::2])),
    ]


def noise(seed: int, height: int = 48, width: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def batch_multipart(client: httpx.Client, images: list[bytes], params: dict | None = None):
    files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    data = {"params": json.dumps(params)} if params is not None else None
    return client.post("/v1/batches", files=files, data=data)


def batch_json(client: httpx.Client, images: list[bytes], params: dict | None = None):
    body: dict = {"images_b64": [base64.b64encode(data).decode() for data in images]}
    if params is not None:
        body["params"] = params
    return client.post("/v1/batches", json=body)


def wait_for_batch(client: httpx.Client, batch_id: str, timeout: float = 120) -> dict:
    found: list[dict] = []

    def ended() -> bool:
        r = client.get(f"/v1/batches/{batch_id}")
        assert r.status_code == 200, r.text
        found[:] = [r.json()]
        return found[0]["status"] not in ("queued", "running")

    wait_until(ended, timeout=timeout, what=f"batch {batch_id}")
    return found[0]


@pytest.fixture
def variant(app_client) -> Callable[..., httpx.Client]:
    """`variant(**settings)`: an in-process API on a queue and key prefix of its own."""

    def make(**settings: object) -> httpx.Client:
        name = f"batch-{uuid.uuid4().hex[:8]}"
        client = app_client(queue_name=name, key_prefix=name, **settings)
        client.headers["x-test-prefix"] = name  # for `stored` below
        return client

    return make


def stored(redis_server: RedisServer, client: httpx.Client) -> tuple[int, int]:
    """(RQ's queue length, the count of the variant's keys but its /metrics counters) of a
    variant's client."""
    name = client.headers["x-test-prefix"]
    redis = redis_server.client
    keys = [k for k in redis.keys(f"{name}:*") if k != f"{name}:stats".encode()]
    return int(redis.llen(f"rq:queue:{name}")), len(keys)


# --- batches that run ---------------------------------------------------------------------------
def test_a_batch_of_three_runs_to_finished_with_a_result_per_job(
    client: httpx.Client, chelsea: np.ndarray
) -> None:
    images = chelsea_like(chelsea)
    r = batch_multipart(client, images, {**FAST_PARAMS, "seed": 41})
    assert r.status_code == 202, r.text
    batch = r.json()
    assert r.headers["location"] == f"/v1/batches/{batch['id']}"
    assert set(batch) == {"id", "created_at", "status", "counts", "progress", "jobs"}
    assert len(batch["id"]) == 32 and batch["created_at"].endswith("Z")
    assert batch["status"] in ("queued", "running")
    assert sum(batch["counts"].values()) == 3 and len({j["id"] for j in batch["jobs"]}) == 3
    assert batch["progress"]["total"] == sum(j["progress"]["total"] for j in batch["jobs"]) > 0

    done = wait_for_batch(client, batch["id"])
    assert done["status"] == "finished", done
    assert done["counts"] == {"queued": 0, "running": 0, "finished": 3, "failed": 0, "canceled": 0}
    assert [j["id"] for j in done["jobs"]] == [j["id"] for j in batch["jobs"]]
    assert done["progress"]["done"] == done["progress"]["total"] > 0
    for data, entry in zip(images, done["jobs"], strict=True):  # in submission order
        job = client.get(f"/v1/explanations/{entry['id']}").json()
        assert job["status"] == "finished" and job["params"]["seed"] == 41
        result = job["result"]
        assert result["image"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert result["predictions"][0]["class_index"] == CAT
        assert entry["progress"] == job["progress"]
        overlay = client.get(f"/v1/explanations/{entry['id']}/overlay.png")
        assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")
    assert client.delete(f"/v1/batches/{batch['id']}").status_code == 204


def test_a_json_batch_and_its_cache(client: httpx.Client, small_png: bytes) -> None:
    params = {**FAST_PARAMS, "seed": 42}
    other = noise(42)
    r = batch_json(client, [small_png, other, small_png], params)
    assert r.status_code == 202, r.text
    jobs = [j["id"] for j in r.json()["jobs"]]
    assert jobs[0] == jobs[2] != jobs[1]  # identical images of one batch share a job
    done = wait_for_batch(client, r.json()["id"])
    assert done["status"] == "finished" and done["counts"]["finished"] == 3
    # A single submission of the same image and params is answered by the batch's job,
    # and a second batch by both of its jobs.
    again = submit_multipart(client, other, params)
    assert again.status_code == 200 and again.json()["id"] == jobs[1]
    second = batch_json(client, [other, small_png], params)
    assert second.status_code == 202 and [j["id"] for j in second.json()["jobs"]] == jobs[1::-1]
    assert second.json()["status"] == "finished"


def test_delete_cancels_a_running_batch_and_deletes_every_job(
    client: httpx.Client, chelsea_png: bytes, small_png: bytes, redis_server: RedisServer
) -> None:
    long = {"num_samples": 100_000, "segmentation": {"algorithm": "grid", "cell_size": 64}}
    mirrored = png_bytes(np.ascontiguousarray(skdata.chelsea()[:, ::-1]))
    r = batch_json(client, [chelsea_png, mirrored], {**long, "cache": False})
    assert r.status_code == 202, r.text
    batch_id, (first, second) = r.json()["id"], [j["id"] for j in r.json()["jobs"]]

    def first_running() -> bool:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        return batch["jobs"][0]["status"] == "running" and batch["progress"]["done"] > 0

    wait_until(first_running, timeout=60, what="the batch's first job to run")
    assert client.get(f"/v1/batches/{batch_id}").json()["status"] == "running"
    assert client.delete(f"/v1/batches/{batch_id}").status_code == 204
    assert_problem(client.get(f"/v1/batches/{batch_id}"), 404)
    assert_problem(client.delete(f"/v1/batches/{batch_id}"), 404)
    for job_id in (first, second):
        assert_problem(client.get(f"/v1/explanations/{job_id}"), 404)
    assert redis_server.client.exists(f"rq:job:{second}") == 0
    assert second.encode() not in redis_server.client.lrange("rq:queue:glimpse", 0, -1)
    # The worker drops the running job at its next batch and takes the next submission.
    after = submit_multipart(client, small_png, {**FAST_PARAMS, "cache": False}).json()["id"]
    assert wait_for_job(client, after, timeout=30)["status"] == "finished"
    for job_id in (first, second):
        assert redis_server.client.keys(f"glimpse:job:{job_id}*") == []
    assert redis_server.client.exists(f"glimpse:batch:{batch_id}") == 0


def test_reading_a_batch_is_one_round_trip(
    variant, redis_server: RedisServer, small_png: bytes
) -> None:
    api = variant()
    r = batch_json(api, [small_png, noise(1), noise(2), noise(3)], FAST_PARAMS)
    assert r.status_code == 202, r.text
    url = f"/v1/batches/{r.json()['id']}"
    api.get(url)  # Redis has the script loaded
    answers: list[httpx.Response] = []
    sent = redis_server.commands_during(lambda: answers.append(api.get(url)))
    assert answers[0].status_code == 200 and answers[0].json()["status"] == "queued"
    assert [c["command"].split()[0] for c in sent if c["client_type"] == "tcp"] == ["EVALSHA"]


def test_a_batch_is_stored_and_queued_in_one_transaction(
    variant, redis_server: RedisServer, small_png: bytes
) -> None:
    api = variant()
    answers: list[httpx.Response] = []
    images = [small_png, noise(4), noise(5)]
    sent = redis_server.commands_during(lambda: answers.append(batch_json(api, images)))
    assert answers[0].status_code == 202, answers[0].text
    words = Counter(c["command"].split()[0] for c in sent if c["client_type"] == "tcp")
    assert words["MULTI"] == 1 and words["EXEC"] == 1
    assert stored(redis_server, api)[0] == 3
    assert api.delete(answers[0].headers["location"]).status_code == 204
    assert stored(redis_server, api) == (0, 0)


# --- refusals: nothing queued ---------------------------------------------------------------------
@pytest.fixture
def unchanged(redis_server: RedisServer) -> Iterator[Callable[[httpx.Client], None]]:
    """`unchanged(client)`: the variant's queue and keys are as before the test's requests."""
    seen: dict[str, tuple[int, int]] = {}

    def check(client: httpx.Client) -> None:
        now = stored(redis_server, client)
        assert seen.setdefault(client.headers["x-test-prefix"], now) == now

    yield check


@pytest.mark.parametrize("submit", [batch_multipart, batch_json])
def test_one_bad_image_refuses_the_batch_naming_it(
    variant, unchanged, submit, small_png: bytes
) -> None:
    api = variant()
    unchanged(api)
    ok = [small_png, noise(6), noise(7)]
    problem = assert_problem(submit(api, [*ok, b"GIF89a not an image"], FAST_PARAMS), 415)
    assert problem["errors"][0]["loc"] == ["body", "images", 3]
    assert problem["detail"].startswith("image 3: ")
    problem = assert_problem(submit(api, [ok[0], noise(8, 1, 1), *ok[1:]], FAST_PARAMS), 422)
    assert problem["errors"][0]["loc"] == ["body", "images", 1]
    assert problem["detail"].startswith("image 1: ") and "1x1 pixels" in problem["detail"]
    # a param that does not fit one image: the param's loc, the detail names the image
    grid = {**FAST_PARAMS, "segmentation": {"algorithm": "grid", "cell_size": 64}}
    problem = assert_problem(submit(api, [noise(8, 300, 400), ok[0]], grid), 422)
    assert problem["errors"][0]["loc"] == ["params", "segmentation", "cell_size"]
    assert problem["detail"].startswith("image 1: ")
    # an empty file part is not an image; an empty string is no base64 (as for one image)
    empty = (415, ["body", "images", 3]) if submit is batch_multipart else (400, None)
    problem = assert_problem(submit(api, [*ok, b""], FAST_PARAMS), empty[0])
    assert problem["errors"][0]["loc"] == (empty[1] or ["body", "images_b64", 3])
    # params are everyone's: their error is the single submission's
    problem = assert_problem(submit(api, ok, {"num_samples": 1}), 422)
    assert problem["errors"][0]["loc"] == ["params", "num_samples"]
    unchanged(api)


def test_malformed_batch_bodies_are_400(variant, unchanged, small_png: bytes) -> None:
    api = variant()
    unchanged(api)
    b64 = base64.b64encode(small_png).decode()
    for body, loc in (
        ({"images_b64": [b64, "%%% not base64"]}, ["body", "images_b64", 1]),
        ({"images_b64": [b64, 7]}, ["body", "images_b64", 1]),
        ({"images_b64": []}, ["body", "images_b64"]),
        ({"image_b64": b64}, ["body", "image_b64"]),
    ):
        assert assert_problem(api.post("/v1/batches", json=body), 400)["errors"][0]["loc"] == loc
    r = api.post("/v1/batches", files=[("params", (None, "{}"))])
    assert assert_problem(r, 400)["errors"][0]["loc"] == ["body", "images"]
    r = api.post("/v1/batches", files=[("image", (None, "not a file part"))])
    assert assert_problem(r, 400)["errors"][0]["loc"] == ["body", "images", 0]
    assert_problem(
        api.post("/v1/batches", content=b"x", headers={"content-type": "text/plain"}), 415
    )
    unchanged(api)


def test_too_many_images_or_bytes_are_413_with_the_limit(
    variant, unchanged, small_png: bytes
) -> None:
    api = variant(max_batch_images=2, max_batch_bytes=3 * len(small_png))
    unchanged(api)
    images = [small_png, noise(9), noise(10)]
    for submit in (batch_multipart, batch_json):
        problem = assert_problem(submit(api, images, FAST_PARAMS), 413)
        assert problem["detail"] == "3 images in one request; the limit is 2"
        assert problem["errors"] == [{"loc": ["body", "images"], "msg": "at most 2 images"}]
    problem = assert_problem(batch_multipart(api, [small_png] * 6), 413)  # the parser's refusal
    assert problem["errors"][0]["loc"] == ["body", "images"]
    assert "the limit is 2" in problem["detail"]
    big = noise(11, 96, 128)
    problem = assert_problem(batch_json(api, [small_png, big]), 413)
    assert "bytes together; the limit is" in problem["detail"]
    unchanged(api)


def test_a_batch_the_queue_cannot_hold_is_503_and_nothing_is_queued(
    variant, redis_server: RedisServer, small_png: bytes
) -> None:
    api = variant(max_queue_length=3)
    assert batch_json(api, [small_png, noise(12)], FAST_PARAMS).status_code == 202
    before = stored(redis_server, api)
    r = batch_json(api, [noise(13), noise(14)], FAST_PARAMS)
    problem = assert_problem(r, 503)
    assert int(r.headers["retry-after"]) > 0
    assert "room for 1 more jobs, not the 2" in problem["detail"]
    assert stored(redis_server, api) == before
    # images the cache answers need no room: the first batch again, and one new image
    assert batch_json(api, [small_png, noise(12), noise(13)], FAST_PARAMS).status_code == 202
    assert stored(redis_server, api)[0] == 3


def test_the_rate_limit_counts_images(variant, small_png: bytes) -> None:
    api = variant(rate_limit_per_minute=5, sync_timeout_s=0.3)
    assert batch_json(api, [small_png, noise(15), noise(16)], FAST_PARAMS).status_code == 202
    r = batch_json(api, [noise(17), noise(18), noise(19)], FAST_PARAMS)
    problem = assert_problem(r, 429)
    assert 0 < int(r.headers["retry-after"]) <= 60
    assert "5 submissions per minute" in problem["detail"] and "these 3 fit" in problem["detail"]
    # the refusal counted nothing: two more fit, then not one
    assert batch_multipart(api, [noise(20), noise(21)], FAST_PARAMS).status_code == 202
    assert_problem(submit_multipart(api, noise(22), FAST_PARAMS), 429)
    # more images than the limit itself can never fit: 413, not a 429 to retry
    api = variant(rate_limit_per_minute=2, sync_timeout_s=0.3)
    problem = assert_problem(batch_json(api, [small_png, noise(23), noise(24)]), 413)
    assert "send them in requests of at most 2" in problem["detail"]
    # KServe counts its instances: 2 (its 504: no worker here), then 2 more do not fit
    b64 = base64.b64encode(small_png).decode()
    two = {"instances": [b64, b64], "parameters": FAST_PARAMS}
    assert_problem(api.post(f"/v1/models/{DEFAULT_MODEL}:predict", json=two), 504)
    assert_problem(api.post(f"/v1/models/{DEFAULT_MODEL}:explain", json=two), 429)


# --- ownership ------------------------------------------------------------------------------------
def test_another_key_cannot_read_or_delete_a_batch(
    keyed_api: Api, worker, api_keys: tuple[str, str], small_png: bytes
) -> None:
    a, b = ({"Authorization": f"Bearer {key}"} for key in api_keys)
    with httpx.Client(base_url=keyed_api.url, timeout=30) as http:
        r = http.post(
            "/v1/batches",
            headers=a,
            json={"images_b64": [base64.b64encode(small_png).decode()], "params": FAST_PARAMS},
        )
        assert r.status_code == 202, r.text
        url, job_id = r.headers["location"], r.json()["jobs"][0]["id"]
        unknown = f"/v1/batches/{'0' * 32}"
        theirs, none = (
            assert_problem(http.get(url, headers=b), 404),
            assert_problem(http.get(unknown, headers=b), 404),
        )
        assert theirs["detail"] == none["detail"].replace("0" * 32, url.rsplit("/", 1)[1])
        assert_problem(http.delete(url, headers=b), 404)
        assert_problem(http.get(f"/v1/explanations/{job_id}", headers=b), 404)
        assert_problem(http.get(url), 401)
        assert http.get(url, headers=a).status_code == 200
        assert http.delete(url, headers=a).status_code == 204
        assert_problem(http.get(f"/v1/explanations/{job_id}", headers=a), 404)


def test_unknown_batches_are_404(client: httpx.Client) -> None:
    for batch_id in ("0" * 32, "not-a-batch-id"):
        assert_problem(client.get(f"/v1/batches/{batch_id}"), 404)
        assert_problem(client.delete(f"/v1/batches/{batch_id}"), 404)


# --- the status -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ("queued queued", "queued"),
        ("queued running", "running"),
        ("queued finished", "running"),
        ("failed running", "running"),
        ("finished finished", "finished"),
        ("finished failed", "partial"),
        ("finished canceled", "partial"),
        ("failed canceled", "failed"),
        ("canceled canceled", "canceled"),
    ],
)
def test_the_batch_status(statuses: str, expected: str) -> None:
    counts = Counter(dict.fromkeys(("queued", "running", "finished", "failed", "canceled"), 0))
    counts.update(statuses.split())
    assert batch_status(counts) == expected
