"""When the host hands freed memory back (``api/memory.py``): at the end of a
burst of transfers, not during one and not for small requests."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from jointcloud.api.common.observability import HttpMetrics, Observability
from jointcloud.api.memory import (
    MIN_GAP,
    PAUSE_BYTES,
    TRIM_AFTER,
    HeapTrimmer,
    TrimPolicy,
    malloc_trim,
)

MiB = 1024 * 1024


def test_not_during_a_burst_then_once_at_its_end() -> None:
    policy = TrimPolicy(0)
    moved, t = 0, 0.0
    for _ in range(50):  # 8 MiB answered per look, requests always in flight
        moved += 8 * MiB
        t += 0.05
        assert not policy.due(moved, active=8, now=t)
    t += 0.05
    assert policy.due(moved, active=0, now=t)  # the last request ended
    for _ in range(20):  # idle afterwards: nothing new to give back
        t += 0.05
        assert not policy.due(moved, active=0, now=t)


def test_small_requests_do_not_trim() -> None:
    policy = TrimPolicy(0)
    moved, t = 0, 0.0
    for _ in range(100):  # 4 KiB objects, one at a time: idle between them
        moved += 4096
        t += 0.05
        assert not policy.due(moved, active=0, now=t)
    assert moved < PAUSE_BYTES


def test_a_server_never_idle_trims_in_a_pause() -> None:
    policy = TrimPolicy(0)
    moved = TRIM_AFTER  # a burst, with requests in flight all along
    assert not policy.due(moved, active=3, now=1.0)
    moved += 10 * MiB  # still flowing
    assert not policy.due(moved, active=3, now=1.05)
    moved += 4096  # flow drops to small requests: a pause
    assert policy.due(moved, active=3, now=1.1)


def test_at_most_once_per_min_gap() -> None:
    policy = TrimPolicy(0)
    assert policy.due(2 * MiB, active=0, now=10.0)
    assert not policy.due(4 * MiB, active=0, now=10.0 + MIN_GAP / 2)
    assert policy.due(4 * MiB, active=0, now=10.0 + MIN_GAP * 1.01)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_malloc_trim_is_found_and_runs() -> None:
    trim = malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)


async def test_the_last_request_of_a_burst_wakes_the_trimmer() -> None:
    """Through the observability middleware, as the host wires it: large
    responses, then idle → one trim, without waiting for a poll."""
    metrics = HttpMetrics()
    trimmed = asyncio.Event()
    loop = asyncio.get_running_loop()
    calls: list[int] = []

    def trim() -> int:  # runs in a worker thread, as malloc_trim does
        calls.append(metrics.body_bytes)
        loop.call_soon_threadsafe(trimmed.set)
        return 1

    heap = HeapTrimmer(lambda: metrics.body_bytes, lambda: metrics.active, trim)
    metrics.on_idle = heap.idle

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * (2 * MiB)})

    wrapped = Observability(app, protocol="s3", metrics=metrics)
    runner = asyncio.create_task(heap.run())
    try:
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            got = await asyncio.gather(*(client.get(f"/o{i}") for i in range(4)))
        assert all(len(r.content) == 2 * MiB for r in got)
        assert metrics.active == 0
        await asyncio.wait_for(trimmed.wait(), timeout=5)
        assert calls == [8 * MiB]
    finally:
        runner.cancel()


async def test_bytes_count_as_they_flow_so_a_long_transfer_is_no_pause() -> None:
    """A response still being sent has its bytes counted already: the
    trimmer's pause test sees a transfer in progress, not silence."""
    metrics = HttpMetrics()
    halfway, finish = asyncio.Event(), asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * MiB, "more_body": True})
        halfway.set()
        await finish.wait()
        await send({"type": "http.response.body", "body": b"x" * MiB})

    wrapped = Observability(app, protocol="s3", metrics=metrics)
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = asyncio.create_task(client.get("/long"))
        await halfway.wait()
        assert metrics.active == 1
        assert metrics.body_bytes == MiB  # before the request ends
        policy = TrimPolicy(0)
        assert not policy.due(metrics.body_bytes, metrics.active, now=1.0)
        finish.set()
        assert len((await answer).content) == 2 * MiB
    assert metrics.body_bytes == 2 * MiB and metrics.active == 0
