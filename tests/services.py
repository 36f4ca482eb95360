"""Real services for end-to-end tests: a redis-server, a uvicorn serving create_app, and RQ
workers, each a subprocess on a free port, torn down (and waited for) by `stop()`."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from PIL import Image
from redis import Redis
from redis.exceptions import RedisError

from cli.commands.up import api_argv, redis_argv

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "efficientnet-lite0"
BROKEN_MODEL = "broken"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.pop("REDIS_URL", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class RedisServer:
    """A private redis-server; `appendonly`: every write fsynced to an append-only file in
    its folder, so `kill()` then `start()` (same port, same folder) keeps what was written."""

    def __init__(self, *, appendonly: bool = False) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="glimpse-test-redis-")
        self.appendonly = appendonly
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = Redis.from_url(self.url)
        self.start()

    def start(self) -> None:
        argv = redis_argv(REDIS_SERVER, self.port, self.dir, appendonly=self.appendonly)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash would: only what reached the append-only file survives."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def commands_during(self, action: Callable[[], object]) -> list[dict[str, Any]]:
        """What the server ran while `action` ran, from every client, as redis-py's MONITOR
        reports it: `command` the words, `client_type` 'lua' for a script's own calls."""
        marker = f"end-of-action-{secrets.token_hex(4)}"
        seen: list[dict[str, Any]] = []
        watcher = Redis.from_url(self.url)  # its own connection: the action's pool is as it was
        with watcher.monitor() as monitor:
            action()
            self.client.echo(marker)
            while marker not in (command := monitor.next_command())["command"]:
                seen.append(command)
        watcher.close()
        return seen


class Api:
    """`python -m uvicorn app.main:create_app --factory` with the given environment."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = _log_file("glimpse-api-")
        self.proc = subprocess.Popen(
            api_argv("127.0.0.1", self.port, "--log-level", "warning"),
            env=base_env(**env),
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)
        wait_until(self._healthy, timeout=30, what=f"the API on {self.url}", proc=self.proc)

    def _healthy(self) -> bool:
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)
        self.log.close()
        os.unlink(self.log.name)


class InProcessApi:
    """An ASGI app served by uvicorn on a free port, in a thread of this process."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, what=f"uvicorn on {self.url}")
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


class WorkerProcess:
    """`python -m worker.worker`; ready once it has registered with RQ."""

    def __init__(self, env: Mapping[str, str], redis: Redis, queue: str = "glimpse") -> None:
        self.log = _log_file("glimpse-worker-")
        before = set(_worker_keys(redis, queue))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.worker"],
            env=base_env(**env),
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: bool(set(_worker_keys(redis, queue)) - before),
            timeout=60,
            what="the worker to register",
            proc=self.proc,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is cleaned up, as when the kernel's OOM killer
        or a lost machine ends it."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self.log.close()
        os.unlink(self.log.name)


def _log_file(prefix: str):  # closed by the owner's stop()
    return tempfile.NamedTemporaryFile(prefix=prefix, suffix=".log", delete=False)  # noqa: SIM115


class FileServer:
    """A folder served over HTTP on 127.0.0.1 (a stand-in for a download site: tests never
    reach the internet). `requests` counts the GETs of each path."""

    def __init__(self, root: Path) -> None:
        import functools
        import http.server

        counts: dict[str, int] = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                counts[self.path] = counts.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        handler = functools.partial(Handler, directory=str(root))
        self.requests = counts
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _worker_keys(redis: Redis, queue: str) -> list[bytes]:
    return list(redis.smembers(f"rq:workers:{queue}"))  # type: ignore[arg-type]


def fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment for scripts/serve.sh: no GLIMPSE_ settings, no REDIS_URL, a HOME
    of its own, and no local EfficientNet for serve.sh to fall back on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    for name in ("REDIS_URL", "XDG_DATA_HOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["HOME"] = str(home)
    env["GLIMPSE_LOCAL_MODELS"] = str(home / "no-shared-here")
    env.update(extra)
    return env


def wait_until(
    check, *, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"waiting for {what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"waiting for {what}: gave up after {timeout}s")
        time.sleep(0.05)


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    """Poll the job until it ends; its last resource."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v1/explanations/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in {"finished", "failed", "canceled"}:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.1)
