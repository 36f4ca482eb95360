"""glimpse.client's batches against the real service: a real uvicorn, worker and redis-server."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from services import BROKEN_MODEL, png_bytes

from glimpse.client import (
    Batch,
    BatchWaitTimeoutError,
    GlimpseClient,
    JobFailedError,
    NotFoundError,
    UnsupportedImageError,
)

FAST = {"num_samples": 60, "segmentation": {"algorithm": "slic", "n_segments": 12}}


@pytest.fixture()
def glimpse(api, worker):
    with GlimpseClient(api.url, timeout=30) as client:
        yield client


def test_explain_many_returns_each_result_in_order(glimpse, chelsea, tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(png_bytes(chelsea))
    mirrored = np.ascontiguousarray(chelsea[:, ::-1])
    half = png_bytes(np.ascontiguousarray(chelsea[::2, ::2]))
    seen: list[tuple[int, int]] = []
    explained = glimpse.explain_many(
        [path, mirrored, half], seed=51, progress=lambda d, t: seen.append((d, t)), **FAST
    )
    assert len(explained) == 3
    assert explained[0].result.image.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (explained[1].result.image.width, explained[1].result.image.height) == (451, 300)
    assert explained[2].result.image.sha256 == hashlib.sha256(half).hexdigest()
    for one in explained:
        assert one.result.predictions[0].class_index == 285
        (index,) = one.class_indices
        with Image.open(io.BytesIO(one.overlays[index])) as img:
            assert img.size == (one.result.image.width, one.result.image.height)
    assert seen[-1][0] == seen[-1][1] > 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_submit_get_wait_and_delete_a_batch(glimpse, chelsea) -> None:
    batch = glimpse.submit_batch([chelsea, png_bytes(chelsea[::2, ::2])], seed=52, **FAST)
    assert isinstance(batch, Batch) and len(batch.jobs) == 2 and not batch.ended
    again = glimpse.get_batch(batch.id)
    assert [j.id for j in again.jobs] == [j.id for j in batch.jobs]
    done = glimpse.wait_batch(batch.id, timeout=120)
    assert done.status == "finished" and done.ended and done.counts["finished"] == 2
    assert all(glimpse.get(j.id).result is not None for j in done.jobs)
    glimpse.delete_batch(batch.id)
    with pytest.raises(NotFoundError):
        glimpse.get_batch(batch.id)
    with pytest.raises(NotFoundError):
        glimpse.get(done.jobs[0].id)


def test_wait_batch_times_out_and_a_failed_job_raises_in_explain_many(glimpse, chelsea) -> None:
    batch = glimpse.submit_batch([chelsea], num_samples=5000, seed=53, cache=False)
    try:
        with pytest.raises(BatchWaitTimeoutError) as late:
            glimpse.wait_batch(batch, timeout=0.2, poll_interval=0.05)
        assert late.value.batch.id == batch.id
    finally:
        glimpse.delete_batch(batch.id)
    with pytest.raises(JobFailedError) as failed:
        glimpse.explain_many([chelsea], model=BROKEN_MODEL, **FAST)
    assert failed.value.job.error["title"]


def test_a_bad_image_refuses_the_batch_naming_it(glimpse, chelsea) -> None:
    with pytest.raises(UnsupportedImageError) as refused:
        glimpse.submit_batch([chelsea, b"not an image at all"], **FAST)
    assert refused.value.errors[0]["loc"] == ["body", "images", 1]
    assert refused.value.detail.startswith("image 1: ")
