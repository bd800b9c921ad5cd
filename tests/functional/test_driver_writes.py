"""Statements written on the driver's own connection (``DriverQuery.write``:
sqlite3, or asyncpg once SQLAlchemy has begun the transaction) belong to
the write transaction like any other, and a constraint they break is the
same domain error (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from jointcloud.errors import DuplicateEntry
from jointcloud.meta import tables as t
from jointcloud.meta.db import Database
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import now

ADD_USER = DriverQuery(insert(t.users).returning(t.users.c.id, t.users.c.name))


@pytest.fixture
def db(migrated_db: Database) -> Database:
    return migrated_db


async def names(db: Database) -> set[str]:
    async with db.read() as conn:
        return {r.name for r in await conn.execute(select(t.users.c.name))}


async def test_written_rows_commit_and_roll_back_with_their_transaction(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(select(t.users.c.id))  # SQLAlchemy has begun the transaction
        rows = await ADD_USER.write(
            conn, [{"name": "ann", "created_at": now()}, {"name": "bea", "created_at": now()}]
        )
    assert [r[1] for r in rows] == ["ann", "bea"] and rows[0][0] < rows[1][0]
    assert {"ann", "bea"} <= await names(db)

    for first in (True, False):  # the driver's statement first in its transaction, or not
        with pytest.raises(RuntimeError):
            async with db.write() as conn:
                if not first:
                    await conn.execute(select(t.users.c.id))
                await ADD_USER.write(conn, [{"name": f"gone-{first}", "created_at": now()}])
                raise RuntimeError("the request fails after the insert")
        assert f"gone-{first}" not in await names(db)


async def test_a_broken_constraint_is_a_domain_error(db: Database) -> None:
    async with db.write() as conn:
        await ADD_USER.write(conn, [{"name": "cid", "created_at": now()}])
    with pytest.raises(DuplicateEntry):
        async with db.write() as conn:
            await conn.execute(select(t.users.c.id))
            await ADD_USER.write(conn, [{"name": "cid", "created_at": now()}])
    async with db.write() as conn:  # the database is usable after it
        await ADD_USER.write(conn, [{"name": "dan", "created_at": now()}])
    assert {"cid", "dan"} <= await names(db)
