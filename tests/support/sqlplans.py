"""SQLite's plans of the statements a call runs: scale tests check that a
page, a batch or a key list is read from an index, not by reading (or
sorting) a whole table. SQLite's plan uses no statistics, so a small table
shows what a large one would get."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event

from jointcloud.meta.db import Database

Statement = tuple[str, Any]


@asynccontextmanager
async def fresh_sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated metadata database in a file of its own."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/meta.db")
    await db.migrate()
    try:
        yield db
    finally:
        await db.close()


@contextmanager
def recorded(db: Database) -> Iterator[list[Statement]]:
    """The statements (SQL, parameters) run on ``db`` meanwhile, in order."""
    statements: list[Statement] = []

    def note(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if not many:
            statements.append((sql, params))

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def plans(db: Database, statements: list[Statement]) -> list[str]:
    """Every step of SQLite's plans of the reads and deletes among
    ``statements``."""
    steps: list[str] = []
    async with db.read() as conn:
        for sql, params in statements:
            if sql.lstrip().upper().startswith(("SELECT", "DELETE")):
                found = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
                steps += [str(row[-1]) for row in found]
    return steps
