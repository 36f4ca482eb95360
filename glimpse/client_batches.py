"""Batches in the Python client: `GlimpseClient.submit_batch`, `get_batch`, `wait_batch`,
`delete_batch` and `explain_many` (a mixin of glimpse/client.py's GlimpseClient).

    with GlimpseClient("http://127.0.0.1:8000") as glimpse:
        for explained in glimpse.explain_many(["a.jpg", "b.jpg"], num_samples=500):
            print(explained.result.predictions[0].label)

One request submits every image (POST /v1/batches: all checked before any is queued, one job
each); one request per poll reads the whole batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from glimpse.client import Explained, ImageLike, Job, Progress

#: Batch statuses after which nothing changes (app/batches.py).
BATCH_FINAL = frozenset({"finished", "partial", "failed", "canceled"})


@dataclass(frozen=True)
class BatchJob:
    id: str
    status: str
    progress: dict[str, int]


@dataclass(frozen=True)
class Batch:
    """The batch resource (docs/api.md): one job per image, in submission order."""

    id: str
    status: str
    counts: dict[str, int]
    progress: dict[str, int]
    jobs: list[BatchJob]
    created_at: str | None = None

    @property
    def ended(self) -> bool:
        """Every job has ended (finished, failed or canceled)."""
        return self.status in BATCH_FINAL

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Batch:
        return cls(
            id=doc["id"],
            status=doc["status"],
            counts=doc.get("counts") or {},
            progress=doc.get("progress") or {},
            jobs=[
                BatchJob(job["id"], job["status"], job.get("progress") or {})
                for job in doc.get("jobs") or []
            ],
            created_at=doc.get("created_at"),
        )


class BatchWaitTimeoutError(TimeoutError):
    """wait_batch() ran out of time (the jobs go on)."""

    def __init__(self, batch: Batch, timeout: float) -> None:
        super().__init__(f"batch {batch.id} still {batch.status} after {timeout:g} s")
        self.batch = batch


class BatchMethods:
    """The batch methods of GlimpseClient; they use its connection and job methods."""

    if TYPE_CHECKING:
        _http: httpx.Client

        def _json(self, response: httpx.Response) -> Any: ...
        @staticmethod
        def _check(response: httpx.Response) -> httpx.Response: ...
        def get(self, job_id: str) -> Job: ...
        def overlay(self, job_id: str, *, class_index: int | None = None) -> bytes: ...

    def submit_batch(self, images: Iterable[ImageLike], **params: Any) -> Batch:
        """Upload several images with one set of explainer params (docs/api.md); returns the
        batch, one queued (or cached) job per image. A bad image refuses them all: the error's
        `errors[0]["loc"]` (or its detail) names its index."""
        from glimpse.client import _image_bytes

        files = [("image", (*_image_bytes(image), "application/octet-stream")) for image in images]
        response = self._http.post(
            "/v1/batches", files=files, data={"params": json.dumps(params)} if params else None
        )
        return Batch.from_json(self._json(response))

    def get_batch(self, batch_id: str) -> Batch:
        return Batch.from_json(self._json(self._http.get(f"/v1/batches/{batch_id}")))

    def delete_batch(self, batch_id: str) -> None:
        """Cancel and delete every job of the batch, and the batch."""
        self._check(self._http.delete(f"/v1/batches/{batch_id}"))

    def wait_batch(
        self,
        batch: Batch | str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 0.25,
        progress: Progress | None = None,
    ) -> Batch:
        """Poll until every job of the batch has ended, and return the batch (its `status`:
        finished, partial, failed or canceled; a failed job does not raise here). Raises
        BatchWaitTimeoutError past `timeout`; `progress(done, total)`, summed over the jobs,
        is called on every change."""
        current = batch if isinstance(batch, Batch) else self.get_batch(batch)
        deadline = time.monotonic() + timeout
        seen: tuple[int, int] | None = None
        while True:
            done_total = (current.progress.get("done", 0), current.progress.get("total", 0))
            if progress and done_total != seen:
                progress(*done_total)
                seen = done_total
            if current.ended:
                return current
            if time.monotonic() >= deadline:
                raise BatchWaitTimeoutError(current, timeout)
            time.sleep(poll_interval)
            current = self.get_batch(current.id)

    def explain_many(
        self,
        images: Iterable[ImageLike],
        *,
        timeout: float = 600.0,
        progress: Progress | None = None,
        overlays: bool = True,
        **params: Any,
    ) -> list[Explained]:
        """`explain` of several images as one batch: submit them together, wait for all, and
        return each one's result (and heatmap overlays) in the order given. Raises
        JobFailedError (or JobCanceledError) for the first image whose job did not finish;
        `submit_batch` and `wait_batch` give the other results too."""
        from glimpse.client import Explained, JobCanceledError, JobFailedError, NotFoundError

        batch = self.wait_batch(
            self.submit_batch(images, **params), timeout=timeout, progress=progress
        )
        jobs: dict[str, Job] = {}
        answers = []
        for entry in batch.jobs:
            if entry.id not in jobs:
                try:
                    jobs[entry.id] = self.get(entry.id)
                except NotFoundError:
                    raise JobCanceledError(f"job {entry.id} was deleted") from None
            job = jobs[entry.id]
            if job.status == "failed":
                raise JobFailedError(job)
            if job.status != "finished":
                raise JobCanceledError(f"job {job.id} was {job.status}")
            explained = Explained(job=job)
            if overlays:
                for index in explained.class_indices:
                    explained.overlays[index] = self.overlay(job.id, class_index=index)
            answers.append(explained)
        return answers
