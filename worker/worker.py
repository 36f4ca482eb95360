"""The Glimpse worker: an RQ SimpleWorker (no fork per job) whose ONNX sessions stay warm.

Run it with `python -m worker.worker` (settings from the environment, `REDIS_URL` required).
SIGINT/SIGTERM stop it: a running job stops at its next batch and ends `failed` with
"Worker stopped"; a second signal is RQ's cold shutdown.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from types import FrameType

from redis import Redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from glimpse.errors import GlimpseError
from glimpse.settings import Settings, get_settings
from worker import jobs

log = logging.getLogger("glimpse.worker")


class GlimpseWorker(SimpleWorker):
    """Runs jobs in this process, so `worker.jobs.warm_models()` keeps sessions across jobs."""

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        jobs.request_stop()
        super().request_stop(signum, frame)


def build_worker(settings: Settings, connection: Redis) -> GlimpseWorker:
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    return GlimpseWorker([queue], connection=connection, serializer=JSONSerializer)


def preload(settings: Settings) -> None:
    """Load the default model now, so the first job does not pay for it."""
    models = jobs.warm_models(settings)
    if settings.default_model not in models.registry.names():
        log.warning("default model %r is not registered; nothing preloaded", settings.default_model)
        return
    try:
        models.get(settings.default_model)
    except GlimpseError as exc:
        log.warning("cannot preload %r: %s", settings.default_model, exc.detail)


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    settings = get_settings()
    if not settings.redis_url:
        print("worker: REDIS_URL is not set", file=sys.stderr)
        return 2
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # batch work: the API on the same host stays responsive
    connection = Redis.from_url(settings.redis_url)
    preload(settings)
    worker = build_worker(settings, connection)
    worker.work(with_scheduler=False, logging_level="INFO")
    return 0


if __name__ == "__main__":
    sys.exit(main())
