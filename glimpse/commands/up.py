"""`glimpse up`: the whole service in the foreground.

A Redis of its own on a free local port (when `REDIS_URL` is unset; temporary folder, no
persistence), W workers (`python -m worker.worker`) and the API (uvicorn), each in its own
session so that a terminal's Ctrl+C reaches only this supervisor, which then stops them in
order: API, workers, Redis. A child that dies takes the service down with exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from glimpse.errors import GlimpseError
from glimpse.settings import get_settings

STOP_TIMEOUT_S = 10.0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "up",
        help="run the API, workers and (unless REDIS_URL is set) a Redis, in the foreground",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of the API (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port of the API (8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    parser.set_defaults(run=run)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def redis_argv(binary: str, port: int, directory: str) -> list[str]:
    """A private, throw-away Redis: loopback only, nothing persisted."""
    return [
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", directory),
        *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
    ]


def api_argv(host: str, port: int, *extra: str) -> list[str]:
    """The API: uvicorn serving `create_app`, settings from the environment."""
    return [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"] + [
        *("--host", host, "--port", str(port), *extra)
    ]


class Supervisor:
    def __init__(self, host: str, port: int, workers: int) -> None:
        if workers < 1:
            raise GlimpseError("--workers must be at least 1")
        self.host, self.port, self.workers = host, port, workers
        self.env = dict(os.environ)
        self.tmpdir: str | None = None
        self.redis: subprocess.Popen[bytes] | None = None
        self.worker_procs: list[subprocess.Popen[bytes]] = []
        self.api: subprocess.Popen[bytes] | None = None
        self.stopping = False

    # --- start ----------------------------------------------------------------------------
    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=self.env, start_new_session=True)

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise GlimpseError("REDIS_URL is unset and no redis-server is on PATH")
        self.tmpdir = tempfile.mkdtemp(prefix="glimpse-redis-")
        port = free_port()
        self.redis = self._spawn(redis_argv(binary, port, self.tmpdir))
        url = f"redis://127.0.0.1:{port}/0"
        _wait_for_redis(url, self.redis)
        self.env["REDIS_URL"] = url
        print(f"glimpse: redis at {url} (temporary, no persistence, in {self.tmpdir})", flush=True)

    def start(self) -> None:
        if not get_settings().redis_url:
            self.start_redis()
        for _ in range(self.workers):
            self.worker_procs.append(self._spawn([sys.executable, "-m", "worker.worker"]))
        self.api = self._spawn(api_argv(self.host, self.port))
        url = f"http://{self.host}:{self.port}"
        print(f"glimpse: API at {url}  docs at {url}/docs  ({self.workers} worker(s))", flush=True)

    # --- run and stop ---------------------------------------------------------------------
    def children(self) -> list[subprocess.Popen[bytes]]:
        procs = [self.api, *self.worker_procs, self.redis]
        return [p for p in procs if p is not None]

    def wait(self) -> int:
        while not self.stopping:
            for proc in self.children():
                code = proc.poll()
                if code is not None:
                    print(
                        f"glimpse: {proc.args[2] if len(proc.args) > 2 else proc.args[0]} "
                        f"(pid {proc.pid}) exited with {code}; stopping",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.2)
        return 0

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def stop(self) -> None:
        if self.api is not None:
            _terminate([self.api])
        if self.worker_procs:
            # RQ: a first signal is a warm shutdown (the running job stops at its next batch),
            # a second one more than a second later a cold one.
            _terminate(self.worker_procs, second_signal_after=2.0)
        if self.redis is not None:
            _terminate([self.redis])
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def _wait_for_redis(url: str, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise GlimpseError(f"redis-server exited with {proc.returncode}")
            try:
                if client.ping():
                    return
            except RedisError:
                time.sleep(0.05)
        raise GlimpseError(f"redis-server did not answer within {timeout:.0f}s")
    finally:
        client.close()


def _terminate(
    procs: Sequence[subprocess.Popen[bytes]], *, second_signal_after: float | None = None
) -> None:
    """SIGTERM, (optionally SIGTERM again,) then SIGKILL whatever is left after the timeout."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    started = time.monotonic()
    resent = second_signal_after is None
    while live and time.monotonic() < started + STOP_TIMEOUT_S:
        time.sleep(0.05)
        live = [p for p in live if p.poll() is None]
        if not resent and time.monotonic() > started + (second_signal_after or 0.0):
            for p in live:
                p.send_signal(signal.SIGTERM)
            resent = True
    for p in live:
        p.kill()
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def run(args: argparse.Namespace) -> int:
    supervisor = Supervisor(args.host, args.port, args.workers)
    previous = {
        sig: signal.signal(sig, supervisor.request_stop)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        supervisor.start()
        code = supervisor.wait()
    finally:
        # Further signals must not interrupt the shutdown.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("glimpse: stopped", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glimpse")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["up", *(argv if argv is not None else sys.argv[1:])])
    try:
        return int(args.run(args))
    except GlimpseError as exc:
        print(f"glimpse: {exc.title.lower()}: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
