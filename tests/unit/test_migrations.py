"""The Alembic migrations build exactly the schema the code queries."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from jointcloud.meta.db import Database
from jointcloud.meta.tables import metadata


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_migrations_match_table_definitions(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await db.migrate()
        await db.migrate()  # idempotent: a second start changes nothing
        async with db.read() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await db.close()
