"""GC pays a space's owed deletes a batch at a time, reading each batch
from the index on (space, key), not sorting every debt of the space.

Debts pile up while a space does not answer deletes (a cloud down while
GC released its blocks); once it answers, GC deletes them 500 at a time.
Each batch was asked for in id order, which the index does not give: it
read and sorted every debt the space still had, about N²/1,000 rows for N
debts (found by the review of jobs with a large backlog, 2026-12-07).
SQLite's plan is what is checked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from jointcloud.meta import strays
from support.sqlplans import fresh_sqlite, plans, recorded

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_batch_of_debts_is_read_in_index_order(tmp_path: Path) -> None:
    async with fresh_sqlite(tmp_path) as db:
        async with db.write() as conn:
            await conn.execute(
                text("INSERT INTO users (id, name, created_at) VALUES (1, 'u', :at)"),
                {"at": SINCE},
            )
            await conn.execute(
                text(
                    "INSERT INTO user_spaces (id, user_id, name, storage, root_path, state,"
                    " created_at) VALUES (1, 1, 's', '{}', '', 'normal', :at)"
                ),
                {"at": SINCE},
            )
            owed = [(1, f"blocks/{i:05d}") for i in reversed(range(300))]
            await strays.owe(conn, owed, SINCE)
        with recorded(db) as statements:
            async with db.read() as conn:
                batch = await strays.owed(conn, 1, 5, SINCE + timedelta(days=1))
        assert [key for _, _, key in batch] == [f"blocks/{i:05d}" for i in range(5)]
        steps = await plans(db, statements)
        assert steps, statements
        assert not any("TEMP B-TREE" in step for step in steps), steps
        assert any("ix_stray_blocks_space_key" in step for step in steps), steps
