"""`GET /v1/explanations/{id}/events` (Server-Sent Events) end to end, and GlimpseClient.wait
over it: the session's uvicorn, Redis and worker for jobs that run; an in-process app on its
own queue (no worker: its jobs stay queued) for jobs that must not move."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from api_helpers import FAST_PARAMS, assert_problem, submit_json
from services import Api, RedisServer

from app import events
from glimpse.client import GlimpseClient, JobCanceledError, WaitTimeoutError
from glimpse.store import new_job_id

RUNNING = {**FAST_PARAMS, "num_samples": 200, "cache": False}


def blocks(lines: Iterator[str]) -> Iterator[dict[str, list[str]]]:
    """The blocks of a text/event-stream, each as {field: [values]} (comments under ':')."""
    block: dict[str, list[str]] = {}
    for line in lines:
        if not line:
            if block:
                yield block
            block = {}
            continue
        name, _, value = line.partition(":")
        block.setdefault(name, []).append(value.removeprefix(" "))


def data(block: dict[str, list[str]]) -> dict:
    return json.loads("\n".join(block["data"]))


def stream_of(client: httpx.Client, job_id: str, **headers: str):
    return client.stream("GET", f"/v1/explanations/{job_id}/events", headers=headers)


def submitted(client: httpx.Client, image: bytes, **params: object) -> str:
    r = submit_json(client, image, {**RUNNING, **params})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


@pytest.fixture
def quiet(app_client) -> httpx.Client:
    """A client of an app whose queue no worker reads: its jobs stay queued."""
    return app_client()


def test_a_job_streams_to_finished_with_monotone_progress(
    client: httpx.Client, chelsea_png: bytes
) -> None:
    job_id = submitted(client, chelsea_png, seed=101)
    with stream_of(client, job_id) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        seen = list(blocks(r.iter_lines()))  # until the server closes the stream
    assert seen[0]["retry"] == [str(events.RETRY_MS)]
    states = [data(b) for b in seen if "data" in b]
    assert all(s["id"] == job_id and set(s["progress"]) == {"done", "total"} for s in states)
    done = [s["progress"]["done"] for s in states]
    assert done == sorted(done) and len(set(done)) >= 3, done  # several batches of 32
    assert "running" in {s["status"] for s in states}
    final = states[-1]
    assert final["status"] == "finished" and final["finished_at"] and final["error"] is None
    assert final["progress"] == {"done": 200, "total": 200}
    assert seen[-1]["id"] == ["end"] and [s["status"] for s in states].count("finished") == 1
    assert all(len(b["data"]) == 1 for b in seen if "data" in b)  # one line of JSON each
    # An EventSource reconnecting after the end sends the final id back: 204, stop.
    again = client.get(f"/v1/explanations/{job_id}/events", headers={"Last-Event-ID": "end"})
    assert again.status_code == 204 and again.content == b""
    # Without it, a finished job's stream is its one final event.
    once = client.get(f"/v1/explanations/{job_id}/events")
    assert [data(b)["status"] for b in blocks(iter(once.text.split("\n")))] == ["finished"]


def test_an_unknown_job_is_a_404_problem_before_the_stream(client: httpx.Client) -> None:
    for job_id in (new_job_id(), "not-a-job-id"):
        r = client.get(f"/v1/explanations/{job_id}/events")
        assert "no explanation job" in assert_problem(r, 404)["detail"]


def test_a_job_of_another_key_is_a_404(
    keyed_api: Api, worker, api_keys: tuple[str, str], small_png: bytes
) -> None:
    a, b = api_keys
    with (
        httpx.Client(base_url=keyed_api.url, headers={"X-API-Key": a}, timeout=30) as client_a,
        httpx.Client(base_url=keyed_api.url, headers={"X-API-Key": b}, timeout=30) as client_b,
    ):
        job_id = submitted(client_a, small_png, seed=102)
        theirs = assert_problem(client_b.get(f"/v1/explanations/{job_id}/events"), 404)
        unknown = new_job_id()
        none = assert_problem(client_b.get(f"/v1/explanations/{unknown}/events"), 404)
        assert theirs["detail"] == none["detail"].replace(unknown, job_id)  # nothing to learn
        with stream_of(client_a, job_id) as r:
            assert r.status_code == 200
            first = data(next(blocks(r.iter_lines())))
        assert first["id"] == job_id
        assert httpx.get(f"{keyed_api.url}/v1/explanations/{job_id}/events").status_code == 401
        client_a.delete(f"/v1/explanations/{job_id}")


def test_a_deleted_job_ends_its_stream(quiet: httpx.Client, small_png: bytes) -> None:
    job_id = submitted(quiet, small_png)
    with stream_of(quiet, job_id) as r:
        lines = r.iter_lines()
        first = next(blocks(lines))
        assert data(first)["status"] == "queued"
        assert quiet.delete(f"/v1/explanations/{job_id}").status_code == 204
        rest = list(blocks(lines))  # the server closes the stream after saying so
    assert [data(b)["status"] for b in rest] == ["deleted"]
    assert rest[0]["id"] == ["end"] and data(rest[0])["id"] == job_id
    assert_problem(quiet.get(f"/v1/explanations/{job_id}/events"), 404)


def test_a_quiet_stream_sends_heartbeats(
    quiet: httpx.Client, small_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_S", 0.3)  # the app runs in this process
    job_id = submitted(quiet, small_png)
    started = time.monotonic()
    with stream_of(quiet, job_id) as r:
        heard = []
        for line in r.iter_lines():
            heard.append(line)
            if heard.count(": keep-alive") == 2:
                break
    assert 0.5 < time.monotonic() - started < 5
    assert [line for line in heard if line.startswith("data:")][:1] and len(heard) >= 4
    quiet.delete(f"/v1/explanations/{job_id}")


def test_a_client_that_leaves_stops_the_stream(
    quiet: httpx.Client, small_png: bytes, redis_server: RedisServer
) -> None:
    job_id = submitted(quiet, small_png)
    key = f"variant:job:{job_id}".encode()

    def reads_of_the_job(seconds: float) -> int:
        commands = redis_server.commands_during(lambda: time.sleep(seconds))
        return sum(1 for c in commands if "HMGET" in c["command"] and key.decode() in c["command"])

    with stream_of(quiet, job_id) as r:
        lines = r.iter_lines()  # kept: an iterator dropped closes the connection
        next(lines)
        assert reads_of_the_job(1.0) >= 2  # it reads the job about every POLL_S
    time.sleep(0.5)  # the disconnect reaches the app
    assert reads_of_the_job(1.0) == 0
    quiet.delete(f"/v1/explanations/{job_id}")


def test_a_redis_outage_keeps_the_stream_open(
    app_client, small_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_S", 0.3)
    redis = RedisServer(appendonly=True)
    try:
        client = app_client(redis_url=redis.url)
        job_id = submitted(client, small_png)
        with stream_of(client, job_id) as r:
            lines = r.iter_lines()
            assert data(next(blocks(lines)))["status"] == "queued"
            redis.kill()
            beats = 0
            for line in lines:  # the stream goes on: heartbeats while Redis is away
                beats += line == ": keep-alive"
                if beats == 2:
                    break
            redis.start()
            assert client.delete(f"/v1/explanations/{job_id}").status_code == 204
            rest = [data(b)["status"] for b in blocks(lines) if "data" in b]
        assert rest == ["deleted"]
    finally:
        redis.stop()


def test_events_answer_503_while_redis_is_unreachable(app_client) -> None:
    from services import free_port

    client = app_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", retry_after_s=3)
    r = client.get(f"/v1/explanations/{new_job_id()}/events")
    assert_problem(r, 503)
    assert r.headers["retry-after"] == "3"


# --- GlimpseClient.wait --------------------------------------------------------------------
class Recording(httpx.HTTPTransport):
    """The real server's transport, recording each request's path; `events` answers, when
    set, every request for an events stream in the real one's stead (an older server, a
    proxy that cuts the stream)."""

    def __init__(self, events=None) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.events = events

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.events is not None and request.url.path.endswith("/events"):
            return self.events(request)
        return super().handle_request(request)


def test_wait_follows_the_events_stream(api: Api, worker, chelsea_png: bytes) -> None:
    transport = Recording()
    reported: list[tuple[int, int]] = []
    with GlimpseClient(api.url, transport=transport) as glimpse:
        job = glimpse.submit(chelsea_png, **{**RUNNING, "seed": 103})
        done = glimpse.wait(job, progress=lambda d, t: reported.append((d, t)))
    assert done.status == "finished" and done.result is not None
    assert done.result.stats.model_evaluations == 200
    assert reported[-1] == (200, 200) and len(reported) >= 3
    assert [d for d, _ in reported] == sorted(d for d, _ in reported)
    resource = f"/v1/explanations/{job.id}"
    assert transport.paths.count(f"{resource}/events") == 1
    assert transport.paths.count(resource) == 1  # the result, read once at the end: no polling


def older_server(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        404,
        json={"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no route"},
        headers={"content-type": "application/problem+json"},
    )


def cut_after_one_event(request: httpx.Request) -> httpx.Response:
    """A proxy that passes the first event on, then drops the connection."""
    job_id = request.url.path.split("/")[3]
    state = {"id": job_id, "status": "queued", "progress": {"done": 0, "total": 200}}
    body = f"retry: 2000\ndata: {json.dumps(state)}\n\n"
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


def captive_portal(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, text="<html>log in first</html>", headers={"content-type": "text/html"}
    )


@pytest.mark.parametrize("events_answer", [older_server, cut_after_one_event, captive_portal])
def test_wait_falls_back_to_polling_without_events(
    api: Api, worker, chelsea_png: bytes, events_answer
) -> None:
    transport = Recording(events_answer)
    reported: list[tuple[int, int]] = []
    with GlimpseClient(api.url, transport=transport) as glimpse:
        job = glimpse.submit(chelsea_png, **{**RUNNING, "seed": 104})
        done = glimpse.wait(job, poll_interval=0.1, progress=lambda d, t: reported.append((d, t)))
    assert done.status == "finished" and done.result is not None
    assert reported[-1] == (200, 200)
    resource = f"/v1/explanations/{job.id}"
    assert transport.paths.count(f"{resource}/events") == 1  # tried once, then polled
    assert transport.paths.count(resource) >= 3


def test_wait_times_out_over_events(quiet: httpx.Client, small_png: bytes) -> None:
    job_id = submitted(quiet, small_png)
    with GlimpseClient(str(quiet.base_url)) as glimpse:
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as raised:
            glimpse.wait(job_id, timeout=1.5)
        assert 1.5 <= time.monotonic() - started < 3.5
        assert raised.value.job.status == "queued"
        glimpse.delete(job_id)


def test_wait_raises_when_the_job_is_deleted_while_streamed(
    quiet: httpx.Client, small_png: bytes
) -> None:
    job_id = submitted(quiet, small_png)
    transport = Recording()
    threading.Timer(0.8, lambda: quiet.delete(f"/v1/explanations/{job_id}")).start()
    with (
        GlimpseClient(str(quiet.base_url), transport=transport) as glimpse,
        pytest.raises(JobCanceledError, match="deleted"),
    ):
        glimpse.wait(job_id, timeout=30)
    assert transport.paths.count(f"/v1/explanations/{job_id}/events") == 1


def test_wait_polls_when_the_stream_goes_silent(
    quiet: httpx.Client, small_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that stops sending (a proxy holding it back) is given up for polling."""
    from glimpse import sse

    monkeypatch.setattr(sse, "SILENCE_S", 0.8)  # the server's heartbeat is 15 s away
    job_id = submitted(quiet, small_png)
    transport = Recording()
    with GlimpseClient(str(quiet.base_url), transport=transport) as glimpse:
        with pytest.raises(WaitTimeoutError):
            glimpse.wait(job_id, timeout=2.5, poll_interval=0.1)
        glimpse.delete(job_id)
    resource = f"/v1/explanations/{job_id}"
    assert transport.paths.count(f"{resource}/events") == 1
    assert transport.paths.count(resource) >= 5  # the first read, then polls after 0.8 s
