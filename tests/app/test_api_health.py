"""/healthz, /readyz, /metrics and /v1/models."""

from __future__ import annotations

import uuid

import httpx
from api_helpers import BROKEN_MODEL, DEFAULT_MODEL, FAST_PARAMS, submit_multipart
from services import wait_for_job


def test_healthz(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_readyz_200_with_a_live_worker(client: httpx.Client) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {
        "redis": "ok",
        "workers": "1 alive",
        "model": f"{DEFAULT_MODEL} registered",
    }


def test_readyz_503_without_a_worker(app_client) -> None:
    client = app_client(queue_name=f"idle-{uuid.uuid4().hex[:8]}")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"] == {
        "redis": "ok",
        "workers": "none alive",
        "model": f"{DEFAULT_MODEL} registered",
    }
    assert "retry-after" in r.headers


def test_readyz_503_says_the_default_model_is_missing(app_client) -> None:
    client = app_client(default_model="not-fetched")
    r = client.get("/readyz")
    assert r.status_code == 503 and "retry-after" in r.headers
    reason = r.json()["checks"]["model"]
    assert "'not-fetched' is not in" in reason and "glimpse models init" in reason


def test_models_lists_the_cards(client: httpx.Client) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()}
    assert models[DEFAULT_MODEL] == {
        "name": DEFAULT_MODEL,
        "input_size": [224, 224],
        "num_classes": 1000,
        "default": True,
        "runtime": "onnxruntime",
        "providers": ["CPUExecutionProvider"],  # as the live worker reports it
        "devices": ["cpu"],
        "notes": [],
        "methods": [
            *("lime", "kernel_shap", "partition_shap", "gradcam", "occlusion"),
            *("integrated_gradients", "xrai"),
        ],
    }
    assert models[BROKEN_MODEL]["default"] is False


def test_metrics_exposes_requests_jobs_queue_and_evaluations(
    client: httpx.Client, small_png: bytes
) -> None:
    job = submit_multipart(client, small_png, {**FAST_PARAMS, "seed": 99}).json()
    wait_for_job(client, job["id"])
    client.get("/v1/explanations/" + "f" * 32)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in (
        "glimpse_http_requests_total",
        "glimpse_http_request_duration_seconds_bucket",
        "glimpse_queue_depth",
        "glimpse_workers 1.0",
        "glimpse_jobs_total",
        "glimpse_job_duration_seconds_bucket",
        "glimpse_job_duration_seconds_count",
        "glimpse_model_evaluations_total",
        "glimpse_evaluation_seconds_total",
        "glimpse_evaluations_per_second",
        "glimpse_redis_up 1.0",
    ):
        assert name in text, name
    # the submit p99 target (200 ms) has a bucket edge of its own
    assert 'glimpse_http_request_duration_seconds_bucket{le="0.2",' in text
    assert (
        'glimpse_http_requests_total{method="GET",route="/v1/explanations/{job_id}",status="404"}'
        in text
    )
    assert 'glimpse_jobs_total{outcome="finished"}' in text
    evaluations = [
        line for line in text.splitlines() if line.startswith("glimpse_model_evaluations_total ")
    ]
    assert float(evaluations[0].split()[1]) > 0


def test_docs_page(client: httpx.Client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
