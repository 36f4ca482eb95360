"""The Python client's reading of a job's events stream (`GET /v1/explanations/{id}/events`,
Server-Sent Events; app/events.py sends them): the SSE parsing of what Glimpse sends, the
time limits, and when to give up on it for polling.

`job_states` yields the JSON of each event (`{"id", "status", "progress": {"done", "total"},
…}`) up to the final one (status finished, failed, canceled or deleted), and ends early
where the stream is unavailable: not served (an older server answers 404), not an event
stream, cut, ended before the job did, sending what is not an event of a job, or silent for
SILENCE_S (the server sends a comment after 15 s of quiet, so a silent stream is stalled, or
held back by a buffering proxy). The caller then polls. It ends at the deadline too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

SILENCE_S = 20.0
FINAL = frozenset({"finished", "failed", "canceled", "deleted"})


def job_states(
    http: httpx.Client, job_id: str, deadline: float, *, slack_s: float = 1.0
) -> Iterator[dict[str, Any]]:
    """The events of job `job_id` until its final one, or until `deadline` (time.monotonic()).
    A read waits at most min(SILENCE_S, the time left); where the next one could outlast the
    deadline by more than `slack_s` (at least 1 s), the stream is opened again with a shorter
    wait (its first event is the job as it is then, so nothing is missed)."""
    slack_s = max(slack_s, 1.0)
    url = f"/v1/explanations/{job_id}/events"
    while (left := deadline - time.monotonic()) > 0:
        read_s = min(SILENCE_S, left)
        t = http.timeout
        timeout = httpx.Timeout(connect=t.connect, read=read_s, write=t.write, pool=t.pool)
        headers = {"Accept": "text/event-stream"}
        try:
            with http.stream("GET", url, headers=headers, timeout=timeout) as response:
                kind = response.headers.get("content-type", "")
                if response.status_code != 200 or not kind.startswith("text/event-stream"):
                    return
                for data in events(response.iter_lines()):
                    if data is not None:
                        state = job_state(data)
                        yield state
                        if state["status"] in FINAL:
                            return
                    if deadline - time.monotonic() < read_s - slack_s:
                        break  # the next read could outlast the deadline: open it again
                else:
                    return  # the stream ended before the job did
        except (httpx.HTTPError, httpx.StreamError, ValueError):
            return  # cut, silent too long, or not a job's events


def events(lines: Iterable[str]) -> Iterator[str | None]:
    """The data of each event of a text/event-stream, parsed as the SSE spec says (the other
    fields, id and retry, are not needed here), and None for each comment line (the
    heartbeats), so that the reader wakes to look at the time."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith(":"):
            yield None
        else:
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)


def job_state(data: str) -> dict[str, Any]:
    """An event's JSON, once it is known to be a job's state; ValueError otherwise."""
    state = json.loads(data)
    if not (
        isinstance(state, dict)
        and isinstance(state.get("status"), str)
        and isinstance(state.get("progress"), dict)
    ):
        raise ValueError(f"not an event of a job: {data[:100]!r}")
    return state
