"""The scrub's rate limiter: no more than the configured bytes per second."""

from __future__ import annotations

import asyncio
import time

import pytest

from jointcloud.config import Settings
from jointcloud.core.scrub import RateLimiter


async def test_rate_limiter_paces_reads() -> None:
    limiter = RateLimiter(1_000_000)  # 1 MB/s
    started = time.monotonic()
    for _ in range(5):
        await limiter.take(50_000)  # 0.25 MB in all
    elapsed = time.monotonic() - started
    # the first take goes at once, the other four wait 0.05 s each
    assert 0.19 <= elapsed < 0.5


async def test_rate_limiter_off_and_idle_credit() -> None:
    off = RateLimiter(0)
    started = time.monotonic()
    await off.take(10**12)
    assert time.monotonic() - started < 0.05
    # time spent idle is not saved up as a burst
    limiter = RateLimiter(1_000_000)
    await limiter.take(1)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await limiter.take(100_000)
    await limiter.take(100_000)
    assert time.monotonic() - started >= 0.09


def test_scrub_rate_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JCS_SCRUB_MBPS", "12.5")
    assert Settings.load("/tmp/jcs-x").scrub_mbps == 12.5
    monkeypatch.delenv("JCS_SCRUB_MBPS")
    assert Settings.load("/tmp/jcs-x").scrub_mbps == 50.0
