"""API keys, job ownership and the submission rate limit, end to end: a uvicorn with two keys
configured (by digest, as GLIMPSE_API_KEY_HASHES), the session's Redis and worker."""

from __future__ import annotations

import base64
import re
import uuid

import httpx
import pytest
from api_helpers import DEFAULT_MODEL, FAST_PARAMS, assert_problem, submit_multipart
from redis import Redis
from services import Api, RedisServer, wait_for_job

from glimpse.keys import hash_key, key_id
from glimpse.store import is_job_id, new_job_id

ARTIFACTS = ("segments.png", "attribution.npy", "overlay.png", "figure.png", "hierarchy.npy")


def keyed_client(api: Api, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=30, headers=headers)


@pytest.fixture(scope="module")
def clients(keyed_api: Api, worker, api_keys: tuple[str, str]):
    """(anonymous, key A as a bearer token, key B as X-API-Key)."""
    a, b = api_keys
    with (
        keyed_client(keyed_api) as anonymous,
        keyed_client(keyed_api, Authorization=f"Bearer {a}") as client_a,
        keyed_client(keyed_api, **{"X-API-Key": b}) as client_b,
    ):
        yield anonymous, client_a, client_b


@pytest.fixture(scope="module")
def job_of_a(clients, chelsea_png: bytes) -> dict:
    _, client_a, _ = clients
    r = submit_multipart(client_a, chelsea_png, {**FAST_PARAMS, "seed": 31})
    assert r.status_code in (200, 202), r.text
    job = wait_for_job(client_a, r.json()["id"])
    assert job["status"] == "finished", job
    return job


def test_job_ids_carry_128_random_bits() -> None:
    ids = {new_job_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 32 and is_job_id(i) for i in ids)
    # every hex digit position varies: no fixed prefix, counter or timestamp
    for position in range(32):
        assert len({i[position] for i in ids}) == 16


def test_without_a_key_or_with_a_wrong_one_the_v1_routes_answer_401(
    clients, keyed_api: Api, small_png: bytes
) -> None:
    anonymous, _, _ = clients
    job_path = f"/v1/explanations/{'a' * 32}"
    requests = [
        ("GET", "/v1/models", None),
        ("GET", f"/v1/models/{DEFAULT_MODEL}", None),
        ("POST", f"/v1/models/{DEFAULT_MODEL}:predict", {"instances": []}),
        ("POST", f"/v1/models/{DEFAULT_MODEL}:explain", {"instances": []}),
        ("GET", job_path, None),
        ("DELETE", job_path, None),
        ("GET", job_path + "/overlay.png", None),
    ]
    for method, path, body in requests:
        r = anonymous.request(method, path, json=body)
        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == 'Bearer realm="glimpse"', (method, path)
    assert_problem(submit_multipart(anonymous, small_png, FAST_PARAMS), 401)
    wrong = {"Authorization": "Bearer gk_not-a-key-of-this-server"}
    for headers in (wrong, {"X-API-Key": "gk_not-a-key"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        r = anonymous.get("/v1/models", headers=headers)
        body = assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "gk_not" not in body["detail"]
    r = anonymous.get("/v1/models", headers=wrong)
    assert r.headers["www-authenticate"] == 'Bearer realm="glimpse", error="invalid_token"'


def test_health_metrics_docs_and_the_page_stay_open(clients) -> None:
    anonymous, _, _ = clients
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/",
        "/static/app.js",
    ):
        assert anonymous.get(path).status_code == 200, path


def test_either_header_authenticates(clients) -> None:
    _, client_a, client_b = clients
    for client in (client_a, client_b):
        r = client.get("/v1/models")
        assert r.status_code == 200, r.text
        assert DEFAULT_MODEL in [m["name"] for m in r.json()]


def test_a_job_is_visible_only_to_the_key_that_made_it(clients, job_of_a: dict) -> None:
    _, client_a, client_b = clients
    job_id = job_of_a["id"]
    unknown = "0" * 32
    # Key B learns nothing: the same 404 as an id that never existed.
    for suffix in ("", *(f"/{name}" for name in ARTIFACTS)):
        theirs = assert_problem(client_b.get(f"/v1/explanations/{job_id}{suffix}"), 404)
        none = assert_problem(client_b.get(f"/v1/explanations/{unknown}{suffix}"), 404)
        assert theirs["title"] == none["title"]
        assert theirs["detail"] == none["detail"].replace(unknown, job_id)
    assert_problem(client_b.delete(f"/v1/explanations/{job_id}"), 404)
    # Key A still has all of it (hierarchy.npy exists only for partition_shap).
    assert client_a.get(f"/v1/explanations/{job_id}").json()["status"] == "finished"
    for name in ARTIFACTS[:-1]:
        r = client_a.get(f"/v1/explanations/{job_id}/{name}")
        assert r.status_code == 200, (name, r.text)


def test_the_owner_deletes_its_job(clients, small_png: bytes) -> None:
    _, client_a, client_b = clients
    r = submit_multipart(client_a, small_png, {**FAST_PARAMS, "seed": 32, "cache": False})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert_problem(client_b.delete(f"/v1/explanations/{job_id}"), 404)
    assert client_a.get(f"/v1/explanations/{job_id}").status_code == 200
    assert client_a.delete(f"/v1/explanations/{job_id}").status_code == 204
    assert_problem(client_a.get(f"/v1/explanations/{job_id}"), 404)


def test_the_cache_is_per_key(clients, job_of_a: dict, chelsea_png: bytes) -> None:
    _, client_a, client_b = clients
    params = {**FAST_PARAMS, "seed": 31}
    again_a = submit_multipart(client_a, chelsea_png, params)
    assert again_a.status_code == 200 and again_a.json()["id"] == job_of_a["id"]
    first_b = submit_multipart(client_b, chelsea_png, params)
    assert first_b.status_code == 202, first_b.text  # not A's job
    job_b = first_b.json()["id"]
    assert job_b != job_of_a["id"]
    again_b = submit_multipart(client_b, chelsea_png, params)
    assert again_b.status_code == 200 and again_b.json()["id"] == job_b
    assert wait_for_job(client_b, job_b)["status"] == "finished"


def test_kserve_explain_jobs_belong_to_the_caller(clients, small_png: bytes) -> None:
    _, client_a, client_b = clients
    body = {
        "instances": [{"image_bytes": {"b64": base64.b64encode(small_png).decode()}}],
        "parameters": {**FAST_PARAMS, "seed": 33},
    }
    r = client_a.post(f"/v1/models/{DEFAULT_MODEL}:explain", json=body, timeout=90)
    assert r.status_code == 200, r.text
    # The same request by B is computed again for B, not answered from A's job.
    r = submit_multipart(client_b, small_png, {**FAST_PARAMS, "seed": 33, "model": DEFAULT_MODEL})
    assert r.status_code == 202, r.text
    wait_for_job(client_b, r.json()["id"])


def test_keys_are_stored_and_logged_only_as_digests(
    clients, job_of_a: dict, keyed_api: Api, api_keys: tuple[str, str], redis_server: RedisServer
) -> None:
    redis = redis_server.client
    job = redis.hgetall(f"glimpse:job:{job_of_a['id']}")
    assert job[b"owner"].decode() == key_id(hash_key(api_keys[0]))
    secrets = [key.encode() for key in api_keys]
    scanned = 0
    for name in redis.scan_iter(count=1000):
        for value in (name, *stored_bytes(redis, name)):
            assert not any(s in value for s in secrets), name
        scanned += 1
    assert scanned > 0
    output = keyed_api.output()
    assert not any(key in output for key in api_keys)


def stored_bytes(redis: Redis, name: bytes) -> list[bytes]:
    """Every value held under a key, whatever its type (a key that expired meanwhile: [])."""
    kind = redis.type(name)
    if kind == b"string":
        return [redis.get(name) or b""]
    if kind == b"hash":
        return [part for pair in redis.hgetall(name).items() for part in pair]
    if kind == b"set":
        return list(redis.smembers(name))
    if kind == b"zset":
        return list(redis.zrange(name, 0, -1))
    if kind == b"list":
        return list(redis.lrange(name, 0, -1))
    if kind == b"stream":  # RQ's job results
        entries = redis.xrange(name)
        return [part for _, fields in entries for pair in fields.items() for part in pair]
    assert kind == b"none", (name, kind)
    return []


# --- the rate limit -------------------------------------------------------------------------
@pytest.fixture
def limited(app_client, api_keys: tuple[str, str]):
    """`limited(per_minute, keys=True)`: an in-process app with its own queue and key prefix
    (no worker: submissions stay queued, which is all a limit needs)."""

    def make(per_minute: int, keys: bool = True) -> httpx.Client:
        name = f"limited-{uuid.uuid4().hex[:8]}"
        digests = [hash_key(key) for key in api_keys] if keys else []
        return app_client(
            rate_limit_per_minute=per_minute,
            api_key_hashes=digests,
            queue_name=name,
            key_prefix=name,
        )

    return make


def retry_after(r: httpx.Response) -> int:
    assert re.fullmatch(r"[0-9]+", r.headers["retry-after"]), r.headers
    return int(r.headers["retry-after"])


def test_over_the_limit_a_key_gets_429_and_another_key_does_not(
    limited, api_keys: tuple[str, str], small_png: bytes
) -> None:
    client = limited(3)
    a = {"Authorization": f"Bearer {api_keys[0]}"}
    b = {"X-API-Key": api_keys[1]}
    client.headers.update(a)
    ids = []
    for seed in range(3):
        r = submit_multipart(client, small_png, {**FAST_PARAMS, "seed": seed})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    r = submit_multipart(client, small_png, {**FAST_PARAMS, "seed": 3})
    body = assert_problem(r, 429)
    assert 0 < retry_after(r) <= 60
    assert "3 submissions per minute" in body["detail"]
    # Still over: refusals are not counted, the wait only shrinks.
    again = submit_multipart(client, small_png, {**FAST_PARAMS, "seed": 4})
    assert_problem(again, 429)
    assert retry_after(again) <= retry_after(r)
    # Reads are not limited: polling goes on.
    for _ in range(10):
        assert client.get(f"/v1/explanations/{ids[0]}").status_code == 200
    # Another key has its own allowance.
    client.headers.pop("Authorization")
    client.headers.update(b)
    r = submit_multipart(client, small_png, {**FAST_PARAMS, "seed": 5})
    assert r.status_code == 202, r.text


def test_without_keys_the_limit_is_per_client_address(limited, small_png: bytes) -> None:
    client = limited(2, keys=False)
    for seed in range(2):
        assert submit_multipart(client, small_png, {**FAST_PARAMS, "seed": seed}).status_code == 202
    r = submit_multipart(client, small_png, {**FAST_PARAMS, "seed": 2})
    assert_problem(r, 429)
    assert 0 < retry_after(r) <= 60


def test_kserve_submissions_count_and_401_comes_before_429(
    limited, api_keys: tuple[str, str]
) -> None:
    client = limited(1)
    path = f"/v1/models/{DEFAULT_MODEL}"
    client.headers["Authorization"] = f"Bearer {api_keys[0]}"
    # A refused body still counts: the limit is taken before the body is read.
    assert_problem(client.post(f"{path}:explain", content=b"not json"), 400)
    r = client.post(f"{path}:predict", json={"instances": ["AAAA"]})
    assert_problem(r, 429)
    assert 0 < retry_after(r) <= 60
    assert client.get(path).status_code == 200  # reads are not limited
    assert_problem(client.post(f"{path}:predict", headers={"Authorization": ""}), 401)


def test_a_limit_of_zero_is_off(limited, api_keys: tuple[str, str], small_png: bytes) -> None:
    client = limited(0)
    client.headers["X-API-Key"] = api_keys[0]
    for seed in range(5):
        assert submit_multipart(client, small_png, {**FAST_PARAMS, "seed": seed}).status_code == 202
