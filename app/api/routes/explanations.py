"""`/v1/explanations`: submit, read, cancel/delete, and the artifacts of a finished job."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app import artifacts, submissions
from app.api.deps import QueueDep, RegistryDep, SettingsDep, StoreDep
from app.api.visual import (
    DtypeQuery,
    FigureVisualDep,
    MapMaxSideQuery,
    OverlayVisualDep,
    checked,
)
from app.auth import OwnerDep, VisibleJobId, authenticate
from app.openapi_docs import (
    ARTIFACT_ERRORS,
    GET_ERRORS,
    SUBMIT_ERRORS,
    SUBMIT_REQUEST_BODY,
    problem_responses,
)
from app.ratelimit import limit_submissions
from app.schemas import Job
from app.uploads import read_submission
from glimpse.render import OverlayStyle

router = APIRouter(
    prefix="/v1/explanations",
    tags=["explanations"],
    dependencies=[Depends(authenticate)],
    responses=problem_responses((401,)),
)

# Every route that names a job takes its id as a VisibleJobId: with API keys on, a job of
# another key is a 404 (app/auth.py).
JobId = VisibleJobId


@router.post(
    "",
    response_model=Job,
    status_code=202,
    summary="Submit an image to explain",
    description=(
        "Send the image as multipart/form-data (`image` file part, optional `params` JSON "
        'string part) or as JSON `{"image_b64", "params"}`. Answers 202 with the new job '
        "and `Location`, or 200 with an identical earlier job (same image bytes, model and "
        "normalized params; not failed or canceled) unless `params.cache` is false."
    ),
    responses={
        200: {"model": Job, "description": "An identical earlier job (cache hit)."},
        202: {
            "description": "A new job, queued.",
            "headers": {
                "Location": {"description": "/v1/explanations/{id}", "schema": {"type": "string"}}
            },
        },
        **problem_responses(SUBMIT_ERRORS),
    },
    openapi_extra={"requestBody": SUBMIT_REQUEST_BODY},
    dependencies=[Depends(limit_submissions)],
)
async def submit_explanation(
    request: Request,
    owner: OwnerDep,
    settings: SettingsDep,
    store: StoreDep,
    queue: QueueDep,
    registry: RegistryDep,
) -> Any:
    submission = await read_submission(request, settings.max_upload_bytes)
    job, created = await run_in_threadpool(
        submissions.submit,
        submission,
        settings=settings,
        store=store,
        queue=queue,
        registry=registry,
        owner=owner,
    )
    body = submissions.resource(job).model_dump(mode="json")
    location = f"/v1/explanations/{job.id}"
    return JSONResponse(body, status_code=202 if created else 200, headers={"Location": location})


@router.get(
    "/{job_id}",
    response_model=Job,
    summary="The job: status, progress, normalized params, error or result",
    responses=problem_responses(GET_ERRORS),
)
def get_explanation(job_id: JobId, store: StoreDep) -> Job:
    return submissions.resource(submissions.get(store, job_id))


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Cancel a queued or running job and delete it and its data",
    responses=problem_responses(GET_ERRORS),
)
def delete_explanation(job_id: JobId, store: StoreDep, queue: QueueDep) -> Response:
    submissions.delete(store, queue, job_id)
    return Response(status_code=204)


@router.get(
    "/{job_id}/segments.png",
    response_class=Response,
    summary="Superpixel ids: 16-bit grayscale PNG at the original size",
    responses={
        200: {"content": {"image/png": {}}, "description": "each pixel holds its superpixel id"},
        **problem_responses(ARTIFACT_ERRORS),
    },
)
def get_segments(job_id: JobId, store: StoreDep) -> Response:
    return Response(artifacts.segments_png(store, job_id), media_type="image/png")


@router.get(
    "/{job_id}/attribution.npy",
    response_class=Response,
    summary="Attribution maps: float32 [K, H, W] in NumPy .npy format",
    description=(
        "One map per explained class, at the original size, float32, unless asked otherwise: "
        "`dtype=float16` halves the bytes; `max_side=N` area-averages each map to a size "
        "whose longer side is at most N (each value the mean of the pixels it covers)."
    ),
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "one map per explained class, in `explanations` order",
        },
        **problem_responses(ARTIFACT_ERRORS),
    },
)
def get_attribution(
    job_id: JobId,
    store: StoreDep,
    dtype: DtypeQuery = "float32",
    max_side: MapMaxSideQuery = None,
) -> Response:
    return Response(
        artifacts.attribution_npy(store, job_id, dtype=dtype, max_side=max_side),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{job_id}-attribution.npy"'},
    )


@router.get(
    "/{job_id}/overlay.png",
    response_class=Response,
    summary="The explanation drawn over the photo, at the original size",
    description=(
        "`style` picks the picture; the heatmap is drawn as its visualisation options say "
        "(modelled on Vertex AI's): `polarity` (the signs coloured), `clip_upper`/"
        "`clip_lower` (percentiles of |attribution|: full strength at the upper, nothing "
        "shown below the lower), `color_map`, `overlay` (the base under the colours), `draw` "
        "(pixels or outlines), `legend` (a colour bar) and `uncertain` (`hatch`: hatching over "
        "the superpixels whose sign is uncertain). `max_side` applies to every style: "
        "the photo and maps are shrunk to it first, then drawn. With every option at its "
        "default the heatmap is drawn as before they existed. Each rendering is kept with the job."
    ),
    responses={
        200: {"content": {"image/png": {}}, "description": "the rendered overlay"},
        **problem_responses(ARTIFACT_ERRORS),
    },
)
def get_overlay(
    job_id: JobId,
    store: StoreDep,
    settings: SettingsDep,
    visual: OverlayVisualDep,
    class_index: Annotated[
        int | None,
        Query(ge=0, description="an explained class; default: the first in `explanations`"),
    ] = None,
    style: Annotated[
        OverlayStyle,
        Query(
            description="heatmap (diverging colours), boundaries (lime), highlight (top %), "
            "grid (every explained class side by side: the same as figure.png)"
        ),
    ] = "heatmap",
    negative: Annotated[
        bool, Query(description="boundaries: also outline the most negative superpixels")
    ] = False,
    num_features: Annotated[
        int, Query(ge=1, le=1000, description="boundaries: how many superpixels to outline")
    ] = 5,
    percentile: Annotated[
        float, Query(ge=0, le=100, description="highlight: tint superpixels above this percentile")
    ] = 95.0,
) -> Response:
    if style == "grid":  # the figure's defaults
        checked(visual, figure=True)
    png = artifacts.overlay_png(
        store,
        settings,
        job_id,
        class_index=class_index,
        style=style,
        negative=negative,
        num_features=num_features,
        percentile=percentile,
        visual=visual,
    )
    return Response(png, media_type="image/png")


@router.get(
    "/{job_id}/figure.png",
    response_class=Response,
    summary="The image and every explained class side by side, on one colour scale",
    description=(
        "As shap's `image_plot`: the photo, then one panel per class in `explanations` order, "
        "labelled with its name and probability, red for evidence for the class and blue "
        "against, one colour bar for all (the 99.9th percentile of |attribution|). Takes "
        "`polarity`, `clip_upper` (99.9), `clip_lower` (0), `color_map` (shap's "
        "`red_transparent_blue`) and `max_side` (the figure's longer side) as overlay.png."
    ),
    responses={
        200: {"content": {"image/png": {}}, "description": "the class grid figure"},
        **problem_responses(ARTIFACT_ERRORS),
    },
)
def get_figure(
    job_id: JobId,
    store: StoreDep,
    settings: SettingsDep,
    visual: FigureVisualDep,
    compare: Annotated[
        bool,
        Query(
            description="a comparison job (params.methods): the photo and every method's map "
            "side by side, one row per explained class, each map on its own scale, its "
            "deletion/insertion AUC, seconds and evaluations under it; 404 for other jobs"
        ),
    ] = False,
) -> Response:
    png = artifacts.figure_png(store, settings, job_id, visual, compare=compare)
    return Response(png, media_type="image/png")


@router.get(
    "/{job_id}/hierarchy.npy",
    response_class=Response,
    summary="partition_shap's coarse-to-fine maps: float32 [K, L, H, W] in .npy format",
    description=(
        "Map `l` of class `k` paints on each pixel the value (the sum of its superpixels' "
        "Owen values) of the node at depth `l` of the split tree that holds the pixel (or of "
        "its superpixel where the tree is shallower): level 0 is f(x) - f(background) "
        "everywhere, the last level equals attribution.npy. 404 for other methods."
    ),
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "one stack of level maps per explained class",
        },
        **problem_responses(ARTIFACT_ERRORS),
    },
)
def get_hierarchy(job_id: JobId, store: StoreDep) -> Response:
    return Response(
        artifacts.hierarchy_npy(store, job_id),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{job_id}-hierarchy.npy"'},
    )
