"""app/ratelimit.py against a real redis-server: a sliding window shared by every API
process (two limiters on one Redis count together), keyed per caller, n images at once."""

from __future__ import annotations

import time
import uuid

import pytest
from services import RedisServer

from app.ratelimit import WINDOW_S, RateLimiter
from glimpse.errors import PayloadTooLarge, TooManyRequests
from glimpse.settings import Settings


def limiter(redis_server: RedisServer, per_minute: int, prefix: str) -> RateLimiter:
    settings = Settings(
        redis_url=redis_server.url, key_prefix=prefix, rate_limit_per_minute=per_minute
    )
    return RateLimiter(redis_server.client, settings)


@pytest.fixture
def prefix() -> str:
    return f"rl-{uuid.uuid4().hex[:8]}"


def test_two_processes_share_one_allowance(redis_server: RedisServer, prefix: str) -> None:
    first, second = limiter(redis_server, 3, prefix), limiter(redis_server, 3, prefix)
    assert [first.wait_ms("key:a"), second.wait_ms("key:a"), first.wait_ms("key:a")] == [0, 0, 0]
    wait = second.wait_ms("key:a")
    assert 0 < wait <= WINDOW_S * 1000
    assert first.wait_ms("key:b") == 0  # another caller, another allowance
    # The log holds the admitted submissions only, and expires with the window.
    key = first.key("key:a")
    assert redis_server.client.zcard(key) == 3
    assert 0 < redis_server.client.pttl(key) <= WINDOW_S * 1000


def test_429_carries_whole_seconds_until_a_slot_frees(
    redis_server: RedisServer, prefix: str
) -> None:
    limit = limiter(redis_server, 1, prefix)
    limit.admit("addr:127.0.0.1", "this client address")
    with pytest.raises(TooManyRequests) as refused:
        limit.admit("addr:127.0.0.1", "this client address")
    assert refused.value.status == 429
    assert refused.value.retry_after in (WINDOW_S - 1, WINDOW_S)
    assert "1 submissions per minute for this client address" in refused.value.detail


def test_the_window_slides(redis_server: RedisServer, prefix: str) -> None:
    """Age the log by hand (move its oldest entry 59.5 s into the past): a slot frees once its
    submission is older than the window, not at a fixed minute boundary."""
    limit = limiter(redis_server, 2, prefix)
    assert limit.wait_ms("key:a") == 0
    assert limit.wait_ms("key:a") == 0
    key = limit.key("key:a")
    redis = redis_server.client
    oldest = redis.zrange(key, 0, 0)[0]
    seconds, microseconds = redis.time()
    now_ms = seconds * 1000 + microseconds // 1000
    redis.zadd(key, {oldest: now_ms - WINDOW_S * 1000 + 500})
    wait = limit.wait_ms("key:a")
    assert 0 < wait <= 500
    time.sleep(wait / 1000 + 0.05)
    assert limit.wait_ms("key:a") == 0
    assert limit.wait_ms("key:a") > 0


def test_zero_is_no_limit(redis_server: RedisServer, prefix: str) -> None:
    limit = limiter(redis_server, 0, prefix)
    assert all(limit.wait_ms("key:a") == 0 for _ in range(500))
    assert redis_server.client.exists(limit.key("key:a")) == 0


def test_n_images_are_admitted_at_once_or_not_at_all(
    redis_server: RedisServer, prefix: str
) -> None:
    limit = limiter(redis_server, 5, prefix)
    key = limit.key("key:a")
    assert limit.wait_ms("key:a", 3) == 0
    assert redis_server.client.zcard(key) == 3
    wait = limit.wait_ms("key:a", 3)  # 3 + 3 > 5: none of them counted
    assert 0 < wait <= WINDOW_S * 1000
    assert redis_server.client.zcard(key) == 3
    assert limit.wait_ms("key:a", 2) == 0  # what was left fits
    assert redis_server.client.zcard(key) == 5
    assert limit.wait_ms("key:a", 6) == -1  # over the limit itself: never


def test_a_request_counted_first_counts_its_other_images_or_gives_the_first_back(
    redis_server: RedisServer, prefix: str
) -> None:
    """limit_submissions counts one image before the body is read; count_images the rest."""
    limit = limiter(redis_server, 4, prefix)
    key = limit.key("key:a")
    held = limit.admit("key:a", "this API key")
    assert redis_server.client.zscore(key, held) is not None
    limit.admit("key:a", "this API key", 3, held=held)  # 1 + 2 more: 3 in all
    assert redis_server.client.zcard(key) == 3
    held = limit.admit("key:a", "this API key")  # 4: full
    with pytest.raises(TooManyRequests) as refused:
        limit.admit("key:a", "this API key", 2, held=held)
    assert "these 2 fit in" in refused.value.detail and refused.value.retry_after > 0
    assert redis_server.client.zcard(key) == 3  # the refused request's first image taken back
    with pytest.raises(PayloadTooLarge) as never:
        limit.admit(
            "key:a",
            "this API key",
            5,
            held=limit.admit("key:a", "this API key"),
            loc=["body", "images"],
        )
    assert never.value.errors == [{"loc": ["body", "images"], "msg": "more than 4 images"}]
    assert redis_server.client.zcard(key) == 3
