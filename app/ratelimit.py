"""A limit on submissions per API key (per client address without keys), kept in Redis so
that every API process and machine counts together.

Only submissions are limited (POST /v1/explanations, KServe :predict and :explain, each
request counting one): they are what costs worker time. Reads are not: polling a job every
100 ms is legitimate, and a GET costs one Redis lookup.

A sliding log: `P:rate:{who}` is a sorted set of the times (Redis's clock, in ms, so API
hosts need no synchronized clocks) of the submissions admitted in the last 60 s. A
submission is admitted while fewer than the limit are in it; otherwise the answer is 429
with `Retry-After`: the seconds until the oldest one leaves the window. Refused submissions
are not recorded, so hammering does not extend a client's wait. Unlike a fixed window, no
burst of twice the limit across a window edge.
"""

from __future__ import annotations

import math
import secrets

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from redis import Redis

from app.auth import OwnerDep
from glimpse.errors import TooManyRequests
from glimpse.settings import Settings

WINDOW_S = 60

# KEYS[1] the log; ARGV[1] limit, ARGV[2] window (ms), ARGV[3] a unique member. Returns 0 when
# admitted (and recorded), else the ms until a slot frees.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 1)
"""


class RateLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.limit = settings.rate_limit_per_minute
        self.prefix = settings.key_prefix
        self._hit = redis.register_script(_HIT)

    def key(self, who: str) -> str:
        return f"{self.prefix}:rate:{who}"

    def wait_ms(self, who: str) -> int:
        """0 when a submission by `who` is admitted now (and counted), else the ms to wait."""
        if self.limit == 0:
            return 0
        member = secrets.token_hex(8)
        return int(self._hit(keys=[self.key(who)], args=[self.limit, WINDOW_S * 1000, member]))

    def admit(self, who: str, what: str) -> None:
        """Count one submission, or raise 429 with the whole seconds until one is admitted."""
        wait = self.wait_ms(who)
        if wait > 0:
            seconds = max(1, math.ceil(wait / 1000))
            raise TooManyRequests(
                f"over the limit of {self.limit} submissions per minute for {what}; "
                f"try again in {seconds} s",
                retry_after=seconds,
            )


async def limit_submissions(request: Request, owner: OwnerDep) -> None:
    """Dependency of the submission routes; runs after authentication (401 before 429) and
    before the body is read. Async, with the Redis call in the thread pool only when a limit
    is set: a hop to a thread and back costs every submission time under load."""
    limiter: RateLimiter = request.app.state.rate_limiter
    if limiter.limit == 0:
        return
    if owner:
        who, what = f"key:{owner}", "this API key"
    else:
        host = request.client.host if request.client else "unknown"
        who, what = f"addr:{host}", "this client address"
    await run_in_threadpool(limiter.admit, who, what)
