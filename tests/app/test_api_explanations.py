"""POST/GET/DELETE /v1/explanations and the artifacts, end to end: uvicorn, Redis, a worker,
the shared EfficientNet on chelsea (top class 285, Egyptian cat)."""

from __future__ import annotations

import hashlib
import io
import time

import httpx
import numpy as np
import pytest
from api_helpers import (
    BROKEN_MODEL,
    CAT,
    DEFAULT_MODEL,
    FAST_PARAMS,
    png_bytes,
    submit_json,
    submit_multipart,
)
from PIL import Image
from services import RedisServer, wait_for_job, wait_until
from skimage import data as skdata


@pytest.fixture(scope="module", params=["lime", "kernel_shap"])
def finished(request, client: httpx.Client, chelsea_png: bytes) -> dict:
    """A finished job per method: LIME submitted by multipart, Kernel SHAP by JSON."""
    method = request.param
    params = {**FAST_PARAMS, "method": method, "targets": {"top_k": 2}, "seed": 7}
    submit = submit_multipart if method == "lime" else submit_json
    r = submit(client, chelsea_png, params)
    assert r.status_code in (200, 202), r.text
    job = wait_for_job(client, r.json()["id"])
    assert job["status"] == "finished", job
    return job


def test_submit_answers_202_with_location_and_the_queued_job(
    client: httpx.Client, small_png: bytes
) -> None:
    r = submit_multipart(client, small_png, {**FAST_PARAMS, "cache": False})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/explanations/{job['id']}"
    assert len(job["id"]) == 32 and int(job["id"], 16) >= 0
    assert job["status"] in {"queued", "running", "finished"}
    assert job["created_at"].endswith("Z")
    assert job["error"] is None and job["result"] is None
    assert job["progress"]["total"] > 0
    # Defaults filled in: the server's default model and batch size.
    p = job["params"]
    assert p["model"] == DEFAULT_MODEL and p["batch_size"] == 32
    assert p["method"] == "lime" and p["targets"] == {"top_k": 1} and p["seed"] == 0
    assert p["background"] == {"kind": "constant", "rgb": [0, 0, 0]}
    assert p["segmentation"] == {"algorithm": "slic", "n_segments": 20, "compactness": 10.0}
    wait_for_job(client, job["id"])


def test_finished_job_matches_the_contract(finished: dict, chelsea_png: bytes) -> None:
    assert set(finished) == {
        "id",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "progress",
        "params",
        "error",
        "result",
    }
    assert finished["started_at"] and finished["finished_at"]
    assert finished["created_at"] <= finished["started_at"] <= finished["finished_at"]
    result = finished["result"]
    assert result["model"]["name"] == DEFAULT_MODEL
    assert result["method"] == finished["params"]["method"]
    assert result["image"] == {
        "width": 451,
        "height": 300,
        "sha256": hashlib.sha256(chelsea_png).hexdigest(),
    }
    assert len(result["predictions"]) == 5
    assert result["predictions"][0]["class_index"] == CAT
    assert "cat" in result["predictions"][0]["label"].lower()
    count = result["segments"]["count"]
    assert 2 <= count <= 40
    assert [e["class_index"] for e in result["explanations"]] == [
        p["class_index"] for p in result["predictions"][:2]
    ]
    for e in result["explanations"]:
        assert set(e) == {
            *("class_index", "label", "probability", "weights", "base_value", "score"),
            *("weights_se", "quality", "top_separated"),  # issue #6 additions
            *("top_settled", "top_resolution"),  # issue #18
            *("completeness", "regions"),  # issue #20: the gradient methods (null here)
        }
        assert e["completeness"] is None and e["regions"] is None
        assert len(e["weights"]) == count
        assert len(e["weights_se"]) == count and isinstance(e["top_separated"], bool)
        assert e["top_settled"] == (e["top_resolution"] <= finished["params"]["tolerance"])
        assert set(e["quality"]) == {"deletion_auc", "insertion_auc", "steps"}
    if result["method"] == "lime":
        assert result["explanations"][0]["score"] is not None
    total = result["stats"]["model_evaluations"]
    assert finished["progress"] == {"done": total, "total": total}
    assert result["stats"]["seconds"] > 0


def test_segments_png_is_16_bit_at_the_original_size(client: httpx.Client, finished: dict) -> None:
    r = client.get(f"/v1/explanations/{finished['id']}/segments.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (451, 300)
        assert img.mode.startswith("I;16") or img.mode == "I"
        ids = np.asarray(img).astype(np.int64)
    count = finished["result"]["segments"]["count"]
    assert set(np.unique(ids)) == set(range(count))


def test_attribution_npy_paints_the_weights(client: httpx.Client, finished: dict) -> None:
    base = f"/v1/explanations/{finished['id']}"
    r = client.get(f"{base}/attribution.npy")
    assert r.status_code == 200
    maps = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert maps.dtype == np.float32 and maps.shape == (2, 300, 451)
    with Image.open(io.BytesIO(client.get(f"{base}/segments.png").content)) as img:
        segments = np.asarray(img).astype(np.int64)
    weights = np.array([e["weights"] for e in finished["result"]["explanations"]], np.float32)
    np.testing.assert_array_equal(maps, weights[:, segments])


@pytest.mark.parametrize("style", ["heatmap", "boundaries", "highlight"])
def test_overlay_png_in_every_style(client: httpx.Client, finished: dict, style: str) -> None:
    second = finished["result"]["explanations"][1]["class_index"]
    base = f"/v1/explanations/{finished['id']}/overlay.png"
    for query in (
        {"style": style},
        {
            "style": style,
            "class_index": second,
            "negative": "true",
            "num_features": 3,
            "percentile": 80,
        },
    ):
        r = client.get(base, params=query)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(r.content)) as img:
            assert img.format == "PNG" and img.size == (451, 300) and img.mode == "RGB"


def test_overlay_query_errors_are_422_with_query_locs(client: httpx.Client, finished: dict) -> None:
    base = f"/v1/explanations/{finished['id']}/overlay.png"
    r = client.get(base, params={"class_index": 3})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["loc"] == ["query", "class_index"]
    r = client.get(base, params={"style": "sparkles"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["query", "style"]


def test_an_overlay_is_drawn_once_and_kept_with_its_job(
    client: httpx.Client, redis_server: RedisServer
) -> None:
    image = png_bytes(np.ascontiguousarray(skdata.chelsea()[::4, ::4]))  # this test's own
    params = {**FAST_PARAMS, "targets": {"top_k": 2}}
    job = wait_for_job(client, submit_multipart(client, image, params).json()["id"])
    job_id, second = job["id"], job["result"]["explanations"][1]["class_index"]
    image_key = f"glimpse:image:{hashlib.sha256(image).hexdigest()}"
    base = f"/v1/explanations/{job_id}"

    def get(path: str, **query: object) -> tuple[bytes, list[str], bool]:
        """The body; the API's commands on this job; whether the image was read."""
        got: list[httpx.Response] = []
        sent = redis_server.commands_during(lambda: got.append(client.get(path, params=query)))
        assert got[0].status_code == 200, got[0].text
        # this job's commands only: the workers and other tests share this Redis
        mine = [c for c in sent if job_id in c["command"] or image_key in c["command"]]
        api = [c["command"].split()[0] for c in mine if c["client_type"] == "tcp"]
        read = any(image_key in c["command"] for c in mine)
        return got[0].content, api, read

    get(f"{base}/overlay.png", style="highlight")  # Redis has the store's scripts loaded
    heatmap, sent, read = get(f"{base}/overlay.png")  # one read, then the rendering kept
    assert sent == ["EVALSHA", "EVALSHA"] and read
    assert get(f"{base}/overlay.png") == (heatmap, ["EVALSHA"], False)  # one read, no image
    other, _, read = get(f"{base}/overlay.png", class_index=second)
    assert other != heatmap and read  # another class: its own rendering
    figure, _, read = get(f"{base}/figure.png")
    assert read and get(f"{base}/overlay.png", style="grid") == (figure, ["EVALSHA"], False)
    renders = f"glimpse:job:{job_id}:renders"
    assert sorted(redis_server.client.hkeys(renders)) == [
        b"figure",
        b"overlay:heatmap;class_index=",
        f"overlay:heatmap;class_index={second}".encode(),
        b"overlay:highlight;class_index=;percentile=95.0",
    ]
    assert 0 < redis_server.client.ttl(renders) <= redis_server.client.ttl(f"glimpse:job:{job_id}")
    redis_server.client.delete(image_key)  # what is kept needs no image; the rest does
    assert get(f"{base}/overlay.png", class_index=second)[0] == other
    assert client.get(f"{base}/overlay.png", params={"style": "boundaries"}).status_code == 404
    assert client.delete(base).status_code == 204
    assert redis_server.client.keys(f"glimpse:job:{job_id}*") == []


def test_identical_request_reuses_the_job_unless_cache_is_false(
    client: httpx.Client, chelsea_png: bytes
) -> None:
    params = {**FAST_PARAMS, "seed": 123}
    first = submit_json(client, chelsea_png, params)
    assert first.status_code == 202
    job_id = first.json()["id"]
    # Same image bytes, model and params (batch_size does not count): the same job, 200.
    again = submit_multipart(client, chelsea_png, {**params, "batch_size": 7})
    assert again.status_code == 200 and again.json()["id"] == job_id
    assert again.headers["location"] == f"/v1/explanations/{job_id}"
    fresh = submit_multipart(client, chelsea_png, {**params, "cache": False})
    assert fresh.status_code == 202 and fresh.json()["id"] != job_id
    other_seed = submit_multipart(client, chelsea_png, {**params, "seed": 124})
    assert other_seed.status_code == 202 and other_seed.json()["id"] not in {job_id}
    for r in (first, fresh, other_seed):
        assert wait_for_job(client, r.json()["id"])["status"] == "finished"
    # Finished jobs are reused too; the index points at the latest identical job.
    reused = submit_json(client, chelsea_png, params)
    assert reused.status_code == 200 and reused.json()["id"] == fresh.json()["id"]


def test_cancel_running_and_queued_jobs(
    client: httpx.Client, chelsea_png: bytes, small_png: bytes, redis_server: RedisServer
) -> None:
    long = {
        "num_samples": 100_000,
        "segmentation": {"algorithm": "grid", "cell_size": 64},
        "cache": False,
    }
    running = submit_json(client, chelsea_png, long).json()["id"]

    def is_running() -> bool:
        job = client.get(f"/v1/explanations/{running}").json()
        return job["status"] == "running" and job["progress"]["done"] > 0

    wait_until(is_running, timeout=60, what="the long job to run")
    queued = submit_multipart(client, small_png, {**FAST_PARAMS, "cache": False}).json()["id"]
    assert client.get(f"/v1/explanations/{queued}").json()["status"] == "queued"
    r = client.get(f"/v1/explanations/{queued}/overlay.png")
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"

    assert client.delete(f"/v1/explanations/{queued}").status_code == 204
    assert client.get(f"/v1/explanations/{queued}").status_code == 404
    assert redis_server.client.exists(f"rq:job:{queued}") == 0
    assert queued.encode() not in redis_server.client.lrange("rq:queue:glimpse", 0, -1)

    r = client.delete(f"/v1/explanations/{running}")
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/v1/explanations/{running}").status_code == 404
    assert client.delete(f"/v1/explanations/{running}").status_code == 404

    # The worker drops the canceled job at its next batch and takes the next one.
    started = time.monotonic()
    after = submit_multipart(client, small_png, {**FAST_PARAMS, "cache": False}).json()["id"]
    assert wait_for_job(client, after, timeout=30)["status"] == "finished"
    assert time.monotonic() - started < 30
    # Nothing of the canceled jobs was written back.
    time.sleep(0.3)
    assert redis_server.client.keys(f"glimpse:job:{running}*") == []
    assert redis_server.client.keys(f"glimpse:job:{queued}*") == []


def test_delete_removes_all_data_of_a_finished_job(
    client: httpx.Client, redis_server: RedisServer
) -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    job_id = submit_multipart(client, buf.getvalue(), FAST_PARAMS).json()["id"]
    assert wait_for_job(client, job_id)["status"] == "finished"
    assert redis_server.client.exists(f"glimpse:job:{job_id}:segments") == 1
    ttl = redis_server.client.ttl(f"glimpse:job:{job_id}")
    assert 0 < ttl <= 24 * 3600
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    assert redis_server.client.exists(f"glimpse:image:{sha}") == 1
    assert client.delete(f"/v1/explanations/{job_id}").status_code == 204
    assert redis_server.client.keys(f"glimpse:job:{job_id}*") == []
    assert redis_server.client.exists(f"glimpse:image:{sha}") == 0
    for artifact in ("", "/segments.png", "/attribution.npy", "/overlay.png"):
        r = client.get(f"/v1/explanations/{job_id}{artifact}")
        assert r.status_code == 404, artifact


@pytest.mark.parametrize("path", ["", "/segments.png", "/attribution.npy", "/overlay.png"])
def test_unknown_job_is_404(client: httpx.Client, path: str) -> None:
    for job_id in ("0" * 32, "not-a-job-id"):
        r = client.get(f"/v1/explanations/{job_id}{path}")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == 404 and body["title"] and body["detail"] and body["type"]


def test_a_job_failing_in_the_worker_ends_failed_with_a_reason(
    client: httpx.Client, small_png: bytes
) -> None:
    r = submit_multipart(client, small_png, {**FAST_PARAMS, "model": BROKEN_MODEL})
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["id"])
    assert job["status"] == "failed"
    assert job["error"]["title"] == "Model unusable"
    assert "cannot load" in job["error"]["detail"]
    assert job["result"] is None and job["finished_at"]
    # A failed job is not reused by the cache.
    again = submit_multipart(client, small_png, {**FAST_PARAMS, "model": BROKEN_MODEL})
    assert again.status_code == 202 and again.json()["id"] != job["id"]
    wait_for_job(client, again.json()["id"])


def test_engine_rejections_end_failed_with_the_reason(
    client: httpx.Client, chelsea_png: bytes
) -> None:
    # Felzenszwalb at this scale gives chelsea far more than the 4000 superpixels the engine
    # takes; only segmenting tells (a grid's count is refused at submit).
    params = {
        "num_samples": 10,
        "segmentation": {"algorithm": "felzenszwalb", "scale": 0.001, "min_size": 1},
    }
    r = submit_multipart(client, chelsea_png, params)
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["id"])
    assert job["status"] == "failed"
    assert job["error"]["title"] == "Invalid parameters"
    assert "superpixel" in job["error"]["detail"] or "segment" in job["error"]["detail"]
