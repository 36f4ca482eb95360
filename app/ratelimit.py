"""A limit on submitted images per API key (per client address without keys), kept in Redis
so that every API process and machine counts together.

Only submissions are limited (POST /v1/explanations, POST /v1/batches, KServe :predict and
:explain), and they count their images: a batch of 8, or a KServe request of 8 instances,
counts 8. They are what costs worker time. Reads are not: polling a job every 100 ms is
legitimate, and a GET costs one Redis lookup.

A sliding log: `P:rate:{who}` is a sorted set of the times (Redis's clock, in ms, so API
hosts need no synchronized clocks) of the images admitted in the last 60 s. n images are
admitted at once, atomically, while the log has room for all n; otherwise the answer is 429
with `Retry-After`: the seconds until enough of the oldest leave the window. Refused images
are not recorded, so hammering does not extend a client's wait. Unlike a fixed window, no
burst of twice the limit across a window edge.

The first image of every submission is counted before its body is read (`limit_submissions`,
a dependency: a flood of bodies is refused before they are read, and a body that turns out
malformed still counts one). A request of several images counts the rest once its body says
how many (`count_images`), in the same step as taking back the first if the whole request
does not fit: a request over the allowance leaves nothing counted.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from redis import Redis

from app.auth import OwnerDep
from glimpse.errors import PayloadTooLarge, TooManyRequests
from glimpse.settings import Settings

WINDOW_S = 60

# KEYS[1] the log; ARGV[1] limit, ARGV[2] window (ms), ARGV[3] a unique token (the members it
# adds are token:1, token:2, ...), ARGV[4] n, the images to admit, ARGV[5] a member admitted
# earlier that is one of the n ('' = none). Returns 0 when all n are admitted (and recorded),
# else the ms until they would be (-1: never, n is over the limit), having removed ARGV[5].
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local held = 0
if ARGV[5] ~= '' and redis.call('ZSCORE', KEYS[1], ARGV[5]) then held = 1 end
local count = redis.call('ZCARD', KEYS[1])
if count - held + n <= limit then
  for i = 1, n - held do redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
if held == 1 then
  redis.call('ZREM', KEYS[1], ARGV[5])
  count = count - 1
end
if n > limit then return -1 end
local k = count + n - limit
local freeing = redis.call('ZRANGE', KEYS[1], k - 1, k - 1, 'WITHSCORES')
return math.max(tonumber(freeing[2]) + window - now, 1)
"""


@dataclass(frozen=True)
class Admitted:
    """The first image of a request, counted before its body was read (`request.state`)."""

    who: str
    what: str
    member: str


class RateLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.limit = settings.rate_limit_per_minute
        self.prefix = settings.key_prefix
        self._hit = redis.register_script(_HIT)

    def key(self, who: str) -> str:
        return f"{self.prefix}:rate:{who}"

    def wait_ms(self, who: str, n: int = 1, *, token: str = "", held: str = "") -> int:
        """0 when n images by `who` are admitted now (and counted, as members `token:1`..;
        `held`: a member counted earlier that is one of the n), else the ms to wait, -1 when
        n is over the limit itself; a refusal takes `held` back."""
        if self.limit == 0:
            return 0
        token = token or secrets.token_hex(8)
        args: list[int | str] = [self.limit, WINDOW_S * 1000, token, n, held]
        return int(self._hit(keys=[self.key(who)], args=args))

    def admit(
        self, who: str, what: str, n: int = 1, *, held: str = "", loc: list[str | int] | None = None
    ) -> str:
        """Count n images (one of them `held`, when given), or raise 429 with the whole seconds
        until all n are admitted (413 at `loc` when n is over the limit itself). Returns the
        member that records the first image counted here."""
        token = secrets.token_hex(8)
        wait = self.wait_ms(who, n, token=token, held=held)
        if wait < 0:
            raise PayloadTooLarge(
                f"{n} images in one request are more than the limit of {self.limit} submitted "
                f"images per minute for {what}; send them in requests of at most {self.limit}",
                errors=[{"loc": loc or ["body"], "msg": f"more than {self.limit} images"}],
            )
        if wait > 0:
            seconds = max(1, math.ceil(wait / 1000))
            when = f"try again in {seconds} s" if n == 1 else f"these {n} fit in {seconds} s"
            raise TooManyRequests(
                f"over the limit of {self.limit} submissions per minute for {what} (each "
                f"image counts one); {when}",
                retry_after=seconds,
            )
        return f"{token}:1"


async def limit_submissions(request: Request, owner: OwnerDep) -> None:
    """Dependency of the submission routes: counts their first image. Runs after
    authentication (401 before 429) and before the body is read. Async, with the Redis call in
    the thread pool only when a limit is set: a hop to a thread and back costs every
    submission time under load."""
    limiter: RateLimiter = request.app.state.rate_limiter
    if limiter.limit == 0:
        return
    if owner:
        who, what = f"key:{owner}", "this API key"
    else:
        host = request.client.host if request.client else "unknown"
        who, what = f"addr:{host}", "this client address"
    member = await run_in_threadpool(limiter.admit, who, what)
    request.state.rate_admitted = Admitted(who, what, member)


async def count_images(request: Request, n: int, loc: list[str | int]) -> None:
    """Count all n images of a request whose first `limit_submissions` counted: 429 (or 413
    at `loc`, over the limit itself) when they do not all fit, the first taken back."""
    limiter: RateLimiter = request.app.state.rate_limiter
    admitted: Admitted | None = getattr(request.state, "rate_admitted", None)
    if limiter.limit == 0 or admitted is None or n <= 1:
        return
    await run_in_threadpool(
        limiter.admit, admitted.who, admitted.what, n, held=admitted.member, loc=loc
    )
