"""The Redis job store shared by the API and the workers.

Keys (all under `settings.key_prefix`, written as `P` here; every one expires after
`settings.result_ttl_s`):

    P:image:{sha256}          the uploaded file's bytes, content-addressed
    P:image:{sha256}:refs     set of job ids using that image (deleted with the last one)
    P:job:{id}                hash: id, status, created_at, started_at, finished_at, params,
                              done, total, error, result, image_key, cache_key, attempt
                              (token of the run that holds it), restarts (times its
                              worker died and it was queued again), owner (the key id of
                              the API key that made it, glimpse/keys.py; '' without keys)
    P:job:{id}:segments       16-bit PNG of the superpixel ids (finished jobs)
    P:job:{id}:attribution    zlib-compressed .npy of float32 [K, H, W] per-pixel maps, for
                              methods whose maps are not painted superpixels (gradcam)
    P:job:{id}:renders        hash: rendering options (app/artifacts.py) -> the overlay or
                              figure PNG drawn with them; as long as the job lives, at most
                              MAX_RENDERS of them
    P:cache:{cache_key}       id of the job that computed that image + params (with API keys
                              on, the cache key starts with the owner's key id)
    P:stats                   worker counters for /metrics (evaluations, durations, outcomes)
    P:runtimes                hash: RQ worker name -> JSON of what its runtime runs on
                              (runtime, providers, device, note), for /v1/models

Worker writes go through Lua scripts that check the job hash still exists, is in the
expected state and is held by the writer's attempt, so a deleted (canceled) job is never
brought back by a late update, nor a job taken up again overwritten by its stalled first run.
Scripts also read a finished job and everything its artifacts are drawn from in one round
trip, and keep a rendering only of a job still there and finished; they are in
glimpse/store_scripts.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from glimpse import store_scripts
from glimpse.settings import Settings

TERMINAL = frozenset({"finished", "failed", "canceled"})
REUSABLE = frozenset({"queued", "running", "finished"})

#: Upper bounds (seconds) of the job-duration histogram kept in P:stats.
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: Renderings cached per job (P:job:{id}:renders); later ones are drawn on every request. A
#: rendering of a 12-megapixel photo is about 5 MB.
MAX_RENDERS = 8


def utcnow() -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id() -> str:
    """128 random bits, hex."""
    return secrets.token_hex(16)


def is_job_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True)
class JobRecord:
    """One job hash, decoded."""

    id: str
    status: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    params: dict[str, Any]
    done: int
    total: int
    error: dict[str, Any] | None
    result_json: str | None
    image_key: str
    cache_key: str
    owner: str = ""  # key id of the API key that made it (glimpse/keys.py); '' without keys

    @classmethod
    def from_hash(cls, data: Mapping[bytes, bytes]) -> JobRecord:
        h = {k.decode(): v.decode() for k, v in data.items()}
        return cls(
            id=h["id"],
            status=h["status"],
            created_at=h["created_at"],
            started_at=h.get("started_at") or None,
            finished_at=h.get("finished_at") or None,
            params=json.loads(h["params"]),
            done=int(h.get("done", 0)),
            total=int(h.get("total", 0)),
            error=json.loads(h["error"]) if h.get("error") else None,
            result_json=h.get("result") or None,
            image_key=h.get("image_key", ""),
            cache_key=h.get("cache_key", ""),
            owner=h.get("owner", ""),
        )


@dataclass(frozen=True)
class JobArtifacts:
    """A job and, once it is finished, what its artifacts are drawn from, read in one round
    trip (`JobStore.artifacts`); None where absent or not asked for."""

    job: JobRecord
    render: bytes | None = None  # the cached rendering asked for
    segments_png: bytes | None = None
    attribution: bytes | None = None  # compressed per-pixel maps (encode_maps), gradcam's
    image: bytes | None = None  # the uploaded file


class JobStore:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.prefix = settings.key_prefix
        self.ttl = settings.result_ttl_s
        self._update = redis.register_script(store_scripts.GUARDED_UPDATE)
        self._finish = redis.register_script(store_scripts.FINISH)
        self._requeue = redis.register_script(store_scripts.REQUEUE)
        self._delete = redis.register_script(store_scripts.DELETE)
        self._artifacts = redis.register_script(store_scripts.ARTIFACTS)
        self._cache_render = redis.register_script(store_scripts.CACHE_RENDER)

    # --- keys ---------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def segments_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:segments"

    def attribution_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:attribution"

    def renders_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:renders"

    def image_key(self, sha256: str) -> str:
        return f"{self.prefix}:image:{sha256}"

    def cache_index_key(self, cache_key: str) -> str:
        return f"{self.prefix}:cache:{cache_key}"

    @property
    def stats_key(self) -> str:
        return f"{self.prefix}:stats"

    @property
    def runtimes_key(self) -> str:
        return f"{self.prefix}:runtimes"

    # --- what the workers run on ----------------------------------------------------------
    def record_runtime(self, worker_name: str, report: Mapping[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.runtimes_key, worker_name, json.dumps(dict(report)))
        pipe.expire(self.runtimes_key, self.ttl)
        pipe.execute()

    def runtimes(self, worker_names: list[str]) -> list[dict[str, Any]]:
        """The reports of these workers (the live ones: a dead worker's entry stays behind
        until the key expires, and is never asked for)."""
        if not worker_names:
            return []
        found = self.redis.hmget(self.runtimes_key, worker_names)
        return [json.loads(raw) for raw in found if raw]

    # --- the API's side -------------------------------------------------------------------
    def create(
        self,
        *,
        image: bytes,
        sha256: str,
        params: Mapping[str, Any],
        cache_key: str,
        total: int,
        owner: str = "",
        pipeline: Pipeline | None = None,
    ) -> JobRecord:
        """Store the image (shared by sha256) and a new queued job; index it by cache key.
        `owner`: the key id of the API key that submits it ('' without keys). `pipeline`: a
        transaction of the caller's to add the writes to (the caller executes it: the API
        enqueues the job in the same MULTI/EXEC, so a job is stored and queued, or neither);
        without one they run at once, in a transaction of their own."""
        job_id = new_job_id()
        image_key = self.image_key(sha256)
        fields: dict[str, str | int] = {
            "id": job_id,
            "status": "queued",
            "created_at": utcnow(),
            "started_at": "",
            "finished_at": "",
            "params": json.dumps(params, sort_keys=True),
            "done": 0,
            "total": total,
            "error": "",
            "result": "",
            "image_key": image_key,
            "cache_key": cache_key,
            "owner": owner,
        }
        pipe = pipeline if pipeline is not None else self.redis.pipeline(transaction=True)
        pipe.set(image_key, image, ex=self.ttl)
        pipe.sadd(f"{image_key}:refs", job_id)
        pipe.expire(f"{image_key}:refs", self.ttl)
        mapping: dict[FieldT, EncodableT] = {k: v for k, v in fields.items()}
        pipe.hset(self.job_key(job_id), mapping=mapping)
        pipe.expire(self.job_key(job_id), self.ttl)
        pipe.set(self.cache_index_key(cache_key), job_id, ex=self.ttl)
        if pipeline is None:
            pipe.execute()
        return JobRecord.from_hash({k.encode(): str(v).encode() for k, v in fields.items()})

    def get(self, job_id: str) -> JobRecord | None:
        if not is_job_id(job_id):
            return None
        data = self.redis.hgetall(self.job_key(job_id))
        return JobRecord.from_hash(data) if data else None  # type: ignore[arg-type]

    def reusable(self, job_id: str, *, owner: str = "") -> JobRecord | None:
        """Job `job_id`, read from the cache index (`cache_index_key`), if it is `owner`'s
        and not failed or canceled: the job that already computes the request. The cache key
        names the owner already; checking it again means a job is never handed to another
        key, whatever the key looks like."""
        job = self.get(job_id)
        if job is None or job.owner != owner:
            return None
        return job if job.status in REUSABLE else None

    def owner(self, job_id: str) -> str | None:
        """The key id that owns a job ('' when made without keys), or None if unknown: one
        HGET, for the access check of every request that names a job."""
        if not is_job_id(job_id):
            return None
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(self.job_key(job_id))
        pipe.hget(self.job_key(job_id), "owner")
        exists, owner = pipe.execute()
        if not exists:
            return None
        return owner.decode() if owner is not None else ""

    def delete(self, job_id: str) -> str | None:
        """Delete a job and the data only it uses; the status it had, or None if unknown."""
        if not is_job_id(job_id):
            return None
        keys = [*self._data_keys(job_id), self.stats_key]
        status = self._delete(keys=keys, args=[job_id, self.prefix, self.ttl])
        status = status.decode() if isinstance(status, bytes) else str(status)
        return status or None

    def _data_keys(self, job_id: str) -> list[str]:
        """The job hash, its segments, attribution maps and renderings."""
        return [
            self.job_key(job_id),
            self.segments_key(job_id),
            self.attribution_key(job_id),
            self.renders_key(job_id),
        ]

    def image(self, job: JobRecord) -> bytes | None:
        return self.redis.get(job.image_key)  # type: ignore[return-value]

    def segments_png(self, job_id: str) -> bytes | None:
        return self.redis.get(self.segments_key(job_id))  # type: ignore[return-value]

    def artifacts(
        self, job_id: str, *, render: str = "", maps: bool = False, image: bool = False
    ) -> JobArtifacts | None:
        """A job and what its artifacts are drawn from, in one round trip; None if unknown.
        Of a finished job: the cached rendering `render` names ('' = none) if there is one,
        else its segments PNG, and its attribution maps if `maps`, its image if `image`."""
        if not is_job_id(job_id):
            return None
        reply = self._artifacts(keys=self._data_keys(job_id), args=[render, int(maps), int(image)])
        if not reply:
            return None
        fields, *found = reply
        job = JobRecord.from_hash(dict(zip(fields[::2], fields[1::2], strict=True)))
        return JobArtifacts(job, *found)

    def cache_render(self, job_id: str, render: str, png: bytes) -> bool:
        """Keep a rendering of a finished job under `render` for as long as the job; False
        when the job is gone or not finished, or keeps MAX_RENDERS renderings already."""
        keys = [self.job_key(job_id), self.renders_key(job_id)]
        return bool(self._cache_render(keys=keys, args=[render, png, MAX_RENDERS]))

    def stats(self) -> dict[str, float]:
        raw = self.redis.hgetall(self.stats_key)
        return {k.decode(): float(v) for k, v in raw.items()}  # type: ignore[union-attr]

    # --- the worker's side (guarded: never resurrects a deleted job) ------------------------
    # Each run of a job is an *attempt* with its own random token, written by `start`; the
    # attempt's later writes must present it. A worker that stalled (not dead, only silent)
    # past its heartbeat, whose job another worker took up again, can then write nothing.
    def start(self, job_id: str, attempt: str) -> bool:
        """Hold the job for `attempt`. RQ decides when a job runs: a job still `running` is
        one whose last run died before it could be queued again here (Redis was away), and
        the new attempt takes it over, progress cleared; the old run's writes then fail."""
        return self._guarded(
            job_id, "active", status="running", started_at=utcnow(), attempt=attempt, done=0
        )

    def progress(self, job_id: str, done: int, total: int, *, attempt: str) -> bool:
        """False when the job was deleted, canceled or taken over: the caller should stop."""
        return self._guarded(job_id, "running", done=done, total=total, attempt_=attempt)

    def requeue(self, job_id: str) -> bool:
        """Back to queued, progress cleared: its worker died and RQ runs it again."""
        return bool(self._requeue(keys=[self.job_key(job_id)], args=[self.ttl]))

    def finish(
        self,
        job_id: str,
        *,
        result_json: str,
        segments_png: bytes,
        done: int,
        attempt: str,
        attribution: bytes | None = None,
    ) -> bool:
        """Mark finished with its result and artifacts; `attribution`: compressed per-pixel
        maps (encode_maps) for methods that have them."""
        fields: dict[str, Any] = {
            "status": "finished",
            "finished_at": utcnow(),
            "result": result_json,
            "done": done,
            "total": done,
        }
        args: list[Any] = [self.ttl, segments_png, attribution or b"", attempt]
        for k, v in fields.items():
            args += [k, v]
        keys = [self.job_key(job_id), self.segments_key(job_id), self.attribution_key(job_id)]
        return bool(self._finish(keys=[*keys, self.stats_key], args=args))

    def fail(self, job_id: str, title: str, detail: str, *, attempt: str = "") -> bool:
        """Mark failed; `attempt` '' when RQ itself reports the failure (no attempt ran)."""
        error = json.dumps({"title": title, "detail": detail})
        return self._guarded(
            job_id,
            "active",
            count_="jobs_failed",
            status="failed",
            finished_at=utcnow(),
            error=error,
            attempt_=attempt,
        )

    def _guarded(
        self, job_id: str, required: str, *, attempt_: str = "", count_: str = "", **fields: Any
    ) -> bool:
        """Write `fields` if the job is in state `required` (and held by `attempt_`, if given);
        `count_`: the stats counter the write adds one to."""
        args: list[Any] = [required, self.ttl, attempt_, count_]
        for k, v in fields.items():
            args += [k, v]
        return bool(self._update(keys=[self.job_key(job_id), self.stats_key], args=args))

    def record_run(
        self,
        *,
        seconds: float | None = None,
        evaluations: int = 0,
        evaluation_seconds: float = 0.0,
    ) -> None:
        """Counters for /metrics of a run: its duration (histogram) and model evaluations.
        Jobs by outcome are counted by the transitions themselves (finish, fail, delete)."""
        pipe = self.redis.pipeline(transaction=False)
        if seconds is not None:
            pipe.hincrbyfloat(self.stats_key, "duration_sum", seconds)
            pipe.hincrby(self.stats_key, "duration_count", 1)
            for le in DURATION_BUCKETS:
                if seconds <= le:
                    pipe.hincrby(self.stats_key, f"duration_le_{le}", 1)
        if evaluations:
            pipe.hincrby(self.stats_key, "evaluations", evaluations)
            pipe.hincrbyfloat(self.stats_key, "evaluation_seconds", evaluation_seconds)
            if evaluation_seconds > 0:
                pipe.hset(
                    self.stats_key, "last_evaluations_per_second", evaluations / evaluation_seconds
                )
        pipe.expire(self.stats_key, self.ttl)
        pipe.execute()
