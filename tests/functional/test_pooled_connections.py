"""Pooled PostgreSQL connections whose server ended them (a restart, an
administrator's ``pg_terminate_backend``) are dropped when taken from the
pool, without a round trip (``meta/driver.py``, ``drop_if_closed``): the
writes after it go through on fresh connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select, text

from jointcloud.meta import tables as t
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

BACKEND = text("SELECT pg_backend_pid()")


@pytest.fixture
async def killer(database_url: str) -> AsyncIterator[Database]:
    """A second engine, outside the pool under test."""
    other = Database(database_url)
    yield other
    await other.close()


async def add_user(db: Database, name: str) -> None:
    async with db.write() as conn:
        await conn.execute(insert(t.users).values(name=name, created_at=now()))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_writes_go_through_after_the_server_ended_the_pooled_connections(
    migrated_db: Database, killer: Database
) -> None:
    db = migrated_db
    entered = asyncio.Barrier(3)

    async def hold() -> int:
        """A write connection held until all are taken: the pool then
        keeps several."""
        async with db.write() as conn:
            pid = int((await conn.execute(BACKEND)).scalar_one())
            await entered.wait()
            return pid

    pooled = set(await asyncio.gather(hold(), hold(), hold()))
    assert len(pooled) == 3
    async with killer.write() as conn:
        for pid in pooled:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # Until every backend has exited (its socket is closed by then, and
        # the loop has run while these queries waited for their answers).
        gone = text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)")
        async with asyncio.timeout(30):  # a backend that never exits fails the test
            while (await conn.execute(gone, {"pids": list(pooled)})).scalar():
                pass
    for name in ("kim", "lea", "max", "ned"):
        await add_user(db, name)  # each on a connection not ended
    async with db.write() as conn:
        now_on = int((await conn.execute(BACKEND)).scalar_one())
        names = {r.name for r in await conn.execute(select(t.users.c.name))}
    assert now_on not in pooled
    assert {"kim", "lea", "max", "ned"} <= names
