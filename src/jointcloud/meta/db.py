"""Engine set-up, migrations and transactions.

SQLite needs care for concurrency: WAL so readers never block the writer, a
busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so two writers
queue on the lock instead of failing when a read lock is upgraded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from jointcloud.errors import Conflict, DomainError, DuplicateEntry

MIGRATIONS = Path(__file__).parent / "migrations"


def _domain_conflict(exc: IntegrityError) -> DomainError:
    """A constraint the database enforced, as a domain error (core never sees
    SQLAlchemy): a unique key taken by a concurrent writer, or a row another
    writer removed under a reference."""
    orig = exc.orig
    unique = getattr(orig, "sqlstate", None) == "23505" or "UNIQUE" in str(orig).upper()
    if unique:
        return DuplicateEntry("that name is already taken (a concurrent request created it)")
    return Conflict("a concurrent change removed something this request refers to; try again")


def _upgrade(sync_conn: Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


def _foreign_keys(sync_conn: Connection, on: bool) -> None:
    """Switch SQLite's foreign keys on this connection (outside any
    transaction: inside one the pragma does nothing)."""
    cur = sync_conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cur.close()


def _private_sqlite_file(url: str) -> None:
    """The database file is the server's alone (mode 0600): created here
    before SQLite would create it 0644 less the umask, or tightened if an
    older start left it looser. SQLite gives the -wal and -shm files it
    creates the main file's mode; leftovers of an older start are tightened."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(database, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (FileNotFoundError, NotADirectoryError):
        return  # no such directory: SQLite reports it on connect
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(database + suffix, 0o600)


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
            _private_sqlite_file(url)
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

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` (tests stop at older ones).

        On SQLite the migrations run with foreign keys off: rebuilding a table
        (batch mode) drops the old one, and with foreign keys on that DROP
        deletes every row referencing it through ON DELETE CASCADE."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(jcs_write=True)
            if self.is_sqlite:
                await conn.run_sync(_foreign_keys, False)
            try:
                async with conn.begin():
                    await conn.run_sync(_upgrade, revision)
            finally:
                if self.is_sqlite:
                    try:
                        await conn.run_sync(_foreign_keys, True)
                    except Exception:
                        # Never back into the pool with foreign keys off.
                        await conn.invalidate()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed when the block exits cleanly.

        On SQLite, writers of this process queue on an asyncio lock: SQLite
        allows one writer anyway, and its busy handler sleeps in steps of up
        to 100 ms, which under contention costs far more than the queueing."""
        async with self._writers, self.engine.connect() as conn:
            conn = await conn.execution_options(jcs_write=True)
            try:
                async with conn.begin():
                    yield conn
            except IntegrityError as exc:
                raise _domain_conflict(exc) from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only snapshot (one transaction, rolled back at the end)."""
        async with self.engine.connect() as conn, conn.begin() as tx:
            yield conn
            await tx.rollback()

    async def close(self) -> None:
        await self.engine.dispose()
