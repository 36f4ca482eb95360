"""`GET /v1/explanations/{id}/events`: a job's status and progress as Server-Sent Events
(app/events.py streams them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from app import events
from app.api.deps import StoreDep
from app.auth import VisibleJobId, authenticate
from app.openapi_docs import GET_ERRORS, problem_responses
from glimpse.errors import NotFound

router = APIRouter(
    prefix="/v1/explanations",
    tags=["explanations"],
    dependencies=[Depends(authenticate)],
    responses=problem_responses((401,)),
)

EXAMPLE = (
    "retry: 2000\n"
    'data: {"id":"9c1f0b6e2d4a4f1b8e7c3a5d6f708192","status":"queued",'
    '"progress":{"done":0,"total":500},"started_at":null,"finished_at":null,"error":null}\n\n'
    'data: {"id":"9c1f0b6e2d4a4f1b8e7c3a5d6f708192","status":"running",'
    '"progress":{"done":192,"total":500},"started_at":"2025-01-01T12:00:00.410Z",'
    '"finished_at":null,"error":null}\n\n'
    ": keep-alive\n\n"
    "id: end\n"
    'data: {"id":"9c1f0b6e2d4a4f1b8e7c3a5d6f708192","status":"finished",'
    '"progress":{"done":500,"total":500},"started_at":"2025-01-01T12:00:00.410Z",'
    '"finished_at":"2025-01-01T12:00:05.120Z","error":null}\n\n'
)

#: Each event, as OpenAPI 3.2's `itemSchema` of an event stream (what FastAPI writes for its
#: own SSE routes): `data` holds the JSON of EVENT_DATA.
EVENT_DATA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "progress", "started_at", "finished_at", "error"],
    "properties": {
        "id": {"type": "string", "description": "the job id"},
        "status": {
            "enum": ["queued", "running", "finished", "failed", "canceled", "deleted"],
            "description": "the job's status, or `deleted` once it is gone",
        },
        "progress": {
            "type": "object",
            "required": ["done", "total"],
            "properties": {
                "done": {"type": "integer", "description": "model evaluations done"},
                "total": {"type": "integer", "description": "model evaluations planned"},
            },
        },
        "started_at": {"type": ["string", "null"], "description": "ISO-8601 UTC"},
        "finished_at": {"type": ["string", "null"], "description": "ISO-8601 UTC"},
        "error": {
            "type": ["object", "null"],
            "description": "{title, detail} once failed",
            "properties": {"title": {"type": "string"}, "detail": {"type": "string"}},
        },
    },
}
EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": EVENT_DATA,
        },
        "id": {"type": "string", "description": "`end` on the last event"},
        "retry": {"type": "integer", "minimum": 0, "description": "on the first: 2000 ms"},
    },
}


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    summary="The job's status and progress, live, as Server-Sent Events",
    description=(
        "A `text/event-stream` of the job's state: an event at once, then one whenever its "
        "status or progress changes (read every 0.25 s), a `: keep-alive` comment after 15 s "
        "of quiet, until the job ends. Each event's `data` is one line of JSON: `id`, "
        "`status`, `progress` {`done`, `total`}, `started_at`, `finished_at`, `error` "
        "({`title`, `detail`} once failed). The stream closes after the event of a final "
        "status (`finished`, `failed`, `canceled`) or of the job's deletion (`status: "
        '"deleted"`); that last event has `id: end`. Read the result with '
        "`GET /v1/explanations/{id}` then. An EventSource that reconnects after the end "
        "(`Last-Event-ID: end`) gets 204 and stops; a job of another API key is a 404, as an "
        "unknown one, before anything is streamed."
    ),
    responses={
        200: {
            "description": "the events, until the job ends",
            "content": {"text/event-stream": {"itemSchema": EVENT, "example": EXAMPLE}},
            "headers": {
                "Cache-Control": {"description": "no-cache", "schema": {"type": "string"}},
                "X-Accel-Buffering": {
                    "description": "no (nginx passes each event on at once)",
                    "schema": {"type": "string"},
                },
            },
        },
        204: {"description": "`Last-Event-ID: end` and the job has ended: nothing more to send"},
        **problem_responses(GET_ERRORS),
    },
)
async def stream_events(
    job_id: VisibleJobId,
    store: StoreDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="sent by EventSource when it reconnects: `end` after the final event",
        ),
    ] = None,
) -> Response:
    first = await run_in_threadpool(events.snapshot, store, job_id)
    if first is None:
        raise NotFound(f"no explanation job {job_id!r}")
    if last_event_id == events.END_ID and first["status"] in events.FINAL:
        return Response(status_code=204)
    return StreamingResponse(
        events.stream(store, job_id, first),
        media_type="text/event-stream",
        headers=events.HEADERS,
    )
