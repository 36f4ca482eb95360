"""Chaos, end to end (issue #17, "Nothing accepted is ever lost"), while clients submit a
stream of small jobs and poll every job they were given:

- the worker running a job SIGKILLed early (first progress), in the middle and late (90 %),
  under `glimpse up --workers 2` and under a hand-started stack (Redis, API, 2 workers);
- Redis SIGKILLed (and started again from its append-only file), and SIGSTOPped for 5, 20,
  40 and 60 s, with a job running;
- a worker SIGKILLed while it writes its result (its progress is complete);
- the API SIGKILLed and a new one started on its port, with jobs running and queued.

Each case asserts 0 lost (every job answered 202 ends `finished`), 0 duplicated (the store's
`jobs_finished` grew by the number accepted; no job ran to a result twice; no refused
submission became a job), no 5xx but the documented 503 + Retry-After, no error but a
connection error while the API itself is down, and every answer within 3 s. Each prints one
JSON line of its figures (max latency, recovery times): run with `-s` to see them.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import httpx
import pytest
from api_helpers import submit_multipart
from redis import Redis
from rq import Queue, Worker
from services import Api, wait_until
from test_faults import HEARTBEAT_S, SLOW, Service
from test_glimpse_up import Up

from glimpse.settings import Settings
from glimpse.store import TERMINAL, JobStore

pytestmark = pytest.mark.slow

#: The job a fault hits: a few seconds, progress every 16 evaluations (on both stacks: glimpse
#: up's default batch of 64 writes none between 193 and 240 of 240, no "late" to kill at).
VICTIM = {**SLOW, "batch_size": 16}
#: The stream's jobs: well under a second each on the small image.
SMALL = {"num_samples": 50, "cache": False}
LATENCY_LIMIT_S = 3.0
CLIENT_TIMEOUT_S = 10.0  # past the limit: a hung request shows as a slow answer
#: What a client sees of an API that is not there (refused) or died under its request.
CONNECTION_ERRORS = ("ConnectError", "RemoteProtocolError", "ReadError", "WriteError")
SEEDS = itertools.count(1000)  # every job of this file has a seed of its own


@dataclass(frozen=True)
class Answer:
    """One request of a client: its status, or the name of the exception it raised."""

    what: str
    started: float
    ended: float
    status: int | None = None
    error: str | None = None
    retry_after: str | None = None
    seed: int | None = None
    job_id: str | None = None
    job_status: str | None = None  # of a job read with 200

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Clients:
    """The test's clients: one submits a small job every `every_s`, one polls every accepted
    job until it ends, and the test's own requests (`request`, `submit`); each is recorded."""

    def __init__(self, url: str, image: bytes, *, every_s: float = 1.0) -> None:
        self.url, self.image, self.every_s = url, image, every_s
        self.answers: list[Answer] = []
        self.accepted: dict[str, int] = {}  # job id -> seed
        self.ended: set[str] = set()
        self._stop = threading.Event()
        self._http = httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S)
        self._threads = [
            threading.Thread(target=self._loop, args=(self._submit_one,), daemon=True),
            threading.Thread(target=self._loop, args=(self._poll_all,), daemon=True),
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * CLIENT_TIMEOUT_S)
        self._http.close()

    def request(
        self,
        what: str,
        call: Callable[[httpx.Client], httpx.Response],
        *,
        client: httpx.Client | None = None,
        seed: int | None = None,
    ) -> Answer:
        started = time.monotonic()
        try:
            r = call(client or self._http)
        except httpx.HTTPError as exc:
            answer = Answer(what, started, time.monotonic(), error=type(exc).__name__, seed=seed)
        else:
            ended = time.monotonic()
            body = r.json() if r.status_code in (200, 202) and what in ("submit", "poll") else {}
            job_id = body.get("id") if what == "submit" else None
            if job_id is not None:
                self.accepted[job_id] = seed  # type: ignore[assignment]
            retry_after = r.headers.get("retry-after")
            answer = Answer(
                what,
                started,
                ended,
                r.status_code,
                None,
                retry_after,
                seed,
                job_id,
                body.get("status") if what == "poll" else None,
            )
        self.answers.append(answer)
        return answer

    def submit(self, image: bytes, params: dict, *, client: httpx.Client | None = None) -> Answer:
        seed = next(SEEDS)
        body = {**params, "seed": seed}
        return self.request(
            "submit", lambda c: submit_multipart(c, image, body), client=client, seed=seed
        )

    def get(self, path: str, *, client: httpx.Client | None = None) -> Answer:
        return self.request(path, lambda c: c.get(path), client=client)

    def _loop(self, step: Callable[[httpx.Client], None]) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as client:
            while not self._stop.wait(self.every_s):
                try:
                    step(client)
                except Exception as exc:  # recorded: the checks fail on it
                    now = time.monotonic()
                    self.answers.append(Answer("client", now, now, error=repr(exc)))

    def _submit_one(self, client: httpx.Client) -> None:
        self.submit(self.image, SMALL, client=client)

    def _poll_all(self, client: httpx.Client) -> None:
        for job_id in [j for j in list(self.accepted) if j not in self.ended]:
            path = f"/v1/explanations/{job_id}"
            answer = self.request("poll", lambda c, p=path: c.get(p), client=client)
            if answer.job_status in TERMINAL:
                self.ended.add(job_id)


class Stack:
    """What a case needs of a running service, whichever started it."""

    url: str
    redis: Redis
    store: JobStore

    def worker_pids(self) -> list[int]:
        raise NotImplementedError

    def worker_logs(self) -> str:
        raise NotImplementedError

    def worker_names(self) -> dict[str, int]:
        """RQ name -> pid of the live worker processes, from their logs (a worker that lost
        Redis registers again under a new name; a registration's own pid field can be lost,
        see live_workers)."""
        pids = set(self.worker_pids())
        found = re.findall(r"Worker (\w+): started with PID (\d+)", self.worker_logs())
        return {name: int(pid) for name, pid in found if int(pid) in pids}

    def ensure_two_workers(self) -> None:
        raise NotImplementedError

    def logs(self) -> str:
        return ""

    def _connect(self, url: str) -> None:
        self.redis = Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.store = JobStore(self.redis, Settings(redis_url=url))  # type: ignore[call-arg]

    def wait_ready(self) -> None:
        """/readyz 200 with both workers beating, and nothing queued or running."""
        seen: list[object] = []

        def ready() -> bool:
            try:
                r = httpx.get(self.url + "/readyz", timeout=5)
            except httpx.HTTPError as exc:
                seen[:] = [repr(exc)]
                return False
            names = self.worker_names()
            beating = {names[n] for n, _ in live_workers(self.redis) if n in names}
            queued = self.redis.llen("rq:queue:glimpse")
            seen[:] = [r.status_code, r.text, names, live_workers(self.redis), queued]
            return r.status_code == 200 and len(beating) == 2 and not queued

        try:
            wait_until(ready, timeout=60, what="two live workers and an empty queue")
        except TimeoutError as exc:
            raise AssertionError((seen, self.logs())) from exc


class HandStack(Stack):
    """The Service of test_faults.py (append-only Redis, one API) with two WorkerProcess."""

    def __init__(self, models_dir: Path) -> None:
        self.svc = Service(models_dir, appendonly=True, GLIMPSE_RATE_LIMIT_PER_MINUTE="0")
        self.url = self.svc.api.url
        self._connect(self.svc.redis.url)
        self.dead_logs: list[str] = []

    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self.svc.workers if w.proc.poll() is None]

    def worker_logs(self) -> str:
        return "\n".join(w.output() for w in self.svc.workers)

    def ensure_two_workers(self) -> None:
        for worker in [w for w in self.svc.workers if w.proc.poll() is not None]:
            self.dead_logs.append(worker.output())
            worker.stop()
            self.svc.workers.remove(worker)
        while len(self.svc.workers) < 2:
            self.svc.start_worker()
        self.wait_ready()

    def restart_api(self) -> float:
        """SIGKILL the API, then start a new one on its port; seconds it was away."""
        old = self.svc.api
        old.proc.kill()
        killed = time.monotonic()
        old.proc.wait(timeout=10)
        self.dead_logs.append(old.output())
        old.stop()
        time.sleep(1)  # a gap the clients see
        with mock.patch("services.free_port", return_value=old.port):  # the same address
            self.svc.api = Api(self.svc.env)
        return time.monotonic() - killed

    def logs(self) -> str:
        outputs = [*self.dead_logs, *(w.output() for w in self.svc.workers), self.svc.api.output()]
        return "\n----\n".join(o[-3000:] for o in outputs)

    def stop(self) -> None:
        self.redis.close()
        self.svc.stop()


class UpStack(Stack):
    """`glimpse up --workers 2` (the Up of test_glimpse_up.py); its Redis from its output."""

    def __init__(self, models_dir: Path, tmp: Path) -> None:
        self.up = Up(models_dir, tmp)
        self.url = f"http://127.0.0.1:{self.up.port}"
        line = next(x for x in self.up.output().splitlines() if "redis at" in x)
        self._connect(line.split("redis at ")[1].split()[0])

    def worker_pids(self) -> list[int]:
        return self.up.child("worker.worker")

    def worker_logs(self) -> str:
        return self.up.output()

    def ensure_two_workers(self) -> None:
        wait_until(lambda: len(self.worker_pids()) == 2, timeout=30, what="two workers")
        self.wait_ready()

    def logs(self) -> str:
        return self.up.output()[-6000:]

    def stop(self) -> None:
        self.redis.close()
        code = self.up.stop()
        assert code == 0, self.up.output()


def live_workers(redis: Redis) -> list[tuple[str, str | None]]:
    """(name, id of the job it runs) of the queue's workers that beat in the last 3
    heartbeats, found as /readyz finds them: by the queue's set. (A worker hash that expires
    in a Redis stall is written again by its next heartbeat with `last_heartbeat` alone, no
    pid; and it may have left RQ's global set of workers meanwhile.)"""
    now = datetime.now(UTC)
    found = []
    for w in Worker.all(queue=Queue("glimpse", connection=redis)):
        beat = w.last_heartbeat
        if beat is not None and (now - beat.replace(tzinfo=UTC)).total_seconds() <= 3 * HEARTBEAT_S:
            found.append((w.name, w.get_current_job_id()))
    return found


def job_fields(stack: Stack, job_id: str) -> dict[str, str]:
    raw = stack.redis.hmget(stack.store.job_key(job_id), "status", "done", "total", "restarts")
    values = [v.decode() if v is not None else "" for v in raw]  # type: ignore[union-attr]
    return dict(zip(("status", "done", "total", "restarts"), values, strict=True))


def watch(stack: Stack, job_id: str, until: Callable[[dict[str, str]], bool], timeout=60.0):
    """Read the job's hash from Redis every 2 ms until `until` holds; its fields then."""
    deadline = time.monotonic() + timeout
    while True:
        fields = job_fields(stack, job_id)
        if until(fields):
            return fields
        assert fields["status"] in {"queued", "running"}, fields
        assert time.monotonic() < deadline, fields
        time.sleep(0.002)


def running_pid(stack: Stack, job_id: str) -> int:
    """The pid of the worker that runs the job now."""
    found: list[int] = []

    def look() -> bool:
        names = stack.worker_names()
        found[:] = [
            names[n] for n, job in live_workers(stack.redis) if job == job_id and n in names
        ]
        return bool(found)

    wait_until(look, timeout=30, what=f"the worker running {job_id}")
    return found[0]


class Case:
    """One fault: the clients, the counters before it, and the checks after it."""

    def __init__(self, stack: Stack, image: bytes, name: str) -> None:
        stack.ensure_two_workers()
        self.stack, self.name = stack, name
        self.finished_before = stack.store.stats().get("jobs_finished", 0.0)
        self.clients = Clients(stack.url, image)
        self.figures: dict[str, object] = {"case": name}
        self.started = time.monotonic()

    def submit_slow(self, image: bytes) -> str:
        answer = self.clients.submit(image, VICTIM)
        assert answer.status == 202, answer
        return answer.job_id  # type: ignore[return-value]

    def our_jobs(self) -> dict[str, tuple[int, str]]:
        """Every job in the store that one of this case's requests made: id -> (seed,
        status). A job whose submission was not answered 202 shows up here too."""
        redis = self.stack.redis
        seeds = {a.seed for a in self.clients.answers if a.seed is not None}
        keys = [
            key
            for key in redis.scan_iter(match=self.stack.store.job_key("*"), count=1000)
            if len(key.rsplit(b":", 1)[1]) == 32  # not :segments, :attribution
        ]
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "id", "params", "status")
        found = {}
        for job_id, params, status in pipe.execute():
            seed = json.loads(params)["seed"] if params else None
            if seed in seeds:
                found[job_id.decode()] = (seed, status.decode())
        return found

    def check(self, *, api_down: tuple[float, float] | None = None) -> dict[str, object]:
        """After the fault: wait until every job of the case ends, then assert it all."""
        stack, clients = self.stack, self.clients
        deadline = time.monotonic() + 180
        while True:
            jobs = self.our_jobs()
            ended = all(status in TERMINAL for _, status in jobs.values())
            if ended and set(clients.accepted) <= set(jobs):
                break
            assert time.monotonic() < deadline, ("jobs still running", jobs, stack.logs())
            time.sleep(0.5)
        answers = clients.answers
        by_seed = {a.seed: a for a in answers if a.seed is not None}
        lost = {j: s for j, (_, s) in jobs.items() if j in clients.accepted and s != "finished"}
        lost |= {j: "missing" for j in clients.accepted if j not in jobs}
        ghosts = {j: by_seed[seed] for j, (seed, _) in jobs.items() if j not in clients.accepted}
        finished = stack.store.stats().get("jobs_finished", 0.0) - self.finished_before
        server_errors = [a for a in answers if a.status is not None and a.status >= 500]
        unexplained = [a for a in server_errors if a.status != 503 or not a.retry_after]
        errors = [a for a in answers if a.error is not None]

        def while_down(a: Answer) -> bool:
            return (
                api_down is not None
                and a.error in CONNECTION_ERRORS
                and a.ended >= api_down[0]
                and a.started <= api_down[1]
            )

        unexplained_errors = [a for a in errors if not while_down(a)]
        # A submission cut off by the API's death may have been queued before it died: its
        # client cannot know (no answer). A refused one (503, 429) never may.
        unanswered_ghosts = {j: a for j, a in ghosts.items() if while_down(a)}
        slowest = max(answers, key=lambda a: a.seconds)
        self.figures.update(
            accepted=len(clients.accepted),
            finished=sum(1 for j in clients.accepted if jobs.get(j, (0, ""))[1] == "finished"),
            jobs_finished_counted=finished,
            refused_503=sum(1 for a in answers if a.what == "submit" and a.status == 503),
            refused_429=sum(1 for a in answers if a.what == "submit" and a.status == 429),
            connection_errors=len(errors) - len(unexplained_errors),
            requests=len(answers),
            max_latency_s=round(slowest.seconds, 3),
            case_s=round(time.monotonic() - self.started, 1),
        )
        print("chaos:", json.dumps(self.figures))
        logs = stack.logs()
        assert not lost, (lost, logs)
        assert set(ghosts) == set(unanswered_ghosts), (ghosts, logs)
        assert finished == len(clients.accepted) + len(ghosts), (self.figures, logs)
        assert not unexplained, (unexplained, logs)
        assert not unexplained_errors, (unexplained_errors, logs)
        assert slowest.seconds < LATENCY_LIMIT_S, (slowest, logs)
        return self.figures


# --- the stacks ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def up_stack(
    service_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UpStack]:
    stack = UpStack(service_models_dir, tmp_path_factory.mktemp("up"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def hand_stack(service_models_dir: Path) -> Iterator[HandStack]:
    stack = HandStack(service_models_dir)
    yield stack
    stack.stop()


POINTS = {"early": 0.0, "middle": 0.5, "late": 0.9}  # share of the evaluations done


def reached(point: str) -> Callable[[dict[str, str]], bool]:
    def check(fields: dict[str, str]) -> bool:
        done, total = int(fields["done"] or 0), int(fields["total"] or 1)
        return fields["status"] == "running" and done > 0 and done >= POINTS[point] * total

    return check


def kill_worker_at(stack: Stack, point: str, chelsea_png: bytes, small_png: bytes) -> None:
    case = Case(stack, small_png, f"worker SIGKILL {point}, {type(stack).__name__}")
    with case.clients:
        time.sleep(1)  # the stream runs before the fault too
        for _ in range(3):  # progress is written at most every 0.1 s: the 90 % may pass unseen
            job_id = case.submit_slow(chelsea_png)
            watch(stack, job_id, lambda f: f["status"] == "running")
            pid = running_pid(stack, job_id)
            at = watch(stack, job_id, reached(point))
            if int(at["done"]) < int(at["total"]):
                break
            watch(stack, job_id, lambda f: f["status"] == "finished")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        assert int(at["done"]) < int(at["total"]), at  # killed before its last evaluation
        watch(stack, job_id, lambda f: f["restarts"] == "1", timeout=30)
        requeued = time.monotonic() - killed
        watch(stack, job_id, lambda f: f["status"] == "finished", timeout=120)
        case.figures.update(
            killed_at=f"{at['done']}/{at['total']}",
            requeued_after_s=round(requeued, 2),
            finished_after_s=round(time.monotonic() - killed, 2),
        )
        time.sleep(1)
    case.check()
    assert job_fields(stack, job_id)["restarts"] == "1"  # one death, one run again


@pytest.mark.parametrize("point", list(POINTS))
def test_worker_killed_under_glimpse_up(
    up_stack: UpStack, point: str, chelsea_png: bytes, small_png: bytes
) -> None:
    kill_worker_at(up_stack, point, chelsea_png, small_png)


@pytest.mark.parametrize("point", list(POINTS))
def test_worker_killed_under_a_hand_started_stack(
    hand_stack: HandStack, point: str, chelsea_png: bytes, small_png: bytes
) -> None:
    kill_worker_at(hand_stack, point, chelsea_png, small_png)


def test_worker_killed_while_writing_its_result(
    hand_stack: HandStack, chelsea_png: bytes, small_png: bytes
) -> None:
    stack = hand_stack
    case = Case(stack, small_png, "worker SIGKILL while writing its result")
    with case.clients:
        job_id = case.submit_slow(chelsea_png)
        watch(stack, job_id, lambda f: f["status"] == "running")
        pid = running_pid(stack, job_id)
        at = watch(stack, job_id, lambda f: f["done"] == f["total"] or f["status"] != "running")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        assert at["status"] == "running", at  # all evaluations done, the result not written
        end = watch(stack, job_id, lambda f: f["status"] == "finished", timeout=120)
        case.figures.update(
            write_landed=end["restarts"] in ("", "0"),
            finished_after_s=round(time.monotonic() - killed, 2),
        )
        time.sleep(1)
    case.check()


def ready_within(case: Case, limit: float) -> float:
    """Poll /readyz until 200; the seconds it took (asserted under `limit`)."""
    started = time.monotonic()
    while case.clients.get("/readyz").status != 200:
        assert time.monotonic() - started < limit, case.clients.answers[-1]
        time.sleep(0.05)
    return time.monotonic() - started


def assert_refused_quickly(case: Case, image: bytes) -> None:
    """While Redis is away: submissions 503 + Retry-After, /readyz 503, /healthz 200."""
    r = case.clients.submit(image, SMALL)
    assert r.status == 503 and r.retry_after and int(r.retry_after) > 0, r
    assert r.seconds < LATENCY_LIMIT_S, r
    r = case.clients.get("/readyz")
    assert r.status == 503 and r.seconds < 2, r
    r = case.clients.get("/healthz")
    assert r.status == 200 and r.seconds < 1, r


def test_redis_killed_then_started_again_from_its_append_only_file(
    hand_stack: HandStack, chelsea_png: bytes, small_png: bytes
) -> None:
    stack = hand_stack
    case = Case(stack, small_png, "Redis SIGKILL")
    with case.clients:
        time.sleep(1)
        job_id = case.submit_slow(chelsea_png)
        watch(stack, job_id, reached("early"))
        stack.svc.redis.kill()
        killed = time.monotonic()
        while time.monotonic() < killed + 3 * HEARTBEAT_S:  # away long enough to be noticed
            assert_refused_quickly(case, small_png)
            time.sleep(0.5)
        stack.svc.redis.start()  # same port, same folder: the append-only file is replayed
        restarted = time.monotonic()
        case.figures["ready_after_restart_s"] = round(ready_within(case, 30), 2)
        watch(stack, job_id, lambda f: f["status"] == "finished", timeout=120)
        case.figures["job_finished_after_restart_s"] = round(time.monotonic() - restarted, 2)
        time.sleep(1)
    case.check()


@pytest.mark.parametrize("stall_s", [5, 20, 40, 60])
def test_redis_stalled(
    hand_stack: HandStack, stall_s: int, chelsea_png: bytes, small_png: bytes
) -> None:
    stack = hand_stack
    case = Case(stack, small_png, f"Redis SIGSTOP {stall_s} s")
    pid = stack.svc.redis.proc.pid
    with case.clients:
        time.sleep(1)
        job_id = case.submit_slow(chelsea_png)
        watch(stack, job_id, reached("early"))
        os.kill(pid, signal.SIGSTOP)  # alive, holding every connection, silent
        stopped = time.monotonic()
        try:
            while time.monotonic() < stopped + stall_s - 2:
                assert_refused_quickly(case, small_png)
                time.sleep(max(0.0, min(2.0, stopped + stall_s - time.monotonic())))
        finally:
            time.sleep(max(0.0, stopped + stall_s - time.monotonic()))
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        case.figures["ready_after_sigcont_s"] = round(ready_within(case, 2), 2)
        watch(stack, job_id, lambda f: f["status"] == "finished", timeout=120)
        case.figures["job_finished_after_sigcont_s"] = round(time.monotonic() - resumed, 2)
        case.figures["job_restarts"] = job_fields(stack, job_id)["restarts"] or "0"
        time.sleep(1)
    case.check()


def test_api_killed_and_started_again_while_jobs_run(
    hand_stack: HandStack, chelsea_png: bytes, small_png: bytes
) -> None:
    stack = hand_stack
    case = Case(stack, small_png, "API SIGKILL and restart")
    with case.clients:
        time.sleep(1)
        jobs = [case.submit_slow(chelsea_png) for _ in range(4)]  # 2 running, 2 queued
        watch(stack, jobs[0], reached("early"))
        killed = time.monotonic()
        away = stack.restart_api()
        case.figures["api_away_s"] = round(away, 2)
        time.sleep(2)
    case.check(api_down=(killed, killed + away))
    assert all(job_fields(stack, j)["status"] == "finished" for j in jobs)


def test_redis_stalled_after_the_api_was_started_again(
    hand_stack: HandStack, chelsea_png: bytes, small_png: bytes
) -> None:
    """A new API process (a fresh pool, connections made while clients already wait) is bound
    by the same limits when Redis then stalls."""
    stack = hand_stack
    case = Case(stack, small_png, "API restart, then Redis SIGSTOP 10 s")
    pid = stack.svc.redis.proc.pid
    with case.clients:
        time.sleep(1)
        killed = time.monotonic()
        away = stack.restart_api()
        time.sleep(2)
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            while time.monotonic() < stopped + 8:
                assert_refused_quickly(case, small_png)
                time.sleep(1)
        finally:
            os.kill(pid, signal.SIGCONT)
        case.figures["ready_after_sigcont_s"] = round(ready_within(case, 2), 2)
        time.sleep(1)
    case.check(api_down=(killed, killed + away))
