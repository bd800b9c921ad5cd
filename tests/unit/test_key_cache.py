"""The per-process cache of verified keys (``core/keycache.py``): bounded in
time and size, one load per key at a time, failures never cached, and a
``clear``/``pop`` that a load in flight cannot undo."""

from __future__ import annotations

import asyncio

import pytest

from jointcloud.core.keycache import KeyCache
from jointcloud.errors import Unauthorized


class Loader:
    """A load that counts its calls and finishes when told to (``ready``:
    at once, for loads a test expects never to be called)."""

    def __init__(self, value: str = "user", *, ready: bool = False) -> None:
        self.value = value
        self.calls = 0
        self.release = asyncio.Event()
        if ready:
            self.release.set()
        self.started = asyncio.Event()
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def test_concurrent_misses_share_one_load() -> None:
    cache: KeyCache[str, str] = KeyCache()
    load = Loader()
    waiters = [asyncio.ensure_future(cache.get("k", load)) for _ in range(16)]
    await load.started.wait()
    load.release.set()
    assert await asyncio.gather(*waiters) == ["user"] * 16
    assert load.calls == 1
    assert await cache.get("k", load) == "user"  # a hit now
    assert load.calls == 1


async def test_a_failed_load_is_shared_and_never_cached() -> None:
    cache: KeyCache[str, str] = KeyCache()
    load = Loader()
    load.error = Unauthorized("invalid API key")
    waiters = [asyncio.ensure_future(cache.get("k", load)) for _ in range(4)]
    await load.started.wait()
    load.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, Unauthorized) for r in results) and load.calls == 1
    # The key may have been created meanwhile: the next use looks again.
    load.error = None
    assert await cache.get("k", load) == "user"
    assert load.calls == 2 and len(cache) == 1


class Clock:
    """The cache's clock, moved by the test (nothing sleeps)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_entry_expires_after_its_seconds() -> None:
    clock = Clock()
    cache: KeyCache[str, str] = KeyCache(seconds=2.0, clock=clock)
    load = Loader()
    load.release.set()
    assert await cache.get("k", load) == "user"
    clock.now += 1.9
    assert await cache.get("k", load) == "user" and load.calls == 1
    clock.now += 0.2  # 2.1 s after it was read
    load.value = "renamed"
    assert await cache.get("k", load) == "renamed" and load.calls == 2


@pytest.mark.parametrize("forget", ["clear", "pop"])
async def test_forgetting_a_key_during_a_load_takes_effect_at_once(forget: str) -> None:
    """A key revoked here while a load of it runs: the next request loads
    anew instead of joining the load that read the key before, and that
    load's answer goes to its own waiters only, never into the cache."""
    cache: KeyCache[str, str] = KeyCache()
    stale = Loader("before the revocation")
    waiter = asyncio.ensure_future(cache.get("k", stale))
    await stale.started.wait()
    if forget == "clear":
        cache.clear()
    else:
        cache.pop("k")
    fresh = Loader("after")
    fresh.release.set()
    async with asyncio.timeout(10):  # joining the stale load would wait for it forever
        assert await cache.get("k", fresh) == "after"  # while the stale load still runs
    assert fresh.calls == 1 and not waiter.done()
    stale.release.set()
    assert await waiter == "before the revocation"  # the request already in flight
    again = Loader("never called", ready=True)
    assert await cache.get("k", again) == "after" and again.calls == 0


async def test_a_load_older_than_the_bound_is_replaced_not_joined() -> None:
    """No request gets an answer read longer ago than the bound: a load
    that began more than ``seconds`` ago (a slow one) is not joined."""
    clock = Clock()
    cache: KeyCache[str, str] = KeyCache(seconds=2.0, clock=clock)
    slow = Loader("read at 1000")
    first = asyncio.ensure_future(cache.get("k", slow))
    await slow.started.wait()
    clock.now += 1.0
    joined = asyncio.ensure_future(cache.get("k", Loader("never called", ready=True)))
    await asyncio.sleep(0)  # one turn of the loop: it joins the slow load now
    clock.now += 1.5  # the slow load began 2.5 s ago
    fresh = Loader("read at 1002.5")
    replacing = asyncio.ensure_future(cache.get("k", fresh))
    async with asyncio.timeout(10):  # joining the slow load would never start this one
        await fresh.started.wait()
    slow.release.set()  # the slow load ends first: it must not fill the cache
    assert await first == "read at 1000" and await joined == "read at 1000"
    fresh.release.set()
    assert await replacing == "read at 1002.5"
    again = Loader("never called", ready=True)
    assert await cache.get("k", again) == "read at 1002.5" and again.calls == 0


async def test_a_waiter_going_away_does_not_cancel_the_others_load() -> None:
    cache: KeyCache[str, str] = KeyCache()
    load = Loader()
    first = asyncio.ensure_future(cache.get("k", load))
    second = asyncio.ensure_future(cache.get("k", load))
    await load.started.wait()
    first.cancel()
    load.release.set()
    assert await second == "user"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert load.calls == 1 and len(cache) == 1


async def test_the_least_recently_used_go_beyond_the_size() -> None:
    cache: KeyCache[str, str] = KeyCache(entries=2)
    for key in ("a", "b"):
        load = Loader(key)
        load.release.set()
        await cache.get(key, load)
    again = Loader("never called", ready=True)
    assert await cache.get("a", again) == "a" and again.calls == 0  # "a" is now the newest
    load = Loader("c")
    load.release.set()
    await cache.get("c", load)
    assert len(cache) == 2
    b_again = Loader("b reloaded")
    b_again.release.set()
    assert await cache.get("b", b_again) == "b reloaded"  # "b" was the one to go
