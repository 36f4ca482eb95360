"""Live progress of a job as Server-Sent Events (`GET /v1/explanations/{id}/events`).

The stream sends the job's state at once, then reads it every POLL_S (one HMGET of the
fields an event carries, in the thread pool: the Redis connection goes back to the pool
between reads, so an idle client holds none) and sends an event whenever it changed; a
comment after HEARTBEAT_S of quiet keeps proxies from closing the connection. It ends after
the event of a final status (finished, failed, canceled) or of the job's deletion (status
`deleted`). That last event has the id `end`: an EventSource that reconnects anyway sends it
back as `Last-Event-ID` and is answered 204, the SSE spec's "stop reconnecting".

A Redis error skips a read: the stream goes on (heartbeats too) until Redis answers again.
A client that goes away cancels the generator at its next await (Starlette listens for the
disconnect while it streams).

    retry: 2000
    data: {"id":"…","status":"queued","progress":{"done":0,"total":60},…}

    data: {"id":"…","status":"running","progress":{"done":32,"total":60},…}

    id: end
    data: {"id":"…","status":"finished","progress":{"done":60,"total":60},…}
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.concurrency import run_in_threadpool
from redis.exceptions import RedisError

from glimpse.store import TERMINAL, JobStore, is_job_id

log = logging.getLogger("glimpse.api")

POLL_S = 0.25  # between reads of the job
HEARTBEAT_S = 15.0  # of quiet before a comment line
RETRY_MS = 2000  # the reconnection delay EventSource is told to use
END_ID = "end"  # the id of the final event
DELETED = "deleted"
FINAL = TERMINAL | {DELETED}
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT = b": keep-alive\n\n"

#: The job hash's fields an event carries (glimpse/store.py).
FIELDS = ("status", "done", "total", "started_at", "finished_at", "error")


def snapshot(store: JobStore, job_id: str) -> dict[str, Any] | None:
    """The job as an event tells it: id, status, progress {done, total}, started_at,
    finished_at, error ({title, detail} once failed); None when there is no such job."""
    if not is_job_id(job_id):
        return None
    raw: list[bytes | None] = store.redis.hmget(store.job_key(job_id), FIELDS)  # type: ignore[assignment]
    if raw[0] is None:
        return None
    status, done, total, started, finished, error = (v.decode() if v else "" for v in raw)
    return {
        "id": job_id,
        "status": status,
        "progress": {"done": int(done or 0), "total": int(total or 0)},
        "started_at": started or None,
        "finished_at": finished or None,
        "error": json.loads(error) if error else None,
    }


def encode(state: dict[str, Any], *, retry: bool = False) -> bytes:
    """One event: `state` as JSON on one data line; the final one gets the id END_ID."""
    lines = [f"retry: {RETRY_MS}"] if retry else []
    if state["status"] in FINAL:
        lines.append(f"id: {END_ID}")
    lines.append("data: " + json.dumps(state, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


async def stream(store: JobStore, job_id: str, first: dict[str, Any]) -> AsyncIterator[bytes]:
    """The events of job `job_id` from its state `first` (just read) until it ends."""
    last = first
    yield encode(first, retry=True)
    quiet_since = time.monotonic()
    unreachable = False
    while last["status"] not in FINAL:
        await asyncio.sleep(POLL_S)
        try:
            now = await run_in_threadpool(snapshot, store, job_id)
        except RedisError as exc:
            if not unreachable:
                log.warning("events of job %s: Redis unreachable (%s); retrying", job_id, exc)
            unreachable, now = True, last
        else:
            unreachable = False
        if now is None:  # deleted: say so, with what it had done
            now = {**last, "status": DELETED}
        if now != last:
            last = now
            yield encode(now)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= HEARTBEAT_S:
            yield HEARTBEAT
            quiet_since = time.monotonic()
