"""`glimpse up`: the whole service in the foreground, supervised.

A Redis of its own on a free local port (when `REDIS_URL` is unset), W workers
(`python -m worker.worker`) and the API (uvicorn), each in its own session so that a
terminal's Ctrl+C reaches only this supervisor. A child that dies is started again after a
backoff (0.5 s, doubling to 30 s; back to 0.5 s once it has run a minute), with a line naming
it: a worker keeps the queue going, a Redis comes back on the same port from its append-only
file (every write fsynced), so jobs queued or running survive. Only SIGINT/SIGTERM/SIGHUP stop
it cleanly (API, workers, Redis, in that order; exit 0), or a child that dies
`CRASH_LOOP_RESTARTS` times within `CRASH_LOOP_WINDOW_S` (exit 1). Its Redis folder is removed
on a clean stop only.
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
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from glimpse.errors import GlimpseError
from glimpse.settings import get_settings

STOP_TIMEOUT_S = 10.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STEADY_AFTER_S = 60.0  # a child that ran this long starts its next backoff afresh
CRASH_LOOP_RESTARTS = 5
CRASH_LOOP_WINDOW_S = 60.0


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


def redis_argv(binary: str, port: int, directory: str, *, appendonly: bool = False) -> list[str]:
    """A private Redis on loopback: no snapshots; with `appendonly`, every write fsynced to
    the append-only file in `directory` before it is answered, so a restart from that folder
    keeps all of it."""
    persistence = ("yes", "--appendfsync", "always") if appendonly else ("no",)
    return [
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", directory),
        *("--save", "", "--appendonly", *persistence, "--loglevel", "warning"),
    ]


#: Seconds the API lets open requests finish once told to stop: a submission takes well
#: under it; an events stream (GET …/events) would hold uvicorn open until its job ends.
API_GRACE_S = 5


def api_argv(host: str, port: int, *extra: str) -> list[str]:
    """The API: uvicorn serving `create_app`, settings from the environment."""
    return [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"] + [
        *("--host", host, "--port", str(port)),
        *("--timeout-graceful-shutdown", str(API_GRACE_S), *extra),
    ]


@dataclass
class Child:
    """One supervised process: how to start it, and its record of deaths."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = FIRST_BACKOFF_S
    restart_at: float | None = None
    deaths: list[float] = field(default_factory=list)
    restarts: int = 0


class Supervisor:
    def __init__(self, host: str, port: int, workers: int) -> None:
        if workers < 1:
            raise GlimpseError("--workers must be at least 1")
        self.host, self.port, self.workers = host, port, workers
        self.env = dict(os.environ)
        self.tmpdir: str | None = None
        self.redis: Child | None = None
        self.worker_children: list[Child] = []
        self.api: Child | None = None
        self.stopping = False

    # --- start ----------------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env, start_new_session=True)
        child.started_at = time.monotonic()
        child.restart_at = None

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise GlimpseError("REDIS_URL is unset and no redis-server is on PATH")
        self.tmpdir = tempfile.mkdtemp(prefix="glimpse-redis-")
        port = free_port()
        self.redis = Child(
            f"redis-server (port {port})", redis_argv(binary, port, self.tmpdir, appendonly=True)
        )
        self._spawn(self.redis)
        url = f"redis://127.0.0.1:{port}/0"
        assert self.redis.proc is not None
        _wait_for_redis(url, self.redis.proc)
        self.env["REDIS_URL"] = url
        print(
            f"glimpse: redis at {url} (append-only, kept until a clean stop, in {self.tmpdir})",
            flush=True,
        )

    def start(self) -> None:
        if not get_settings().redis_url:
            self.start_redis()
        for i in range(self.workers):
            worker = Child(f"worker {i + 1}", [sys.executable, "-m", "worker.worker"])
            self._spawn(worker)
            self.worker_children.append(worker)
        self.api = Child("API", api_argv(self.host, self.port))
        self._spawn(self.api)
        url = f"http://{self.host}:{self.port}"
        print(f"glimpse: API at {url}  docs at {url}/docs  ({self.workers} worker(s))", flush=True)

    # --- run and stop ---------------------------------------------------------------------
    def children(self) -> list[Child]:
        found = [self.api, *self.worker_children, self.redis]
        return [c for c in found if c is not None]

    def wait(self) -> int:
        """Supervise until a stop is asked for (0) or a child keeps dying (1)."""
        while not self.stopping:
            now = time.monotonic()
            for child in self.children():
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restarts += 1
                        self._spawn(child)
                    continue
                assert child.proc is not None
                code = child.proc.poll()
                if code is None:
                    continue
                if not self._schedule_restart(child, code, now):
                    return 1
            time.sleep(0.1)
        return 0

    def _schedule_restart(self, child: Child, code: int, now: float) -> bool:
        """Plan the restart of a child that exited; False when it keeps dying."""
        assert child.proc is not None
        if now - child.started_at >= STEADY_AFTER_S:
            child.backoff_s = FIRST_BACKOFF_S
        child.deaths = [t for t in child.deaths if now - t < CRASH_LOOP_WINDOW_S] + [now]
        pid = child.proc.pid
        if len(child.deaths) > CRASH_LOOP_RESTARTS:
            print(
                f"glimpse: {child.name} (pid {pid}) exited with {code}, its "
                f"{len(child.deaths)}th death in {CRASH_LOOP_WINDOW_S:.0f} s; stopping",
                file=sys.stderr,
                flush=True,
            )
            return False
        print(
            f"glimpse: {child.name} (pid {pid}) exited with {code}; "
            f"restarting it in {child.backoff_s:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        child.restart_at = now + child.backoff_s
        child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)
        return True

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def stop(self, *, clean: bool) -> None:
        """Stop every child (API, workers, Redis); the Redis folder goes on a clean stop."""
        if self.api is not None:
            _terminate(_procs([self.api]))
        if self.worker_children:
            # RQ: a first signal is a warm shutdown (the running job stops at its next batch),
            # a second one more than a second later a cold one.
            _terminate(_procs(self.worker_children), second_signal_after=2.0)
        if self.redis is not None:
            _terminate(_procs([self.redis]))
        if self.tmpdir is not None:
            if clean:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            else:
                print(f"glimpse: Redis data kept in {self.tmpdir}", file=sys.stderr, flush=True)
            self.tmpdir = None


def _procs(children: Sequence[Child]) -> list[subprocess.Popen[bytes]]:
    return [c.proc for c in children if c.proc is not None]


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
    code = 1
    try:
        supervisor.start()
        code = supervisor.wait()
    finally:
        # Further signals must not interrupt the shutdown.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        supervisor.stop(clean=code == 0)
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
