"""Which errors say the metadata database is out of reach (meta/outage.py):
silence, refusals, a server shutting down, starting up or full, raw from
asyncpg or wrapped by SQLAlchemy; and which do not. Which SQLite errors say
its file cannot be used, made for real on files set up to fail."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

from jointcloud.errors import MetadataOutOfReach
from jointcloud.meta.outage import outage, sqlite_failure


def wrapped(error: Exception) -> sa_exc.DBAPIError:
    """``error`` as SQLAlchemy raises it from asyncpg."""
    dbapi = sa_asyncpg.AsyncAdapt_asyncpg_dbapi(asyncpg)
    try:
        sa_asyncpg.AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, error)
    except Exception as translated:
        return sa_exc.DBAPIError.instance("SELECT 1", {}, translated, dbapi.Error)
    raise AssertionError("not translated")


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (TimeoutError(), "did not answer within 30 s"),
        (ConnectionRefusedError(111, "Connect call failed"), "cannot reach"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), "out of service"),
        (
            asyncpg.CannotConnectNowError("the database system is shutting down"),
            "out of service (the database system is shutting down)",
        ),
        (
            asyncpg.CannotConnectNowError("the database system is starting up"),
            "out of service (the database system is starting up)",
        ),
        (asyncpg.AdminShutdownError("terminating connection"), "out of service"),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), "out of service"),
        (
            asyncpg.DiskFullError('could not extend file "base/5/16384": No space left on device'),
            "out of service (No space left on device)",
        ),
        (asyncpg.OutOfMemoryError("out of memory"), "out of service (out of memory)"),
    ],
)
def test_out_of_reach_raw_and_wrapped(error: Exception, says: str) -> None:
    found = outage(error, 30)
    assert found is not None and says in found.message
    if isinstance(error, asyncpg.PostgresError):
        found = outage(wrapped(error), 30)
        assert found is not None and says in found.message


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key value"),
        asyncpg.QueryCanceledError("canceling statement due to lock timeout"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        ValueError("not a database error"),
    ],
)
def test_other_errors_are_not_outages(error: Exception) -> None:
    assert outage(error, 30) is None
    if isinstance(error, asyncpg.PostgresError):
        assert outage(wrapped(error), 30) is None


def _error_of(statement: str, path: Path, *, read_only: bool = False) -> sqlite3.Error:
    conn = sqlite3.connect(f"file:{path}{'?mode=ro' if read_only else ''}", uri=True)
    try:
        conn.execute(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError(f"{statement!r} did not fail")


def test_sqlite_file_failures(tmp_path: Path) -> None:
    ro = tmp_path / "ro.db"
    sqlite3.connect(ro).execute("CREATE TABLE t (x)").connection.commit()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    readonly = _error_of("INSERT INTO t VALUES (1)", ro, read_only=True)
    damaged = _error_of("SELECT * FROM t", garbage)
    for error, says in ((readonly, "readonly"), (damaged, "not a database")):
        found = sqlite_failure(error)
        assert found is not None, error
        assert found.message.startswith("the metadata database cannot use its file (")
        assert says in found.message and str(tmp_path) not in found.message


async def test_sqlite_file_failure_wrapped_by_sqlalchemy(tmp_path: Path) -> None:
    ro = tmp_path / "ro.db"
    sqlite3.connect(ro).execute("CREATE TABLE t (x)").connection.commit()
    engine = create_async_engine(f"sqlite+aiosqlite:///file:{ro}?mode=ro&uri=true")
    try:
        async with engine.connect() as conn:
            with pytest.raises(sa_exc.OperationalError) as caught:
                await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        await engine.dispose()
    found = sqlite_failure(caught.value)
    assert found is not None and "readonly" in found.message


def test_other_sqlite_errors_are_not_file_failures(tmp_path: Path) -> None:
    db = tmp_path / "ok.db"
    assert sqlite_failure(_error_of("SELECT * FROM missing", db)) is None  # no such table
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        other = sqlite3.connect(db, timeout=0)
        with pytest.raises(sqlite3.OperationalError) as locked:
            other.execute("SELECT 1 FROM sqlite_master")
        other.close()
    finally:
        holder.close()
    assert "locked" in str(locked.value)
    assert sqlite_failure(locked.value) is None  # waited out elsewhere


@pytest.mark.parametrize(
    ("error", "out_of_reach"),
    [
        (TimeoutError(), True),  # silent: trying again at once would wait as long
        (ConnectionRefusedError(111, "Connect call failed"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.DiskFullError("could not extend file: No space left on device"), False),
        (asyncpg.CannotConnectNowError("the database system is shutting down"), False),
    ],
)
def test_which_outages_are_out_of_reach(error: Exception, out_of_reach: bool) -> None:
    """Out of reach: a failed upload's blocks are left to GC rather than
    discarded now (core/blockstore.py, ``settle``); a server that answers
    gets the discard tried."""
    found = outage(error, 30)
    assert found is not None
    assert isinstance(found, MetadataOutOfReach) is out_of_reach
