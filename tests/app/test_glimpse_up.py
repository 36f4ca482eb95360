"""`glimpse up` end to end: its own Redis, two workers and the API; SIGTERM leaves nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from api_helpers import FAST_PARAMS, submit_multipart
from services import REPO, base_env, free_port, wait_for_job, wait_until


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_glimpse_up_serves_and_stops_cleanly(
    service_models_dir: Path, small_png: bytes, stop_signal: int
) -> None:
    port = free_port()
    env = base_env(
        GLIMPSE_MODELS_DIR=str(service_models_dir), GLIMPSE_DEFAULT_MODEL="efficientnet-lite0"
    )
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "glimpse.cli", "up", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        try:

            def ready() -> bool:
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(ready, timeout=90, what="glimpse up to be ready", proc=proc)
            children = children_of(proc.pid)
            assert len(children) == 4  # redis-server, two workers, uvicorn
            names = " ".join(
                Path(f"/proc/{c}/cmdline").read_text().replace("\0", " ") for c in children
            )
            assert "redis-server" in names and "worker.worker" in names and "uvicorn" in names
            r = submit_multipart(client, small_png, FAST_PARAMS)
            assert r.status_code == 202, r.text
            assert wait_for_job(client, r.json()["id"])["status"] == "finished"
        finally:
            client.close()
            proc.send_signal(stop_signal)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert code == 0, output
    assert f"http://127.0.0.1:{port}/docs" in output
    deadline = time.monotonic() + 5
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [c for c in children if alive(c)], output
    redis_dir = re.search(r"temporary, no persistence, in (\S+)\)", output)
    assert redis_dir is not None, output
    assert not os.path.exists(redis_dir.group(1))
