"""PostgreSQL out of reach behind a silent link (meta/outage.py): reads,
writes and new connections fail with ``MetadataUnavailable`` within the
time limit instead of waiting for TCP; the same ``Database`` works again
once the link is back; closing it does not wait for the silent server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from jointcloud.errors import MetadataUnavailable
from jointcloud.meta import driver, outage
from jointcloud.meta.db import Database
from support.blackhole import Blackhole
from support.ports import free_port
from support.postgres import PostgresServer

LIMIT = 1.0  # seconds: JCS_DB_TIMEOUT_SECONDS for these tests
# What a failure may take beyond the limit: the dropped connection's
# goodbye (SQLAlchemy gives asyncpg's close two seconds before it
# terminates it), and a loaded machine.
SLACK = 6.0


@pytest.fixture
def link(postgres: PostgresServer) -> Iterator[Blackhole]:
    relay = Blackhole(postgres.port)
    relay.start()
    yield relay
    relay.stop()


def through(url: str, relay: Blackhole, server: PostgresServer) -> str:
    return url.replace(f":{server.port}/", f":{relay.port}/")


async def _select_one(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


async def _insert(db: Database, value: str) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO probe (v) VALUES (:v)"), {"v": value})


async def _fails_in_time(work: asyncio.Future[object] | object) -> MetadataUnavailable:
    began = time.monotonic()
    with pytest.raises(MetadataUnavailable) as caught:
        await work  # type: ignore[misc]
    assert time.monotonic() - began < LIMIT + SLACK
    return caught.value


async def test_a_silent_database_fails_requests_in_time_and_recovers(
    postgres: PostgresServer, link: Blackhole
) -> None:
    url = postgres.new_database()
    db = Database(through(url, link, postgres), timeout=LIMIT)
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE probe (v text)"))
        assert await _select_one(db) == 1  # a kept reader is now open
        await _insert(db, "before")

        link.cut()
        failed = await _fails_in_time(_select_one(db))
        assert f"did not answer within {LIMIT:g} s" in failed.message
        await _fails_in_time(_insert(db, "during"))

        link.mend()
        assert await _select_one(db) == 1
        await _insert(db, "after")
        async with db.read() as conn:
            rows = (await conn.execute(text("SELECT v FROM probe ORDER BY v"))).scalars().all()
        assert rows == ["after", "before"]  # the write that failed left nothing
    finally:
        link.mend()
        await db.close()


async def test_closing_does_not_wait_for_a_silent_database(
    postgres: PostgresServer, link: Blackhole
) -> None:
    db = Database(through(postgres.new_database(), link, postgres), timeout=LIMIT)
    # Several connections open and idle in the pool, as a busy server has.
    await asyncio.gather(*(_select_one(db) for _ in range(6)))
    link.cut()
    began = time.monotonic()
    await db.close()
    assert time.monotonic() - began < outage.CLOSE_SECONDS + SLACK


async def test_a_database_that_refuses_connections_is_unavailable(
    postgres: PostgresServer,
) -> None:
    closed = free_port()  # nothing listens here
    db = Database(
        postgres.new_database().replace(f":{postgres.port}/", f":{closed}/"), timeout=LIMIT
    )
    try:
        failed = await _fails_in_time(_select_one(db))
        assert "cannot reach the metadata database" in failed.message
        assert str(closed) not in failed.message  # no URL: it may hold a password
    finally:
        await db.close()


async def test_a_commit_without_an_answer_is_not_called_a_failure(
    postgres: PostgresServer,
) -> None:
    """A COMMIT that gets no answer in time may have been carried out: the
    error must not say (or let a client assume) that nothing was saved."""
    db = Database(postgres.new_database(), timeout=LIMIT)
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE probe (v text)"))
            await conn.execute(
                text(
                    "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN PERFORM pg_sleep({3 * LIMIT}); RETURN NULL; END $$"
                )
            )
            await conn.execute(
                text(  # runs at COMMIT: the statements before it answer at once
                    "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON probe "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow()"
                )
            )
        failed = await _fails_in_time(_insert(db, "slow"))
        assert failed.message == (
            f"the metadata database did not answer within {LIMIT:g} s, while committing: "
            "the change may or may not have been saved"
        )
        assert await _select_one(db) == 1  # and the next request works
    finally:
        await db.close()


async def test_a_silent_ping_fails_the_request_without_a_new_connection(
    postgres: PostgresServer, link: Blackhole, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection idle past the ping threshold is pinged at
    checkout. If the ping gets no answer, the server is silent, not gone:
    asking for a new connection would wait out the limit a second time."""
    db = Database(through(postgres.new_database(), link, postgres), timeout=LIMIT)
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE probe (v text)"))
        opened = link.accepted
        monkeypatch.setattr(driver, "IDLE_PING_SECONDS", 0.0)  # every checkout pings
        link.cut()
        failed = await _fails_in_time(_insert(db, "during"))
        assert f"did not answer within {LIMIT:g} s" in failed.message
        # One more: asyncpg's cancel request for the ping that timed out (it
        # goes on a connection of its own). None for another pool connection.
        assert link.accepted <= opened + 1
        link.mend()
        await _insert(db, "after")  # a fresh connection replaces the dropped one
    finally:
        link.mend()
        await db.close()
