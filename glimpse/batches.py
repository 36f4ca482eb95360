"""The Redis batch store: several jobs submitted together under one id (POST /v1/batches).

    P:batch:{id}    hash: id, created_at, owner (the API key id, '' without keys), jobs (JSON
                    list of the job ids, one per image in submission order; an id repeats
                    where identical images share a job). Expires after settings.result_ttl_s,
                    as the jobs do.

The jobs are ordinary jobs (glimpse/store.py): a batch only names them. A batch is written in
the MULTI/EXEC that stores and queues its jobs (app/submissions.py `enqueue_many`), so it
exists exactly when they all do. Reading one is one round trip: a script reads the batch
and the status and progress of each of its jobs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline

from glimpse.settings import Settings
from glimpse.store import JobRecord, is_job_id, new_job_id, utcnow

# KEYS[1] batch hash; ARGV[1] key prefix. Returns {} for an unknown batch, else {created_at,
# owner, jobs (JSON), then status, done, total of each job in order (false where the job is
# gone: deleted or expired)}.
READ = """
local batch = redis.call('HMGET', KEYS[1], 'created_at', 'owner', 'jobs')
if not batch[1] then return {} end
local reply = {batch[1], batch[2] or '', batch[3]}
for _, id in ipairs(cjson.decode(batch[3])) do
  local job = redis.call('HMGET', ARGV[1] .. ':job:' .. id, 'status', 'done', 'total')
  reply[#reply + 1] = job[1]
  reply[#reply + 1] = job[2]
  reply[#reply + 1] = job[3]
end
return reply
"""


@dataclass(frozen=True)
class BatchEntry:
    """One image's job, as the batch sees it: `status` None where the job is gone."""

    id: str
    status: str | None
    done: int
    total: int


@dataclass(frozen=True)
class BatchRecord:
    id: str
    created_at: str
    owner: str
    jobs: list[BatchEntry]


class BatchStore:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.prefix = settings.key_prefix
        self.ttl = settings.result_ttl_s
        self._read = redis.register_script(READ)

    def key(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def create(self, jobs: Sequence[JobRecord], *, owner: str, pipeline: Pipeline) -> BatchRecord:
        """A new batch of these jobs (one per image, in order), written in the caller's
        transaction, which the caller executes."""
        batch_id = new_job_id()
        created_at = utcnow()
        key = self.key(batch_id)
        ids = json.dumps([job.id for job in jobs])
        pipeline.hset(
            key, mapping={"id": batch_id, "created_at": created_at, "owner": owner, "jobs": ids}
        )
        pipeline.expire(key, self.ttl)
        entries = [BatchEntry(job.id, job.status, job.done, job.total) for job in jobs]
        return BatchRecord(batch_id, created_at, owner, entries)

    def get(self, batch_id: str) -> BatchRecord | None:
        """The batch and its jobs' status and progress, in one round trip; None if unknown."""
        if not is_job_id(batch_id):
            return None
        reply = self._read(keys=[self.key(batch_id)], args=[self.prefix])
        if not reply:
            return None
        created_at, owner, jobs, *found = reply
        ids = json.loads(jobs)
        entries = [
            BatchEntry(
                job_id,
                status.decode() if status else None,
                int(done or 0),
                int(total or 0),
            )
            for job_id, status, done, total in zip(
                ids, found[0::3], found[1::3], found[2::3], strict=True
            )
        ]
        return BatchRecord(batch_id, created_at.decode(), owner.decode(), entries)

    def delete(self, batch_id: str) -> bool:
        """Forget the batch (its jobs are the caller's to delete); False if it was unknown."""
        return is_job_id(batch_id) and bool(self.redis.delete(self.key(batch_id)))
