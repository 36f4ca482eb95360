"""The client's reading of an event stream (glimpse/sse.py): the SSE spec's parsing of the
lines Glimpse sends, and what counts as a job's event. Streams from a live server:
tests/app/test_api_events.py."""

from __future__ import annotations

import pytest

from glimpse.sse import events, job_state


def test_events_are_their_data_lines_joined_and_comments_wake_the_reader() -> None:
    lines = [
        "retry: 2000",
        'data: {"a": 1}',
        "",
        ": keep-alive",
        "",
        "id: end",
        "data:first",  # no space after the colon
        "data:  second",  # only one space is taken off
        "data",  # a field name alone: an empty value
        "event: ignored",
        "",
        "retry: 10",  # no data: nothing to dispatch
        "",
        'data: {"unterminated": true}',  # the stream ended before its blank line: dropped
    ]
    assert list(events(lines)) == ['{"a": 1}', None, "first\n second\n"]


def test_a_job_state_needs_a_status_and_progress() -> None:
    state = job_state('{"id": "x", "status": "running", "progress": {"done": 1, "total": 2}}')
    assert state["status"] == "running" and state["progress"] == {"done": 1, "total": 2}
    for data in ("[1, 2]", '{"status": "running"}', '{"status": 3, "progress": {}}', "nope"):
        with pytest.raises(ValueError):
            job_state(data)
