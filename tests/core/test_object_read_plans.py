"""Opening an object reads its blocks in order from an index, unsorted.

Every read of an object (an S3 GET, a v1 download, a ranged read) is one
statement joining the object, its parts, their layouts and the layouts'
blocks, in part and block order. With an index on ``blocks.layout_id``
alone, SQLite sorted each result in a temporary b-tree, the one row of a
4 KiB object's read too (about 4 µs of its 45, measured in the server).
``ix_blocks_layout_idx`` (migration 0024) hands the blocks over in order.
SQLite's plans of the statements themselves are what is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite

from jointcloud.meta.catalog import reads
from jointcloud.meta.driver import DriverQuery
from support.sqlplans import fresh_sqlite

OPENINGS = {
    "by path": reads._OPEN_BY_PATH,
    "a span": reads._OPEN_SPAN,
    "a tail": reads._OPEN_TAIL,
    "by id": reads._OPEN_BY_ID,
}


@pytest.mark.parametrize("name", sorted(OPENINGS))
async def test_an_objects_blocks_come_from_the_index_in_order(tmp_path: Path, name: str) -> None:
    query: DriverQuery = OPENINGS[name]
    compiled = query.statement.compile(dialect=sqlite.dialect())  # type: ignore[attr-defined]
    args = [compiled.params.get(n) or 1 for n in compiled.positiontup]
    async with fresh_sqlite(tmp_path) as db, db.read() as conn:
        found = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, tuple(args))
        steps = [str(row[-1]) for row in found]
    assert not any("TEMP B-TREE" in step for step in steps), steps
    assert any(
        step.startswith("SEARCH blocks USING INDEX ix_blocks_layout_idx") for step in steps
    ), steps
