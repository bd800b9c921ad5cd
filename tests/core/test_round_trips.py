"""What one upload costs in round trips to PostgreSQL: a handful, however
many files it carries (issue 10: "at most a handful of statements for a
small upload", "multi-file uploads commit in one transaction without a
per-file fixed cost"). On PostgreSQL every statement waits for the server
and for the event loop between its requests: bulk writes sent row by row
and the pool's pre-ping (three round trips before each write transaction)
made a 4 KiB upload latency-bound there.

Counted at the driver: every call of asyncpg that sends a statement
(directly, as ``meta/driver.py`` does, or through SQLAlchemy's prepared
statements), BEGIN and COMMIT included."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from asyncpg.prepared_stmt import PreparedStatement
from core_support import World
from test_objects_support import body, package

from jointcloud.meta import driver

SENDING = {
    asyncpg.Connection: (
        "execute",
        "executemany",
        "fetch",
        "fetchrow",
        "fetchval",
        "fetchmany",
        "prepare",
    ),
    PreparedStatement: ("fetch", "fetchrow", "fetchval", "executemany"),
}


class Sent:
    def __init__(self) -> None:
        self.statements = 0


def count_statements(monkeypatch: pytest.MonkeyPatch) -> Sent:
    sent = Sent()

    def counted(real: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(real)
        async def call(*args: Any, **kwargs: Any) -> Any:
            sent.statements += 1
            return await real(*args, **kwargs)

        return call

    for cls, names in SENDING.items():
        for name in names:
            monkeypatch.setattr(cls, name, counted(getattr(cls, name)))
    return sent


async def files(prefix: str, n: int) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    for i in range(n):
        yield f"{prefix}/{i:03d}", body(b"file %d " % i * 40)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_sixty_files_cost_the_round_trips_of_two(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = await package(world)
    # Not the idle ping of a connection left in the pool for long
    # (meta/driver.py): what an upload itself sends.
    monkeypatch.setattr(driver, "IDLE_PING_SECONDS", float("inf"))
    sent = count_statements(monkeypatch)

    async def upload(prefix: str, n: int) -> int:
        before = sent.statements
        infos = await world.ctx.objects.upload(world.alice, pkg.package_id, files(prefix, n))
        assert sorted(i.path for i in infos) == [f"{prefix}/{i:03d}" for i in range(n)]
        return sent.statements - before

    await upload("warm", 2)  # look-ups cached from here on
    two = await upload("two", 2)
    sixty = await upload("sixty", 60)
    assert two > 0, "nothing was counted: the count no longer sees the driver"
    # BEGIN, the package's path lock, layouts, objects, parts, COMMIT.
    assert two <= 6, f"2 files: {two} statements"
    # Row by row, sixty files cost three statements more each (layouts,
    # objects, parts); a cached look-up that expires between the two
    # uploads may cost one more.
    assert sixty - two <= 1, f"2 files: {two} statements; 60 files: {sixty}"


class Clock:
    """The pool check's clock (``driver.time``), moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_steady_load_after_a_burst_is_not_pinged(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads six seconds apart, after a burst left several connections
    in the pool: the pool hands back the connection just used, not one
    idle for longer, so no upload pays the ping on top of its own. After a
    minute without any, the next one is pinged (one statement)."""
    pkg = await package(world)
    clock = Clock()
    monkeypatch.setattr(driver, "time", clock)
    await world.ctx.objects.upload(world.alice, pkg.package_id, files("warm", 2))
    entered = asyncio.Barrier(4)

    async def hold() -> None:
        async with world.ctx.db.write():
            await entered.wait()  # four connections taken at once

    await asyncio.gather(*(hold() for _ in range(4)))
    sent = count_statements(monkeypatch)
    costs = []
    for step in range(6):
        clock.now += 6.0
        before = sent.statements
        await world.ctx.objects.upload(world.alice, pkg.package_id, files(f"step{step}", 2))
        costs.append(sent.statements - before)
    # The first may prepare the package lock on a connection new to it.
    assert max(costs[1:]) <= 6, f"statements per upload: {costs}"
    # Idle for a minute, the connection is pinged: one SELECT 1 (SQLAlchemy's
    # own ping was three, BEGIN, ";" and ROLLBACK).
    clock.now += 60.0
    before = sent.statements
    await world.ctx.objects.upload(world.alice, pkg.package_id, files("late", 2))
    assert sent.statements - before == costs[-1] + 1
