"""`/v1/batches`: several images in one submission, one explanation job per image."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app import batches
from app.api.deps import BatchStoreDep, QueueDep, RegistryDep, SettingsDep, StoreDep
from app.auth import OwnerDep, authenticate
from app.openapi_docs import BATCH_REQUEST_BODY, GET_ERRORS, SUBMIT_ERRORS, problem_responses
from app.ratelimit import count_images, limit_submissions
from app.schemas import Batch
from app.uploads import read_batch

router = APIRouter(
    prefix="/v1/batches",
    tags=["batches"],
    dependencies=[Depends(authenticate)],
    responses=problem_responses((401,)),
)

BatchId = Annotated[str, Path(description="the batch id (32 hex digits)")]


@router.post(
    "",
    response_model=Batch,
    status_code=202,
    summary="Submit several images to explain, one job each",
    description=(
        "Send the images as multipart/form-data (one `image` file part per image, an optional "
        '`params` JSON string part for all of them) or as JSON `{"images_b64": [...], '
        '"params"}`. Every image is checked as `POST /v1/explanations` checks one, before any '
        "is queued: a bad image refuses the batch with the 4xx of a single submission, "
        '`errors[].loc` `["body", "images", i]` naming it, and nothing is queued. Otherwise one '
        "job per image (an identical earlier job, or an identical image of the same batch, "
        "answers from the cache unless `params.cache` is false), all queued in one "
        "transaction. At most `GLIMPSE_MAX_BATCH_IMAGES` images (64) and "
        "`GLIMPSE_MAX_BATCH_BYTES` together (413); the queue must have room for every new job "
        "(503) and the rate limit for every image (429)."
    ),
    responses={
        202: {
            "description": "The batch, its jobs queued (or reused).",
            "headers": {
                "Location": {"description": "/v1/batches/{id}", "schema": {"type": "string"}}
            },
        },
        **problem_responses(SUBMIT_ERRORS),
    },
    openapi_extra={"requestBody": BATCH_REQUEST_BODY},
    dependencies=[Depends(limit_submissions)],
)
async def submit_batch(
    request: Request,
    owner: OwnerDep,
    settings: SettingsDep,
    store: StoreDep,
    batch_store: BatchStoreDep,
    queue: QueueDep,
    registry: RegistryDep,
) -> Any:
    submission = await read_batch(request, settings)
    await count_images(request, len(submission.images), loc=["body", "images"])
    batch = await run_in_threadpool(
        batches.submit,
        submission,
        settings=settings,
        store=store,
        batches=batch_store,
        queue=queue,
        registry=registry,
        owner=owner,
    )
    body = batches.resource(batch).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/batches/{batch.id}"})


@router.get(
    "/{batch_id}",
    response_model=Batch,
    summary="The batch: its status, counts, summed progress and each job's status",
    responses=problem_responses(GET_ERRORS),
)
def get_batch(batch_id: BatchId, owner: OwnerDep, batch_store: BatchStoreDep) -> Batch:
    return batches.resource(batches.get(batch_store, batch_id, owner))


@router.delete(
    "/{batch_id}",
    status_code=204,
    response_class=Response,
    summary="Cancel and delete every job of the batch, and the batch",
    responses=problem_responses(GET_ERRORS),
)
def delete_batch(
    batch_id: BatchId,
    owner: OwnerDep,
    batch_store: BatchStoreDep,
    store: StoreDep,
    queue: QueueDep,
) -> Response:
    batches.delete(batch_store, store, queue, batch_id, owner)
    return Response(status_code=204)
