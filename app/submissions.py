"""Submitting, reading and deleting explanation jobs (the artifacts of a finished one are
app/artifacts.py's).

Validation happens here, before anything is queued (`check`): params, the model (from its card
and graph; the API never loads a model runtime), class indices, the Grad-CAM layer, the image
(decoded once, then dropped), and every rule of glimpse/limits.py on its size and cost: what
a worker would refuse from the params, the card and the image size alone is a 4xx here.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from redis.client import Pipeline
from rq import Queue, Retry
from rq.callbacks import Callback
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from app.schemas import Job
from app.uploads import Submission
from app.workers import check_offered, live_runtimes
from glimpse.cards import ModelRegistry, RegisteredModel, is_valid_name
from glimpse.errors import InvalidParams, NotFound, ServiceUnavailable
from glimpse.images import decode_image
from glimpse.limits import check_budget, check_classes, check_request, planned_evaluations
from glimpse.modelfiles import layer_names
from glimpse.params import GRADIENT_METHODS, ExplainParams, parse_params
from glimpse.result import ExplanationResult
from glimpse.settings import Settings
from glimpse.store import JobRecord, JobStore

JOB_FUNCTION = "worker.jobs.run_explanation"
FAILURE_CALLBACK = "worker.jobs.on_failure"


def normalize(raw: Any, settings: Settings, registry: ModelRegistry) -> ExplainParams:
    """Validated params with the server's defaults (model, batch size) filled in: every check
    that needs neither the image nor a worker (the model's card and graph are read here)."""
    params = parse_params(raw)
    check_budget(params, settings.max_num_samples)
    name = params.model or settings.default_model
    if not is_valid_name(name):  # never a path: `../x`, `/etc`, `a/b`, NUL, a newline
        raise InvalidParams(
            f"params.model: {name!r} is not a valid model name (letters, digits, '.', '_' and "
            "'-', starting with a letter or digit, no '..')",
            errors=[{"loc": ["params", "model"], "msg": "not a valid model name"}],
        )
    try:
        model = registry.get(name)
    except NotFound:
        raise InvalidParams(
            f"params.model: no model named {name!r}; GET /v1/models lists them",
            errors=[{"loc": ["params", "model"], "msg": f"unknown model {name!r}"}],
        ) from None
    params = params.model_copy(
        update={"model": name, "batch_size": params.batch_size or settings.batch_size}
    )
    check_classes(params, model.card.num_classes)
    if "gradcam" in (params.methods or [params.method]):
        check_gradcam_layer(params, model)
    return params


#: Nodes whose presence gives Grad-CAM a layer of its own choice (worker/engine/gradcam.py
#: `graph_info`: the global pool's input, else the last convolution's output).
FEATURE_MAP_OPS = frozenset({"GlobalAveragePool", "ReduceMean", "Conv"})


def check_gradcam_layer(params: ExplainParams, model: RegisteredModel) -> None:
    """gradcam.layer names a tensor or node of the graph; without one, the graph has a
    convolution or global pool for the worker to choose."""
    layer = params.gradcam.layer
    if layer is not None:
        if layer not in layer_names(model.onnx_path):
            raise InvalidParams(
                f"params.gradcam.layer: model {model.name!r} has no tensor or node named {layer!r}",
                errors=[{"loc": ["params", "gradcam", "layer"], "msg": f"unknown layer {layer!r}"}],
            )
        return
    ops = _op_types(model.onnx_path)
    if ops is not None and not FEATURE_MAP_OPS & ops:
        raise InvalidParams(
            f"params.method: model {model.name!r} has no convolution or global pool to compute "
            "Grad-CAM on; use a perturbation method (lime, kernel_shap, partition_shap, "
            "occlusion)",
            errors=[{"loc": ["params", "method"], "msg": "no convolutional layer"}],
        )


def _op_types(path: Path) -> frozenset[str] | None:
    """The node types of the graph, or None where it cannot be read: the worker that loads it
    then ends the job `failed` with the reason (a model folder is the operator's to fix)."""
    try:
        return _graph_op_types(str(path), path.stat().st_mtime_ns)
    except Exception:  # onnx raises DecodeError, OSError, ValueError …
        return None


@functools.lru_cache(maxsize=16)
def _graph_op_types(path: str, mtime_ns: int) -> frozenset[str]:
    graph = onnx.load(path, load_external_data=False).graph
    return frozenset(node.op_type for node in graph.node)


def ensure_room(
    queue: Queue, settings: Settings, *, waiting: int | None = None, adding: int = 1
) -> None:
    """Backpressure: 503 with Retry-After unless the queue has room for `adding` more jobs
    below max_queue_length (a batch needs room for each of its new jobs, or none is queued).
    `waiting`: the queue's length where the caller has read it already."""
    waiting = queue.count if waiting is None else waiting
    if waiting + adding > settings.max_queue_length:
        room = max(settings.max_queue_length - waiting, 0)
        detail = (
            f"the queue is full ({settings.max_queue_length} jobs waiting)"
            if room == 0
            else f"the queue has room for {room} more jobs, not the {adding} of this request"
        )
        raise ServiceUnavailable(f"{detail}; try again later", retry_after=settings.retry_after_s)


def owned_cache_key(cache_key: str, owner: str) -> str:
    """The cache is per API key: key B must never be answered with key A's job (its id would
    let B read A's result). Without keys it is shared, as before keys existed."""
    return f"{owner}:{cache_key}" if owner else cache_key


@dataclass(frozen=True)
class Checked:
    """A submission that passed every submit-time check; the decoded pixels are dropped."""

    image: bytes
    sha256: str
    params: ExplainParams


def check(submission: Submission, *, settings: Settings, registry: ModelRegistry) -> Checked:
    """Everything that can be known before queueing: the params, the model's card and graph,
    the image (decoded once), and every rule of glimpse/limits.py on its size."""
    params = normalize(submission.params, settings, registry)
    return check_image(submission.image, params, settings=settings, registry=registry)


def check_image(
    data: bytes, params: ExplainParams, *, settings: Settings, registry: ModelRegistry
) -> Checked:
    """`check` of an image under params `normalize` made."""
    image = decode_image(data, max_pixels=settings.max_image_pixels)
    card = registry.get(params.model or settings.default_model).card
    check_request(params, card, image.height, image.width, settings)
    return Checked(image=data, sha256=image.sha256, params=params)


def submit(
    submission: Submission,
    *,
    settings: Settings,
    store: JobStore,
    queue: Queue,
    registry: ModelRegistry,
    owner: str = "",
) -> tuple[JobRecord, bool]:
    """(the job, whether it is new). An identical earlier job of the same owner (API key id,
    '' without keys) is reused unless cache=false."""
    checked = check(submission, settings=settings, registry=registry)
    return enqueue(checked, settings=settings, store=store, queue=queue, owner=owner)


def enqueue(
    checked: Checked, *, settings: Settings, store: JobStore, queue: Queue, owner: str = ""
) -> tuple[JobRecord, bool]:
    """Queue a checked submission, or answer its cached twin; see `submit`."""
    return enqueue_many([checked], settings=settings, store=store, queue=queue, owner=owner)[0]


#: What `enqueue_many` hands its `also`: the transaction, and the job of each submission.
AlsoWrite = Callable[[Pipeline, list[JobRecord]], None]


def enqueue_many(
    checked: Sequence[Checked],
    *,
    settings: Settings,
    store: JobStore,
    queue: Queue,
    owner: str = "",
    also: AlsoWrite | None = None,
) -> list[tuple[JobRecord, bool]]:
    """Queue checked submissions, each answered by its cached twin where it has one (unless
    cache=false); (the job, whether it is new) of each, in order. Identical ones among them
    share one job, as they would one after the other. All new jobs are stored and queued in
    one MULTI/EXEC, with the writes of `also` (a batch's record): all of them, or none; 503
    when the queue has no room for every new one."""
    _check_offered(checked, store=store, queue=queue, settings=settings)
    keys = [owned_cache_key(one.params.cache_key(one.sha256), owner) for one in checked]
    # One round trip asks for the cache entries and the queue's length: under load, every
    # wait on Redis is a wait for the GIL too.
    with store.redis.pipeline(transaction=False) as probe:
        for key in keys:
            probe.get(store.cache_index_key(key))
        probe.llen(queue.key)
        *cached_ids, waiting = probe.execute()
    reused: dict[str, JobRecord] = {}
    for one, key, cached_id in zip(checked, keys, cached_ids, strict=True):
        if one.params.cache and cached_id is not None and key not in reused:
            existing = store.reusable(cached_id.decode(), owner=owner)
            if existing is not None:
                reused[key] = existing
    # The submissions that need a job of their own: one per cache key, or each with cache off.
    slots = [
        None if one.params.cache and key in reused else (key if one.params.cache else i)
        for i, (one, key) in enumerate(zip(checked, keys, strict=True))
    ]
    fresh = {slot for slot in slots if slot is not None}
    if fresh:
        ensure_room(queue, settings, waiting=waiting, adding=len(fresh))
    made: dict[str | int, JobRecord] = {}
    answers: list[tuple[JobRecord, bool]] = []
    with store.redis.pipeline(transaction=True) as pipe:
        pipe.multi()  # explicit, as RQ expects of a pipeline it is handed
        for one, key, slot in zip(checked, keys, slots, strict=True):
            if slot is None:
                answers.append((reused[key], False))
            elif slot in made:
                answers.append((made[slot], False))
            else:
                made[slot] = _add_job(
                    one, key, pipe, settings=settings, store=store, queue=queue, owner=owner
                )
                answers.append((made[slot], True))
        if also is not None:
            also(pipe, [job for job, _ in answers])
        if made or also is not None:
            pipe.execute()
    return answers


def _check_offered(
    checked: Sequence[Checked], *, store: JobStore, queue: Queue, settings: Settings
) -> None:
    """422 for a gradient method no live worker offers (only these depend on the workers)."""
    gradients = {
        (method, "method" if one.params.methods is None else "methods")
        for one in checked
        for method in one.params.methods or [one.params.method]
        if method in GRADIENT_METHODS
    }
    if gradients:
        runtimes = live_runtimes(store, queue, settings)
        for method, field in sorted(gradients):
            check_offered(method, runtimes, field)


def _add_job(
    checked: Checked,
    cache_key: str,
    pipe: Pipeline,
    *,
    settings: Settings,
    store: JobStore,
    queue: Queue,
    owner: str,
) -> JobRecord:
    """Store a new job and queue it, in the caller's transaction: a job is both or neither."""
    params = checked.params
    job = store.create(
        image=checked.image,
        sha256=checked.sha256,
        params=params.model_dump(mode="json"),
        cache_key=cache_key,
        total=planned_evaluations(params),
        owner=owner,
        pipeline=pipe,
    )
    queue.enqueue_call(
        JOB_FUNCTION,
        args=[job.id],
        job_id=job.id,
        timeout=settings.job_timeout_s,
        ttl=settings.result_ttl_s,
        result_ttl=600,
        failure_ttl=settings.result_ttl_s,
        on_failure=Callback(FAILURE_CALLBACK),
        # Only a dead worker's job is retried: the job function records its own failures.
        retry=Retry(max=settings.job_retries) if settings.job_retries else None,
        description=f"explain {params.method} {params.model} {checked.sha256[:12]}",
        pipeline=pipe,
    )
    return job


def get(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    if job is None:
        raise NotFound(f"no explanation job {job_id!r}")
    return job


def resource(job: JobRecord) -> Job:
    return Job.model_validate(
        {
            "id": job.id,
            "status": job.status,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "progress": {"done": job.done, "total": job.total},
            "params": job.params,
            "error": job.error,
            "result": (
                ExplanationResult.model_validate_json(job.result_json) if job.result_json else None
            ),
        }
    )


def delete(store: JobStore, queue: Queue, job_id: str) -> None:
    """Cancel and delete. A queued job leaves the queue; a running one stops at its next
    progress report, when its worker finds the job gone."""
    if discard(store, queue, job_id) is None:
        raise NotFound(f"no explanation job {job_id!r}")


def discard(store: JobStore, queue: Queue, job_id: str) -> str | None:
    """`delete` of a job that may be gone already: the status it had, or None."""
    status = store.delete(job_id)
    if status == "queued":
        # ValueError: a worker took the job and ended an execution of it between RQ's reading
        # of its execution registry and of the execution (RQ 3). The job is then no longer
        # queued: its worker finds the record gone and stops, and RQ expires its own copy.
        with contextlib.suppress(NoSuchJobError, ValueError):
            RQJob.fetch(job_id, connection=queue.connection, serializer=queue.serializer).delete()
    return status
