"""GC's query for garbage layouts reads only candidates, not the table.

It asks for live layouts released before the delay (an index on
``released_at``) or pending ones created before it (crashed uploads),
which no index served: every pass, once a minute by default, read the
whole ``layouts`` table, inline blocks included (found by the scale review
of 2026-12-07; migration 0020). SQLite's plan is what is checked: it makes
no use of statistics that the table's size could change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from jointcloud.meta import layouts
from jointcloud.meta import tables as t
from jointcloud.meta.db import Database
from support.sqlplans import fresh_sqlite, plans, recorded

OLD = datetime(2026, 1, 1, tzinfo=UTC)
DELAY_ENDS = OLD + timedelta(days=30)


async def _insert(db: Database, state: str, created: datetime, released: datetime | None) -> int:
    async with db.write() as conn:
        res = await conn.execute(
            t.layouts.insert().values(
                state=state,
                policy='{"type":"none"}',
                size=3000,
                segment_size=4 << 20,
                chunk_len=1 << 20,
                wrapped_key=f"{state}-{created}-{released}".encode(),
                created_at=created,
                released_at=released,
                inline_data=b"\0" * 3016,
            )
        )
        return int(res.inserted_primary_key[0])  # type: ignore[index]


async def test_garbage_is_found_by_index_not_by_reading_every_layout(tmp_path: Path) -> None:
    async with fresh_sqlite(tmp_path) as db:
        async with db.write() as conn:  # 2,000 live objects' layouts: not garbage
            await conn.execute(
                text(
                    "INSERT INTO layouts (state, policy, size, segment_size, chunk_len,"
                    " wrapped_key, created_at, inline_data)"
                    " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                    " WHERE i < 2000) SELECT 'live', '{}', 3000, 4194304, 1048576,"
                    " randomblob(60), :at, randomblob(3016) FROM n"
                ),
                {"at": OLD},
            )
        crashed = await _insert(db, "pending", OLD, None)
        await _insert(db, "pending", DELAY_ENDS + timedelta(days=1), None)  # still written
        released = await _insert(db, "live", OLD, OLD + timedelta(days=1))
        await _insert(db, "live", OLD, DELAY_ENDS + timedelta(days=1))  # inside the delay

        with recorded(db) as statements:
            async with db.read() as conn:
                found = await layouts.garbage(conn, DELAY_ENDS)
        assert sorted(found) == sorted([crashed, released])
        steps = await plans(db, statements)
        assert steps, statements
        assert not any(step.startswith("SCAN layouts") for step in steps), steps
        assert any("ix_layouts_pending_created_at" in step for step in steps), steps
        assert any("ix_layouts_released_at" in step for step in steps), steps
