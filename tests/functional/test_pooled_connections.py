"""Pooled PostgreSQL connections whose server ended them (a restart, an
administrator's ``pg_terminate_backend``) are dropped when taken from the
pool (``meta/driver.py``, ``check_on_checkout``): without a round trip
once asyncpg has seen the socket close, by a ping when the connection sat
idle. The writes after it go through on fresh connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import insert, select, text

from jointcloud.meta import driver
from jointcloud.meta import tables as t
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

BACKEND = text("SELECT pg_backend_pid()")
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
async def killer(database_url: str) -> AsyncIterator[Database]:
    """A second engine, outside the pool under test."""
    other = Database(database_url)
    yield other
    await other.close()


async def add_user(db: Database, name: str) -> None:
    async with db.write() as conn:
        await conn.execute(insert(t.users).values(name=name, created_at=now()))


async def end_pooled_connections(db: Database, killer: Database) -> set[int]:
    """Fill the pool with three write connections, then have the server end
    them, until the loop has seen every socket close (a backend leaves its
    socket open until its process ends); returns their backends' ids."""
    entered = asyncio.Barrier(3)
    closed: set[int] = set()
    all_closed = asyncio.Event()

    def on_close(connection: asyncpg.Connection) -> None:
        closed.add(id(connection))
        if len(closed) == 3:
            all_closed.set()

    async def hold() -> int:
        async with db.write() as conn:
            pid = int((await conn.execute(BACKEND)).scalar_one())
            raw = (await conn.get_raw_connection()).driver_connection
            raw.add_termination_listener(on_close)
            await entered.wait()  # all three are taken at once
            return pid

    pids = set(await asyncio.gather(hold(), hold(), hold()))
    assert len(pids) == 3
    async with killer.write() as conn:
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    async with asyncio.timeout(30):  # a backend that never exits fails the test
        await all_closed.wait()
    return pids


async def writes_go_through(db: Database, ended: set[int]) -> None:
    for name in ("kim", "lea", "max", "ned"):
        await add_user(db, name)  # each on a connection not ended
    async with db.write() as conn:
        now_on = int((await conn.execute(BACKEND)).scalar_one())
        names = {r.name for r in await conn.execute(select(t.users.c.name))}
    assert now_on not in ended
    assert {"kim", "lea", "max", "ned"} <= names


async def test_connections_the_server_closed_are_dropped_without_a_round_trip(
    migrated_db: Database, killer: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Never the idle ping, which would find them ended too: the closed check alone.
    monkeypatch.setattr(driver, "IDLE_PING_SECONDS", float("inf"))
    ended = await end_pooled_connections(migrated_db, killer)
    await writes_go_through(migrated_db, ended)


async def test_a_connection_idle_for_long_is_pinged(
    migrated_db: Database, killer: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if the other end had gone away without a word: asyncpg still
    takes the connections for open, and only the ping finds out."""
    ended = await end_pooled_connections(migrated_db, killer)
    monkeypatch.setattr(asyncpg.Connection, "is_closed", lambda self: False)
    monkeypatch.setattr(driver, "IDLE_PING_SECONDS", 0.0)
    await writes_go_through(migrated_db, ended)
