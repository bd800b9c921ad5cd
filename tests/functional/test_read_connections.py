"""Read connections kept out of the pool between reads (``Database.read``)
must never serve an old snapshot, and must stay few (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from jointcloud.meta import readers as kept_readers
from jointcloud.meta import tables as t
from jointcloud.meta.db import Database
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import now


@pytest.fixture
def db(migrated_db: Database) -> Database:
    return migrated_db


async def add_user(db: Database, name: str) -> None:
    async with db.write() as conn:
        await conn.execute(insert(t.users).values(name=name, created_at=now()))


async def names(db: Database) -> set[str]:
    async with db.read() as conn:
        return {r.name for r in await conn.execute(select(t.users.c.name))}


async def test_reads_see_the_writes_committed_before_them(db: Database) -> None:
    assert "ann" not in await names(db)
    for name in ("ann", "bea", "cid"):
        await add_user(db, name)
        assert name in await names(db)  # on the connection the last read kept
    with pytest.raises(RuntimeError):
        async with db.read() as conn:
            await conn.execute(select(t.users.c.name))
            raise RuntimeError("a read that fails half way")
    await add_user(db, "dan")
    assert {"ann", "bea", "cid", "dan"} <= await names(db)


async def test_a_read_in_progress_keeps_its_snapshot_on_sqlite(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    """(PostgreSQL reads in autocommit: each statement has its own snapshot.)"""
    path = tmp_path / "own.db"
    shutil.copyfile(migrated_sqlite, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    await names(db)  # a reader is kept
    async with db.read() as conn:
        before = {r.name for r in await conn.execute(select(t.users.c.name))}
        await add_user(db, "eve")
        during = {r.name for r in await conn.execute(select(t.users.c.name))}
        assert during == before
    assert "eve" in await names(db)
    await db.close()


async def test_few_readers_stay_out_and_idle_ones_go_back(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await names(db)
    pool = db.engine.pool
    base = pool.checkedout()  # type: ignore[attr-defined]
    gate, all_in = asyncio.Event(), asyncio.Event()
    count = 3 * kept_readers.IDLE_READERS
    inside = 0

    async def held() -> None:
        nonlocal inside
        async with db.read() as conn:
            await conn.execute(select(t.users.c.name))
            inside += 1
            if inside == count:
                all_in.set()
            await gate.wait()

    readers = [asyncio.ensure_future(held()) for _ in range(count)]
    await all_in.wait()
    assert pool.checkedout() >= len(readers)  # type: ignore[attr-defined]
    gate.set()
    await asyncio.gather(*readers)
    kept = pool.checkedout()  # type: ignore[attr-defined]
    assert kept <= max(base, kept_readers.IDLE_READERS)

    monkeypatch.setattr(kept_readers, "READER_IDLE_SECONDS", 0.0)
    await names(db)
    assert pool.checkedout() == 1  # type: ignore[attr-defined]  # the last read's only


_NAMES = DriverQuery(select(t.users.c.name))


async def statement_names(db: Database) -> set[str]:
    async with db.read_statement() as conn:
        return {r[0] for r in await _NAMES.rows(conn, {})}


async def test_a_statement_read_sees_the_writes_committed_before_it(db: Database) -> None:
    assert "fay" not in await statement_names(db)
    for name in ("fay", "gus"):
        await add_user(db, name)
        assert name in await statement_names(db)
        assert name in await names(db)  # the snapshot reads share the kept connections


async def test_a_statement_read_leaves_no_transaction_behind(db: Database) -> None:
    """A caller that runs a SQLAlchemy statement inside ``read_statement``
    opens a transaction (autobegin); it must not stay open on the kept
    connection, or a later read would see that old snapshot (SQLite)."""
    async with db.read_statement() as conn:
        await conn.execute(select(t.users.c.name))
        assert conn.in_transaction()
    await add_user(db, "hal")
    assert "hal" in await statement_names(db)
    with pytest.raises(RuntimeError):
        async with db.read_statement() as conn:
            await conn.execute(select(t.users.c.name))
            raise RuntimeError("a read that fails half way")
    await add_user(db, "ida")
    assert {"hal", "ida"} <= await statement_names(db)
    assert {"hal", "ida"} <= await names(db)


HOT_READ = DriverQuery(select(t.users.c.name))


async def test_a_reader_whose_server_went_away_is_not_kept(db: Database, database_url: str) -> None:
    """A PostgreSQL restart, or a terminated backend, under steady reads: hot
    reads run on asyncpg directly, so SQLAlchemy never learns the
    connection died; a kept reader must not fail every read after it. The
    first read may still meet it (the server's goodbye can be in flight
    when the reader is taken): then that read fails, and no other."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite file has no server to lose")
    await add_user(db, "fay")
    async with db.read_statement() as conn:
        assert "fay" in {r[0] for r in await HOT_READ.rows(conn, {})}
        backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
    async with db.write() as other:
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        # Until the backend has exited (its socket is closed by then, and the
        # loop has run while these queries waited for their answers).
        gone = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        # Inside a transaction PostgreSQL answers from one snapshot of the
        # backends' states, taken at the first look: cleared before each.
        fresh = text("SELECT pg_stat_clear_snapshot()")

        async def still_there() -> bool:
            await other.execute(fresh)
            return bool((await other.execute(gone, {"pid": backend})).scalar())

        async with asyncio.timeout(30):  # a backend that never exits fails the test
            while await still_there():
                pass
    outcomes = []
    for _ in range(4):
        try:
            async with db.read_statement() as conn:
                outcomes.append("fay" in {r[0] for r in await HOT_READ.rows(conn, {})})
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[0] in (True, "InternalClientError", "InterfaceError")
    assert outcomes[1:] == [True] * 3
