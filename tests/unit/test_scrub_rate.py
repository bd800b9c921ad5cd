"""The scrub's rate limiter: no more than the configured bytes per second,
measured on a fake clock (no test time is spent waiting)."""

from __future__ import annotations

import pytest

from jointcloud.config import Settings
from jointcloud.core.scrub import RateLimiter


class FakeClock:
    """Time that passes only when someone sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(rate: float, clock: FakeClock) -> RateLimiter:
    return RateLimiter(rate, clock=clock, sleep=clock.sleep)


async def test_rate_limiter_paces_reads() -> None:
    clock = FakeClock()
    paced = limiter(1_000_000, clock)  # 1 MB/s
    for _ in range(5):
        await paced.take(50_000)  # 0.25 MB in all
    # the first take goes at once, the other four wait 0.05 s each
    assert clock.slept == pytest.approx([0.05] * 4)
    assert clock.now - 1000.0 == pytest.approx(0.2)


async def test_rate_limiter_off_and_idle_credit() -> None:
    clock = FakeClock()
    off = limiter(0, clock)
    await off.take(10**12)
    assert clock.slept == []
    # time spent idle is not saved up as a burst
    paced = limiter(1_000_000, clock)
    await paced.take(1)
    clock.now += 0.1  # idle
    await paced.take(100_000)  # at once: the previous take's time is long past
    assert clock.slept == []
    await paced.take(100_000)  # waits for the first one's 0.1 s
    assert clock.slept == pytest.approx([0.1])


async def test_rate_limiter_on_the_real_clock() -> None:
    """The defaults are the monotonic clock and asyncio's sleep."""
    paced = RateLimiter(1_000_000_000)  # 1 GB/s: 1 KB takes a microsecond
    await paced.take(1000)
    await paced.take(1000)


def test_scrub_rate_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JCS_SCRUB_MBPS", "12.5")
    assert Settings.load("/tmp/jcs-x").scrub_mbps == 12.5
    monkeypatch.delenv("JCS_SCRUB_MBPS")
    assert Settings.load("/tmp/jcs-x").scrub_mbps == 50.0
