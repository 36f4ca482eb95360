"""Clients that stall, trickle or leave in the middle of their body (app/body_deadline.py and
the ClientDisconnect handler), against a real uvicorn over raw sockets."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest
from services import Api, wait_until

HEAD = (
    b"POST /v1/explanations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
)


@pytest.fixture(scope="module")
def api(service_env: dict[str, str]) -> Iterator[Api]:
    server = Api({**service_env, "GLIMPSE_BODY_IDLE_TIMEOUT_S": "1", "GLIMPSE_BODY_TIMEOUT_S": "3"})
    yield server
    server.stop()


def answer(sock: socket.socket, timeout: float) -> tuple[int, bytes, float]:
    """(status, whole answer with all of its body, seconds until its first byte)."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = sock.recv(65536)
    took = time.monotonic() - started
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length and len(body) < int(length.group(1)):  # the body may come in a later packet
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    status = int(data.split(b" ", 2)[1])
    return status, head + b"\r\n\r\n" + body, took


def test_a_body_that_stalls_gets_408(api: Api) -> None:
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(HEAD + b'{"image_b64": "')
        status, data, took = answer(sock, timeout=10)
    assert status == 408 and b"did not arrive in time" in data
    assert took < 3  # the idle limit is 1 s


def test_a_body_that_trickles_past_the_total_limit_gets_408(api: Api) -> None:
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(HEAD)
        started = time.monotonic()
        sock.settimeout(0.5)
        data = b""
        while not data and time.monotonic() - started < 10:
            try:
                sock.sendall(b"a")  # one byte every half second: never idle for 1 s
                data = sock.recv(65536)
            except TimeoutError:
                continue
        took = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408"), data[:100]
    assert 2.5 < took < 6  # the total limit is 3 s


def test_a_client_that_leaves_mid_body_is_a_499_without_a_traceback(api: Api) -> None:
    def counted() -> float:
        metrics = api.client.get("/metrics").text
        found = re.search(
            r'^glimpse_http_requests_total\{method="POST",route="/v1/explanations",status="499"\}'
            r" (\S+)$",
            metrics,
            re.M,
        )
        return float(found.group(1)) if found else 0.0

    before = counted()
    with socket.create_connection(("127.0.0.1", api.port)) as sock:
        sock.sendall(HEAD + b'{"image_b64": "AAAA')
    wait_until(lambda: counted() == before + 1, timeout=10, what="the 499 to be counted")
    output = api.output()
    assert "Traceback" not in output and "Exception in ASGI" not in output, output
