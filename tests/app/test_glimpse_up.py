"""`glimpse up` end to end: its own Redis, two workers and the API; SIGTERM leaves nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from api_helpers import FAST_PARAMS, submit_multipart
from services import REPO, base_env, free_port, wait_for_job, wait_until

from cli.commands.up import STOP_TIMEOUT_S


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
            [sys.executable, "-m", "cli.main", "up", "--port", str(port), "--workers", "2"],
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
            # A browser following a long job's events: it must not hold the stop up.
            long = {**FAST_PARAMS, "num_samples": 100_000, "quality": False, "cache": False}
            r = submit_multipart(client, small_png, long)
            assert r.status_code == 202, r.text
            streaming = threading.Event()
            follower = threading.Thread(
                target=follow, args=(port, r.json()["id"], streaming), daemon=True
            )
            follower.start()
            assert streaming.wait(30), "the events stream did not open"
        finally:
            client.close()
            stopped = time.monotonic()
            proc.send_signal(stop_signal)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            stop_s = time.monotonic() - stopped
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert code == 0, output
    assert stop_s < STOP_TIMEOUT_S, (stop_s, output)  # nothing waited to be killed
    assert f"http://127.0.0.1:{port}/docs" in output
    deadline = time.monotonic() + 5
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [c for c in children if alive(c)], output
    redis_dir = re.search(r"kept until a clean stop, in (\S+)\)", output)
    assert redis_dir is not None, output
    assert not os.path.exists(redis_dir.group(1))


def follow(port: int, job_id: str, streaming: threading.Event) -> None:
    """Read a job's events until the server ends the stream or goes away."""
    url = f"http://127.0.0.1:{port}/v1/explanations/{job_id}/events"
    try:
        with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=60)) as r:
            for _ in r.iter_lines():
                streaming.set()
    except httpx.HTTPError:
        pass  # the server went away: what a stop does to a stream


class Up:
    """`glimpse up --workers 2` in a session of its own, its output in a file."""

    def __init__(self, models_dir: Path, tmp_path: Path) -> None:
        self.port = free_port()
        self.log_path = tmp_path / "up.log"
        self.log = self.log_path.open("wb")
        env = base_env(
            GLIMPSE_MODELS_DIR=str(models_dir),
            GLIMPSE_DEFAULT_MODEL="efficientnet-lite0",
            GLIMPSE_WORKER_HEARTBEAT_S="1",
        )
        argv = [sys.executable, "-m", "cli.main", "up", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*argv, "--workers", "2"], env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        wait_until(self.ready, timeout=90, what="glimpse up to be ready", proc=self.proc)

    def ready(self) -> bool:
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def child(self, needle: str) -> list[int]:
        return [
            c
            for c in children_of(self.proc.pid)
            if needle in Path(f"/proc/{c}/cmdline").read_text().replace("\0", " ")
        ]

    def stop(self) -> int:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.log.close()
        return code


def test_glimpse_up_restarts_a_killed_worker_and_its_job_finishes(
    service_models_dir: Path, chelsea_png: bytes, tmp_path: Path
) -> None:
    up = Up(service_models_dir, tmp_path)
    try:
        params = {"method": "kernel_shap", "num_samples": 1500, "seed": 3, "cache": False}
        job_id = submit_multipart(up.client, chelsea_png, params).json()["id"]
        wait_until(
            lambda: up.client.get(f"/v1/explanations/{job_id}").json()["progress"]["done"] > 0,
            timeout=60,
            what="the job to start",
        )
        workers = up.child("worker.worker")
        assert len(workers) == 2
        busy = max(workers, key=lambda pid: _cpu_ticks(pid))  # the one running the model
        os.kill(busy, signal.SIGKILL)
        wait_until(
            lambda: len(up.child("worker.worker")) == 2 and busy not in up.child("worker.worker"),
            timeout=10,
            what="a replacement worker",
        )
        job = wait_for_job(up.client, job_id, timeout=180)
        assert job["status"] == "finished", job
        assert job["result"]["stats"]["model_evaluations"] == 1500
        assert up.proc.poll() is None
        assert re.search(rf"worker \d \(pid {busy}\) exited with -9; restarting it", up.output())
    finally:
        code = up.stop()
    assert code == 0, up.output()


def test_glimpse_up_restarts_its_redis_and_keeps_the_queue(
    service_models_dir: Path, small_png: bytes, tmp_path: Path
) -> None:
    up = Up(service_models_dir, tmp_path)
    try:
        (redis_pid,) = up.child("redis-server")
        ids = [
            submit_multipart(up.client, small_png, {**FAST_PARAMS, "seed": 70 + i}).json()["id"]
            for i in range(3)
        ]
        os.kill(redis_pid, signal.SIGKILL)
        wait_until(lambda: len(up.child("redis-server")) == 1, timeout=10, what="a new Redis")
        wait_until(up.ready, timeout=60, what="ready again")
        for job_id in ids:
            assert wait_for_job(up.client, job_id, timeout=120)["status"] == "finished"
        assert re.search(rf"redis-server \(port \d+\) \(pid {redis_pid}\) exited", up.output())
    finally:
        code = up.stop()
    assert code == 0, up.output()


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime
