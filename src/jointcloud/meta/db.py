"""Engine set-up, migrations and transactions.

SQLite needs care for concurrency: WAL so readers never block the writer, a
busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so two writers
queue on the lock instead of failing when a read lock is upgraded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _upgrade(sync_conn: Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=20, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._writers: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if self.is_sqlite else contextlib.nullcontext()
        )
        if self.is_sqlite:
            self._tune_sqlite()

    def _tune_sqlite(self) -> None:
        sync = self.engine.sync_engine

        @event.listens_for(sync, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(sync, "begin")
        def _begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("jcs_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    async def migrate(self) -> None:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(jcs_write=True)
            async with conn.begin():
                await conn.run_sync(_upgrade)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed when the block exits cleanly.

        On SQLite, writers of this process queue on an asyncio lock: SQLite
        allows one writer anyway, and its busy handler sleeps in steps of up
        to 100 ms, which under contention costs far more than the queueing."""
        async with self._writers, self.engine.connect() as conn:
            conn = await conn.execution_options(jcs_write=True)
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only snapshot (one transaction, rolled back at the end)."""
        async with self.engine.connect() as conn, conn.begin() as tx:
            yield conn
            await tx.rollback()

    async def close(self) -> None:
        await self.engine.dispose()
