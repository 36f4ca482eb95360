"""Batches: several images in one submission (POST /v1/batches), one explanation job each.

Every image passes every check a single submission passes (app/submissions.py `check`, the
params once) before any is queued: one bad image refuses the whole batch, the error naming it
(the detail starting `image i: `; `errors[].loc` `["body", "images", i]` where the image
itself is refused), and nothing is queued. The jobs are ordinary jobs (GET
/v1/explanations/{id} and every artifact work on each), answered by the cache as singles
are, and stored and queued with the batch's record in one MULTI/EXEC: the batch and all its
jobs, or nothing. The record (glimpse/batches.py) names them and its owner: to another API
key a batch is a 404, as a job is.

A batch's status, from its jobs' (a job deleted or expired since counts as canceled):
queued (all queued), running (some queued or running, not all queued), and once all have
ended: finished (all), partial (some finished), failed (none finished, some failed),
canceled (all canceled).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from redis.client import Pipeline
from rq import Queue

from app import submissions
from app.schemas import Batch
from app.submissions import Checked, check_image, normalize
from app.uploads import BatchSubmission
from glimpse.batches import BatchRecord, BatchStore
from glimpse.cards import ModelRegistry
from glimpse.errors import GlimpseError, NotFound
from glimpse.settings import Settings
from glimpse.store import JobRecord, JobStore

STATUSES = ("queued", "running", "finished", "failed", "canceled")


def submit(
    batch: BatchSubmission,
    *,
    settings: Settings,
    store: JobStore,
    batches: BatchStore,
    queue: Queue,
    registry: ModelRegistry,
    owner: str = "",
) -> BatchRecord:
    """Check every image, then queue one job per image (or reuse its cached twin) and record
    the batch, all in one transaction. `owner`: the caller's API key id ('' without keys)."""
    checked = check_many(
        batch.images,
        batch.params,
        settings=settings,
        registry=registry,
        at=lambda i: naming(["body", "images", i], f"image {i}"),
    )
    made: list[BatchRecord] = []

    def record(pipe: Pipeline, jobs: list[JobRecord]) -> None:
        made.append(batches.create(jobs, owner=owner, pipeline=pipe))

    submissions.enqueue_many(
        checked, settings=settings, store=store, queue=queue, owner=owner, also=record
    )
    return made[0]


def get(batches: BatchStore, batch_id: str, owner: str = "") -> BatchRecord:
    """The batch, read in one round trip; 404 if unknown or, with API keys on, another's."""
    found = batches.get(batch_id)
    if found is None or (owner and found.owner != owner):
        raise NotFound(f"no batch {batch_id!r}")
    return found


def delete(
    batches: BatchStore, store: JobStore, queue: Queue, batch_id: str, owner: str = ""
) -> None:
    """Cancel and delete every job of the batch (as DELETE /v1/explanations/{id} does: also a
    job it shares with another submission through the cache), then the batch."""
    found = get(batches, batch_id, owner)
    for job_id in dict.fromkeys(entry.id for entry in found.jobs):
        submissions.discard(store, queue, job_id)
    batches.delete(batch_id)


def resource(batch: BatchRecord) -> Batch:
    statuses = [entry.status or "canceled" for entry in batch.jobs]
    counts = Counter({status: 0 for status in STATUSES}) + Counter(statuses)
    return Batch.model_validate(
        {
            "id": batch.id,
            "created_at": batch.created_at,
            "status": batch_status(counts),
            "counts": {status: counts[status] for status in STATUSES},
            "progress": {
                "done": sum(entry.done for entry in batch.jobs),
                "total": sum(entry.total for entry in batch.jobs),
            },
            "jobs": [
                {
                    "id": entry.id,
                    "status": status,
                    "progress": {"done": entry.done, "total": entry.total},
                }
                for entry, status in zip(batch.jobs, statuses, strict=True)
            ],
        }
    )


def batch_status(counts: Counter[str]) -> str:
    """The batch's status from its jobs' (the module docstring)."""
    total = sum(counts.values())
    if counts["queued"] == total:
        return "queued"
    if counts["queued"] or counts["running"]:
        return "running"
    if counts["finished"] == total:
        return "finished"
    if counts["finished"]:
        return "partial"
    return "failed" if counts["failed"] else "canceled"


# --- checking several images: also KServe's instances -----------------------------------------
def check_many(
    images: Sequence[bytes],
    raw: Any,
    *,
    settings: Settings,
    registry: ModelRegistry,
    at: Callable[[int], AbstractContextManager[None]],
) -> list[Checked]:
    """`check` of several images under one params object: the params once, then every image,
    each inside `at(i)` (`naming`: an error about image i says which), all before any is
    queued."""
    params = normalize(raw, settings, registry)
    checked = []
    for i, data in enumerate(images):
        with at(i):
            checked.append(check_image(data, params, settings=settings, registry=registry))
    return checked


@contextlib.contextmanager
def naming(loc: list[str | int], label: str) -> Iterator[None]:
    """An error about one image of several names it: its detail after `label: `, and an error
    about the image itself (a 413/415, or one at `loc: ["image"]`) at `loc` instead. An error
    at a param (a grid too coarse for this image) keeps its loc: the param is what to change."""
    try:
        yield
    except GlimpseError as exc:
        if exc.errors is None and exc.status in (413, 415):
            exc.errors = [{"loc": loc, "msg": exc.detail}]
        elif exc.errors:
            exc.errors = [
                {**e, "loc": loc} if list(e["loc"]) == ["image"] else e for e in exc.errors
            ]
        exc.detail = f"{label}: {exc.detail}"
        raise
