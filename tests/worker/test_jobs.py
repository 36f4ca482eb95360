"""worker/jobs.py against a real Redis, in this process: the job function, its guarded
writes (a deleted job is never brought back), cancel, failures, timeouts, and RQ around it."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Retry
from rq.callbacks import Callback
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from services import RedisServer
from skimage import data as skdata

from glimpse.images import decode_segments_png, sha256_hex
from glimpse.params import parse_params
from glimpse.result import ExplanationResult
from glimpse.settings import Settings, get_settings
from glimpse.store import MAX_RENDERS, JobArtifacts, JobStore
from worker import jobs
from worker.worker import GlimpseWorker, build_worker

MODEL = "efficientnet-lite0"
FAST = {"num_samples": 60, "segmentation": {"algorithm": "slic", "n_segments": 20}}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def settings(
    redis_server: RedisServer, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The settings the job function reads (get_settings), pointed at this test's Redis."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("GLIMPSE_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("GLIMPSE_DEFAULT_MODEL", MODEL)
    monkeypatch.setenv("GLIMPSE_BATCH_SIZE", "16")
    get_settings.cache_clear()
    jobs._warm = None
    yield get_settings()
    get_settings.cache_clear()
    jobs._warm = None
    jobs._stop_requested = False


@pytest.fixture
def store(settings: Settings, redis_server: RedisServer) -> JobStore:
    redis_server.client.flushdb()
    return JobStore(redis_server.client, settings)


@pytest.fixture(scope="module")
def chelsea_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(skdata.chelsea()).save(buf, format="PNG")
    return buf.getvalue()


def new_job(store: JobStore, image: bytes, **params: object) -> str:
    p = parse_params({**FAST, **params})
    p = p.model_copy(update={"model": p.model or MODEL})
    job = store.create(
        image=image,
        sha256=sha256_hex(image),
        params=p.model_dump(mode="json"),
        cache_key=p.cache_key(sha256_hex(image)),
        total=p.num_samples,
    )
    return job.id


def test_a_job_finishes_with_result_segments_and_counters(
    store: JobStore, chelsea_png: bytes
) -> None:
    job_id = new_job(store, chelsea_png)
    assert jobs.run_explanation(job_id) == "finished"
    job = store.get(job_id)
    assert job is not None and job.status == "finished"
    assert job.started_at and job.finished_at and job.error is None
    result = ExplanationResult.model_validate_json(job.result_json or "")
    assert result.predictions[0].class_index == 285
    assert result.stats.batch_size == 16  # the worker's setting when params name none
    assert job.done == job.total == result.stats.model_evaluations
    segments = decode_segments_png(store.segments_png(job_id) or b"")
    assert segments.shape == (300, 451)
    assert segments.max() + 1 == result.segments.count == len(result.explanations[0].weights)
    stats = store.stats()
    assert stats["jobs_finished"] == 1 and stats["evaluations"] == job.done
    assert stats["duration_count"] == 1 and stats["evaluation_seconds"] > 0
    for key in (store.job_key(job_id), store.segments_key(job_id), job.image_key):
        assert 0 < store.redis.ttl(key) <= store.ttl


def test_a_job_deleted_before_it_starts_is_skipped(store: JobStore, chelsea_png: bytes) -> None:
    job_id = new_job(store, chelsea_png)
    assert store.delete(job_id) == "queued"
    assert jobs.run_explanation(job_id) == "canceled"
    assert store.redis.keys("*") == [store.stats_key.encode()]  # nothing but the counters
    assert store.stats()["jobs_canceled"] == 1


def test_guarded_writes_never_resurrect_a_deleted_job(store: JobStore, chelsea_png: bytes) -> None:
    job_id = new_job(store, chelsea_png)
    assert store.start(job_id, "a1")
    assert store.progress(job_id, 5, 10, attempt="a1")
    assert store.start(job_id, "a2")  # RQ ran it again: the new run takes it over
    assert not store.progress(job_id, 6, 10, attempt="a1")
    assert store.delete(job_id) == "running"
    assert not store.progress(job_id, 6, 10, attempt="a2")
    assert not store.fail(job_id, "x", "y")
    assert not store.finish(job_id, result_json="{}", segments_png=b"png", done=10, attempt="a2")
    assert store.redis.keys("*") == [store.stats_key.encode()]
    assert store.delete(job_id) is None


def test_an_image_shared_by_two_jobs_lives_until_the_last_is_deleted(
    store: JobStore, chelsea_png: bytes
) -> None:
    first, second = new_job(store, chelsea_png), new_job(store, chelsea_png, seed=1)
    image_key = store.image_key(sha256_hex(chelsea_png))
    store.delete(first)
    assert store.redis.exists(image_key)
    store.delete(second)
    assert not store.redis.exists(image_key)


def test_a_job_and_its_artifacts_are_one_read_and_its_renderings_go_with_it(
    store: JobStore, chelsea_png: bytes, redis_server: RedisServer
) -> None:
    job_id = new_job(store, chelsea_png)
    renders = store.renders_key(job_id)
    assert store.artifacts(job_id, maps=True, image=True) == JobArtifacts(store.get(job_id))
    assert not store.cache_render(job_id, "figure", b"png")  # not finished: nothing is kept
    assert store.start(job_id, "a1")
    assert store.finish(
        job_id, result_json="{}", segments_png=b"seg", done=1, attempt="a1", attribution=b"maps"
    )
    sent = redis_server.commands_during(lambda: store.artifacts(job_id, maps=True, image=True))
    mine = [c for c in sent if c["client_type"] != "lua" and job_id in c["command"]]
    assert [c["command"].split()[0] for c in mine] == ["EVALSHA"]  # others may share Redis
    found = store.artifacts(job_id, maps=True, image=True)
    assert found == JobArtifacts(store.get(job_id), None, b"seg", b"maps", chelsea_png)
    assert store.artifacts(job_id) == JobArtifacts(found.job, segments_png=b"seg")
    assert store.cache_render(job_id, "figure", b"png")
    assert store.artifacts(job_id, render="figure", image=True) == JobArtifacts(found.job, b"png")
    # the renderings expire with the job (absolute times: two PTTL reads are a clock tick apart)
    ends = [store.redis.execute_command("PEXPIRETIME", k) for k in (renders, store.job_key(job_id))]
    assert min(ends) > 0 and abs(ends[0] - ends[1]) <= 5
    for i in range(MAX_RENDERS):
        store.cache_render(job_id, f"r{i}", b"")
    assert store.redis.hlen(renders) == MAX_RENDERS and store.cache_render(job_id, "figure", b"2")
    assert store.delete(job_id) == "finished"
    assert not store.cache_render(job_id, "figure", b"png")  # a deleted job is not brought back
    assert store.redis.keys("*") == [store.stats_key.encode()]
    assert store.artifacts(job_id) is None and store.artifacts("not-a-job-id") is None


def test_deleting_a_running_job_cancels_it_between_batches(
    store: JobStore, chelsea_png: bytes
) -> None:
    job_id = new_job(
        store, chelsea_png, num_samples=100_000, segmentation={"algorithm": "grid", "cell_size": 64}
    )
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(jobs.run_explanation(job_id)))
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        job = store.get(job_id)
        assert job is not None
        if job.status == "running" and job.done > 0:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    store.delete(job_id)
    thread.join(timeout=10)
    assert outcome == ["canceled"]
    assert store.redis.keys(f"*{job_id}*") == []
    assert store.stats()["jobs_canceled"] == 1


def test_engine_invalid_params_end_failed_with_the_reason(
    store: JobStore, chelsea_png: bytes
) -> None:
    job_id = new_job(store, chelsea_png, targets={"classes": [5000]})
    assert jobs.run_explanation(job_id) == "failed"
    job = store.get(job_id)
    assert job is not None and job.status == "failed" and job.finished_at
    assert job.error == {"title": "Invalid parameters", "detail": job.error["detail"]}
    assert "5000" in job.error["detail"]
    assert store.segments_png(job_id) is None


@pytest.mark.parametrize(
    ("limit", "params"),
    [
        ("GLIMPSE_MAX_NUM_SAMPLES=50", {}),
        ("GLIMPSE_MAX_DESIGN_SIZE=100", {}),  # 60 samples × ~20 superpixels
        ("GLIMPSE_MAX_COMPOSED_PIXELS=1000", {"background": {"kind": "inpaint_telea"}}),
    ],
)
def test_a_job_over_the_worker_limits_ends_failed_before_evaluating(
    store: JobStore, chelsea_png: bytes, monkeypatch: pytest.MonkeyPatch, limit: str, params: dict
) -> None:
    """Defence in depth: a queued job is checked again by the worker's own settings (it may
    predate a lowered limit); the design limit once the superpixels are counted."""
    job_id = new_job(store, chelsea_png, **params)
    name, value = limit.split("=")
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert jobs.run_explanation(job_id) == "failed"
    job = store.get(job_id)
    assert job is not None and job.error is not None and job.error["title"] == "Invalid parameters"
    assert name in job.error["detail"] and job.done == 0
    assert store.segments_png(job_id) is None


def test_an_expired_image_ends_failed(store: JobStore, chelsea_png: bytes) -> None:
    job_id = new_job(store, chelsea_png)
    store.redis.delete(store.image_key(sha256_hex(chelsea_png)))
    assert jobs.run_explanation(job_id) == "failed"
    assert "expired" in (store.get(job_id).error or {})["detail"]  # type: ignore[union-attr]


def test_a_stopping_worker_fails_its_job_so_it_can_be_resubmitted(
    store: JobStore, chelsea_png: bytes
) -> None:
    job_id = new_job(store, chelsea_png)
    jobs.request_stop()
    assert jobs.run_explanation(job_id) == "failed"
    assert store.get(job_id).error["title"] == "Worker stopped"  # type: ignore[union-attr,index]


def test_the_failure_callback_records_timeouts_and_crashes(
    store: JobStore, chelsea_png: bytes
) -> None:
    class RQJobStub:
        should_retry = False  # RQ will not run it again

        def __init__(self, id: str) -> None:
            self.id = id

    job_id = new_job(store, chelsea_png)
    store.start(job_id, "a1")
    exc = JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")
    jobs.on_failure(RQJobStub(job_id), store.redis, JobTimeoutException, exc, None)
    job = store.get(job_id)
    assert job is not None and job.status == "failed"
    assert job.error is not None and job.error["title"] == "Job timed out"
    # A finished job is left alone.
    done = new_job(store, chelsea_png, seed=3)
    assert jobs.run_explanation(done) == "finished"
    jobs.on_failure(RQJobStub(done), store.redis, RuntimeError, RuntimeError("x"), None)
    assert store.get(done).status == "finished"  # type: ignore[union-attr]


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def enqueue(
    settings: Settings, store: JobStore, job_id: str, timeout: int, retries: int = 0
) -> None:
    queue = Queue(settings.queue_name, connection=store.redis, serializer=JSONSerializer)
    queue.enqueue_call(
        "worker.jobs.run_explanation",
        args=[job_id],
        job_id=job_id,
        timeout=timeout,
        on_failure=Callback("worker.jobs.on_failure"),
        retry=Retry(max=retries) if retries else None,
    )


def test_a_run_that_loses_redis_is_run_again_and_counted_once(
    settings: Settings,
    store: JobStore,
    chelsea_png: bytes,
    restore_signals: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis stalls mid-run: the run raises a Redis timeout. RQ runs it again (a retry
    left), and the failure callback must not mark it failed meanwhile: it finishes once."""
    job_id = new_job(store, chelsea_png)
    real_run, runs = jobs._run, []

    def stalls_once(*args: object, **kwargs: object) -> tuple[str, int, float]:
        runs.append(1)
        if len(runs) == 1:
            raise RedisTimeoutError("Timeout reading from socket")
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs, "_run", stalls_once)
    enqueue(settings, store, job_id, timeout=120, retries=2)
    build_worker(settings, store.redis).work(burst=True, logging_level="CRITICAL")
    job = store.get(job_id)
    assert job is not None and job.status == "finished" and len(runs) == 2, job
    stats = store.stats()
    assert stats["jobs_finished"] == 1 and stats.get("jobs_failed", 0) == 0
    assert store.redis.hget(store.job_key(job_id), "restarts") == b"1"


def test_a_run_that_died_before_its_job_was_queued_again_is_taken_over(
    store: JobStore, chelsea_png: bytes
) -> None:
    """The callback could not reach Redis, so the job still says running when RQ runs it
    again: the new run takes it over and the old run's writes are refused."""
    job_id = new_job(store, chelsea_png)
    assert store.start(job_id, "dead-run") and store.progress(job_id, 30, 60, attempt="dead-run")
    assert jobs.run_explanation(job_id) == "finished"
    assert not store.progress(job_id, 40, 60, attempt="dead-run")
    assert store.stats()["jobs_finished"] == 1


def test_every_outcome_is_counted_once_by_its_transition(
    store: JobStore, chelsea_png: bytes
) -> None:
    failed = new_job(store, chelsea_png)
    store.start(failed, "a")
    assert store.fail(failed, "Boom", "x", attempt="a")
    assert not store.fail(failed, "Boom", "again", attempt="a")  # failed already: no count
    queued = new_job(store, chelsea_png, seed=1)
    assert store.delete(queued) == "queued"
    assert store.delete(failed) == "failed"  # a failed job deleted is not a cancel
    stats = store.stats()
    assert stats["jobs_failed"] == 1 and stats["jobs_canceled"] == 1


def test_rq_runs_jobs_in_process_and_times_them_out(
    settings: Settings, store: JobStore, chelsea_png: bytes, restore_signals: None
) -> None:
    quick = new_job(store, chelsea_png)
    slow = new_job(
        store, chelsea_png, num_samples=100_000, segmentation={"algorithm": "grid", "cell_size": 64}
    )
    enqueue(settings, store, quick, timeout=120)
    enqueue(settings, store, slow, timeout=2)
    worker = build_worker(settings, store.redis)
    assert isinstance(worker, GlimpseWorker)
    jobs.warm_models(settings).get(MODEL)
    worker.work(burst=True, logging_level="WARNING")
    assert store.get(quick).status == "finished"  # type: ignore[union-attr]
    timed_out = store.get(slow)
    assert timed_out is not None and timed_out.status == "failed"
    assert timed_out.error is not None and timed_out.error["title"] == "Job timed out"
    # One warm session served both jobs.
    assert list(jobs.warm_models()._models) == [MODEL]
    assert np.isfinite(timed_out.done)


def test_a_maintenance_lock_left_by_a_dead_worker_lapses_in_seconds(
    settings: Settings, store: JobStore
) -> None:
    """A worker killed (or cut off) in the middle of its maintenance pass leaves the lock
    behind: it must lapse within a dead worker's time, not RQ's 15 minutes."""
    worker = build_worker(settings, store.redis)
    (queue,) = worker.queues
    assert queue.acquire_maintenance_lock()  # and then the worker dies
    assert 0 < store.redis.ttl(queue.registry_cleaning_key) <= settings.worker_dead_after_s
    assert not build_worker(settings, store.redis).queues[0].acquire_maintenance_lock()


def test_a_busy_worker_is_registered_for_its_in_job_beats_from_the_start(
    settings: Settings,
    store: JobStore,
    chelsea_png: bytes,
    restore_signals: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the Heartbeat thread's first beat, the worker's registration must already
    outlive a beat: else a worker busy on its first batch drops out of /readyz."""
    enqueue(settings, store, new_job(store, chelsea_png), timeout=120)
    worker = build_worker(settings, store.redis)
    ttls: list[int] = []
    run = jobs.run_explanation

    def recording(job_id: str) -> str:  # the job's first line: no in-job beat yet
        ttls.append(store.redis.ttl(worker.key))
        return run(job_id)

    monkeypatch.setattr(jobs, "run_explanation", recording)
    worker.work(burst=True, logging_level="WARNING")
    assert ttls and ttls[0] > worker.job_monitoring_interval + 30, ttls
