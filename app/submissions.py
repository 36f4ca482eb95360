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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
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
from glimpse.limits import check_budget, check_classes, check_request
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
    if params.method == "gradcam":
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


def ensure_room(queue: Queue, settings: Settings, *, waiting: int | None = None) -> None:
    """Backpressure: 503 with Retry-After once the queue holds max_queue_length jobs.
    `waiting`: the queue's length where the caller has read it already."""
    if (queue.count if waiting is None else waiting) >= settings.max_queue_length:
        raise ServiceUnavailable(
            f"the queue is full ({settings.max_queue_length} jobs waiting); try again later",
            retry_after=settings.retry_after_s,
        )


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
    image = decode_image(submission.image, max_pixels=settings.max_image_pixels)
    card = registry.get(params.model or settings.default_model).card
    check_request(params, card, image.height, image.width, settings)
    return Checked(image=submission.image, sha256=image.sha256, params=params)


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
    params = checked.params
    if params.method in GRADIENT_METHODS:  # only these depend on what the workers have
        check_offered(params.method, live_runtimes(store, queue, settings))
    cache_key = owned_cache_key(params.cache_key(checked.sha256), owner)
    # One round trip asks for both the cache entry and the queue's length: under load, every
    # wait on Redis is a wait for the GIL too.
    with store.redis.pipeline(transaction=False) as probe:
        probe.get(store.cache_index_key(cache_key))
        probe.llen(queue.key)
        cached_id, waiting = probe.execute()
    if params.cache and cached_id is not None:
        existing = store.reusable(cached_id.decode(), owner=owner)
        if existing is not None:
            return existing, False
    ensure_room(queue, settings, waiting=waiting)
    # One MULTI/EXEC stores the job and queues it: a job is both or neither, whatever fails.
    with store.redis.pipeline(transaction=True) as pipe:
        pipe.multi()  # explicit, as RQ expects of a pipeline it is handed
        job = store.create(
            image=checked.image,
            sha256=checked.sha256,
            params=params.model_dump(mode="json"),
            cache_key=cache_key,
            total=params.budget,
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
        pipe.execute()
    return job, True


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
    status = store.delete(job_id)
    if status is None:
        raise NotFound(f"no explanation job {job_id!r}")
    if status == "queued":
        # ValueError: a worker took the job and ended an execution of it between RQ's reading
        # of its execution registry and of the execution (RQ 3). The job is then no longer
        # queued: its worker finds the record gone and stops, and RQ expires its own copy.
        with contextlib.suppress(NoSuchJobError, ValueError):
            RQJob.fetch(job_id, connection=queue.connection, serializer=queue.serializer).delete()
