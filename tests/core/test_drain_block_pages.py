"""A drain's page of a space's blocks is read from an index in layout order.

``layouts.blocks_in_spaces`` gives a drain (and the repair job's scan of
Unavailable spaces) the next blocks of some spaces past a layout cursor.
It asked for ``user_space_id IN (...)`` ordered by layout, and the only
index was on the space: every page read and sorted every block the spaces
still held, so a drain of N blocks, 256 a pass, read about N²/512 rows
(a review of 2026-12-07: 40,000 blocks, 17 ms a page of 256, 156 pages).
Now one query per space, served in order by ``ix_blocks_space_layout``
(migration 0023) and stopped at the page's size. SQLite's plans of the
statements run are what is checked, and the page itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from jointcloud.meta import layouts
from support.sqlplans import fresh_sqlite, plans, recorded

AT = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_page_of_blocks_is_read_in_layout_order_from_the_index(tmp_path: Path) -> None:
    async with fresh_sqlite(tmp_path) as db:
        async with db.write() as conn:
            await conn.execute(
                text("INSERT INTO users (id, name, created_at) VALUES (1, 'ann', :at)"), {"at": AT}
            )
            for sid in (1, 2, 3):
                await conn.execute(
                    text(
                        "INSERT INTO user_spaces (id, user_id, name, storage, root_path, state,"
                        " created_at) VALUES (:id, 1, :name, '{}', 'jcs', 'Normal', :at)"
                    ),
                    {"id": sid, "name": f"s{sid}", "at": AT},
                )
            # 300 layouts of three blocks: index 0 in space 1, 1 in 2, 2 in 3.
            await conn.execute(
                text(
                    "INSERT INTO layouts (id, state, policy, size, segment_size, chunk_len,"
                    " wrapped_key, created_at) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
                    " SELECT i + 1 FROM n WHERE i < 300) SELECT i, 'live', '{}', 5000,"
                    " 4194304, 1048576, randomblob(60), :at FROM n"
                ),
                {"at": AT},
            )
            await conn.execute(
                text(
                    "INSERT INTO blocks (layout_id, idx, user_space_id, key)"
                    " SELECT id, s - 1, s, 'blocks/' || id || '-' || s FROM layouts,"
                    " (SELECT 1 AS s UNION ALL SELECT 2 UNION ALL SELECT 3)"
                )
            )

        with recorded(db) as statements:
            async with db.read() as conn:
                page = await layouts.blocks_in_spaces(conn, [2, 1], 7, after_layout=100)
        assert [(lid, b.index, b.user_space_id) for lid, b in page] == [
            (101, 0, 1),
            (101, 1, 2),
            (102, 0, 1),
            (102, 1, 2),
            (103, 0, 1),
            (103, 1, 2),
            (104, 0, 1),
        ]

        steps = await plans(db, statements)
        assert steps, statements
        # No sort of every block past the cursor: each space's rows come in
        # order from the index, and the read stops at the page's size.
        assert not any("TEMP B-TREE" in step for step in steps), steps
        assert any("ix_blocks_space_layout" in step and "layout_id>?" in step for step in steps), (
            steps
        )
