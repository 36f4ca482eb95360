"""glimpse.client against the real service: a real uvicorn, worker and redis-server."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from services import BROKEN_MODEL

from glimpse.client import (
    ConflictError,
    GlimpseClient,
    InvalidParamsError,
    JobFailedError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
    UnsupportedImageError,
    WaitTimeoutError,
)

FAST = {"num_samples": 60, "segmentation": {"algorithm": "slic", "n_segments": 12}}


@pytest.fixture()
def glimpse(api, worker):
    with GlimpseClient(api.url, timeout=30) as client:
        yield client


def test_explain_returns_the_result_and_an_overlay_per_class(glimpse, chelsea) -> None:
    seen: list[tuple[int, int]] = []
    explained = glimpse.explain(
        chelsea,
        method="kernel_shap",
        targets={"top_k": 2},
        progress=lambda d, t: seen.append((d, t)),
        **FAST,
    )
    result = explained.result
    assert result.predictions[0].class_index == 285
    assert explained.class_indices == [e.class_index for e in result.explanations]
    assert len(explained.class_indices) == 2
    for index in explained.class_indices:
        with Image.open(io.BytesIO(explained.overlays[index])) as img:
            assert img.size == (chelsea.shape[1], chelsea.shape[0])
    assert seen[-1][0] == seen[-1][1] == result.stats.model_evaluations
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # progress only moves forward


def test_artifacts_as_arrays(glimpse, chelsea) -> None:
    job = glimpse.wait(glimpse.submit(chelsea, seed=11, **FAST))
    segments = glimpse.segments(job.id)
    maps = glimpse.attribution(job.id)
    weights = np.asarray(job.result.explanations[0].weights, np.float32)
    assert segments.shape == chelsea.shape[:2]
    assert maps.shape == (1, *chelsea.shape[:2]) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps[0], weights[segments])
    assert glimpse.overlay(job.id, style="boundaries", negative=True).startswith(b"\x89PNG")


def test_visualisation_options_as_keyword_arguments(glimpse, chelsea) -> None:
    job = glimpse.wait(glimpse.submit(chelsea, seed=11, **FAST))
    plain = glimpse.overlay(job.id)
    assert glimpse.overlay(job.id, polarity="both", legend=False, clip_upper=100) == plain
    small = glimpse.overlay(
        job.id,
        polarity="positive",
        clip_lower=50,
        clip_upper=99,
        color_map="viridis",
        overlay="grayscale",
        draw="outlines",
        legend=True,
        max_side=120,
    )
    with Image.open(io.BytesIO(small)) as img:
        assert img.size == (120, 80)
    figure = glimpse.figure(job.id, color_map="pink_green", max_side=300)
    with Image.open(io.BytesIO(figure)) as img:
        assert max(img.size) <= 300
    assert glimpse.figure(job.id).startswith(b"\x89PNG")
    half = glimpse.attribution(job.id, dtype="float16", max_side=90)
    assert half.dtype == np.float16 and half.shape == (1, 60, 90)
    with pytest.raises(InvalidParamsError) as invalid:
        glimpse.overlay(job.id, clip_lower=80, clip_upper=20)
    assert invalid.value.errors[0]["loc"] == ["query", "clip_lower"]


def test_submit_takes_a_path_or_bytes(glimpse, chelsea_png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(chelsea_png)
    by_path = glimpse.submit(path, seed=12, **FAST)
    by_bytes = glimpse.submit(chelsea_png, seed=12, **FAST)
    assert by_bytes.id == by_path.id  # identical request: the cache answers
    glimpse.wait(by_path)


def test_errors_are_typed(glimpse, chelsea) -> None:
    with pytest.raises(InvalidParamsError) as invalid:
        glimpse.submit(chelsea, num_samples=5)
    assert invalid.value.status == 422
    assert invalid.value.errors[0]["loc"] == ["params", "num_samples"]
    with pytest.raises(UnsupportedImageError):
        glimpse.submit(b"not an image at all")
    with pytest.raises(NotFoundError):
        glimpse.get("0" * 32)
    with pytest.raises(UnsupportedImageError, match="empty"):
        glimpse.submit(b"")


def test_a_failed_job_raises_job_failed(glimpse, chelsea) -> None:
    job = glimpse.submit(chelsea, model=BROKEN_MODEL, **FAST)
    with pytest.raises(JobFailedError) as failed:
        glimpse.wait(job, timeout=60)
    assert failed.value.job.error["title"]


def test_wait_times_out_and_unfinished_artifacts_conflict(glimpse, chelsea) -> None:
    job = glimpse.submit(chelsea, num_samples=5000, seed=13, cache=False)
    try:
        with pytest.raises(WaitTimeoutError):
            glimpse.wait(job, timeout=0.2, poll_interval=0.05)
        with pytest.raises(ConflictError):
            glimpse.overlay(job.id)
    finally:
        glimpse.delete(job.id)
    with pytest.raises(NotFoundError):
        glimpse.get(job.id)


def test_an_api_key_is_sent_and_refusals_are_typed(keyed_api, worker, api_keys, chelsea) -> None:
    with GlimpseClient(keyed_api.url, api_key=api_keys[0], timeout=30) as mine:
        assert any(m["default"] for m in mine.models())
        job = mine.submit(chelsea, seed=13, **FAST)
        theirs = GlimpseClient(keyed_api.url, api_key=api_keys[1], timeout=30)
        with theirs, pytest.raises(NotFoundError):
            theirs.get(job.id)  # another key's job does not exist for it
        assert mine.wait(job).status == "finished"
    for key in (None, "gk_not-a-key"):
        client = GlimpseClient(keyed_api.url, api_key=key, timeout=30)
        with client, pytest.raises(UnauthorizedError) as refused:
            client.models()
        assert refused.value.status == 401 and refused.value.title == "Unauthorized"


def test_429_is_a_rate_limited_error_with_retry_after(app_client, chelsea) -> None:
    name = f"limited-{uuid.uuid4().hex[:8]}"  # own queue and keys: no worker, no shared count
    url = str(app_client(rate_limit_per_minute=1, queue_name=name, key_prefix=name).base_url)
    with GlimpseClient(url, timeout=30) as client:
        client.submit(chelsea, seed=14, **FAST)
        with pytest.raises(RateLimitedError) as limited:
            client.submit(chelsea, seed=15, **FAST)
    assert limited.value.status == 429
    assert limited.value.retry_after is not None and 0 < limited.value.retry_after <= 60
