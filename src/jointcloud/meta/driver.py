"""Hot reads run on the database driver's own connection.

A listing of 1,000 keys spends more in SQLAlchemy's per-row machinery
(fetch strategy, row objects, result processors) than in the database: 2.0
ms against 0.9 ms for the same sqlite3 fetch, measured apart. A
``DriverQuery`` keeps the statement written once in SQLAlchemy, compiles it
once per dialect, and runs the compiled text on the connection the
transaction already holds (so it reads the same snapshot): the sqlite3
connection for SQLite, asyncpg's for a PostgreSQL read in autocommit
(``db.read``). Rows come back as the
driver gives them: a timestamp is a string on SQLite and a datetime on
PostgreSQL (``rows.stamp`` reads either).

Any other driver (an in-memory SQLite on aiosqlite's thread) goes through
SQLAlchemy as usual.

The hot written statements (a small upload's layout, object and part
rows) run the same way (``write``): compiled for the columns a call sets,
with SQLAlchemy's own bind processors applied to the values (timestamps,
booleans, JSON), on the sqlite3 connection of the write transaction, or on
asyncpg's once SQLAlchemy has begun the transaction there (its first
statement does; before that they go through SQLAlchemy). Their tables have
no Python-side column defaults, which this path would not apply. A
constraint the database enforces is raised as SQLAlchemy's
``IntegrityError``, as it would have been.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable
from sqlalchemy.util.concurrency import await_

from jointcloud.meta.sqlite import InlineConnection
from jointcloud.turns import PIECE, turn

# A written statement compiled for some columns: its text, and per positional
# parameter its name and SQLAlchemy's bind processor (None: passed as is).
_Compiled = tuple[str, tuple[tuple[str, Any], ...], dict[str, Any]]


# What asyncpg raises when its connection is gone or left in an unknown state.
_CONNECTION_BROKEN = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    OSError,
)


def established_driver(conn: AsyncConnection) -> Any:
    """The driver's connection under ``conn`` if it holds a valid DB-API
    connection already (reached without I/O: SQLAlchemy's own
    ``Connection.connection`` returns that attribute as is), else None."""
    sync = conn.sync_connection
    fairy = None if sync is None else sync._dbapi_connection
    return fairy.driver_connection if fairy is not None and fairy.is_valid else None


def server_gone(conn: AsyncConnection) -> bool:
    """Whether PostgreSQL closed ``conn``'s connection (a restart, a
    terminated backend): asyncpg knows once the loop has seen the socket
    close. SQLAlchemy does not, when the statement ran on asyncpg directly."""
    driver = established_driver(conn)
    return isinstance(driver, asyncpg.Connection) and driver.is_closed()


# A pooled PostgreSQL connection idle longer than this is pinged when taken.
IDLE_PING_SECONDS = 10.0


def note_checkin(dbapi_connection: Any, record: Any) -> None:
    """The pool's ``checkin`` hook: when the connection went idle."""
    record.info["idle_since"] = time.monotonic()


def check_on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """The pool's ``checkout`` check on PostgreSQL, instead of its pre-ping.

    SQLAlchemy's pre-ping on asyncpg is three round trips (BEGIN, an empty
    statement, ROLLBACK) before every checkout, read or write: three more
    on top of a small upload's six. Instead:

    - asyncpg knows without I/O whether the server closed the connection
      (a restart, a terminated backend) once the loop has seen the socket
      close: such a connection is dropped at once;
    - one that sat idle for ``IDLE_PING_SECONDS`` is pinged as before: the
      other end may have gone away meanwhile without a word (a failover, a
      NAT or load balancer that forgot the connection and answers the next
      packet with a reset). The ping is bounded by asyncpg's limit on
      every statement (``meta/outage.py``); one that gets no answer in time
      fails the checkout (a new connection to a silent server would wait as
      long again) instead of asking for another connection. The pool is
      last in, first out (``db.Database``), so at a steady load the
      connections in use are not the idle ones.

    Raising ``DisconnectionError`` makes the pool drop the connection and
    hand out a fresh one. What is given up: a busy connection whose server
    vanished in the last seconds without closing it fails its next
    statement (as one could between a ping and the statement after it)."""
    driver = record.driver_connection
    if not isinstance(driver, asyncpg.Connection):
        return
    if driver.is_closed():
        raise DisconnectionError("the database server closed this connection")
    idle_since = record.info.get("idle_since")
    if idle_since is not None and time.monotonic() - idle_since > IDLE_PING_SECONDS:
        try:
            # One round trip, in the pool's greenlet (SQLAlchemy's own ping
            # is three, BEGIN, the ping and ROLLBACK, and on a silent server
            # each waits out the statement limit).
            await_(driver.fetchval("SELECT 1"))
        except TimeoutError:
            # Silent, not gone: a new connection would wait as long again.
            # The pool drops this one; the request fails now (meta/outage.py).
            raise
        except Exception as exc:
            raise DisconnectionError(f"the database server did not answer: {exc}") from exc


async def _driver_of(conn: AsyncConnection) -> Any:
    """The driver's connection under ``conn``. ``get_raw_connection`` goes
    through a greenlet in case it must connect again, which a small GET
    measured at a tenth of its database time: only when needed."""
    driver = established_driver(conn)
    if driver is not None:
        return driver
    return (await conn.get_raw_connection()).driver_connection


class DriverQuery:
    """One prebuilt statement with named bound parameters."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {}
        self._written: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def _args(self, conn: AsyncConnection, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The compiled text and its positional arguments (qmark for sqlite3,
        numeric for asyncpg): ``params`` over the statement's own constants."""
        dialect = conn.dialect
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            found = (compiled.string, tuple(compiled.positiontup or ()), compiled.params)
            self._compiled[dialect.name] = found
        sql, names, constants = found
        return sql, [params[n] if n in params else constants[n] for n in names]

    async def rows(
        self, conn: AsyncConnection, params: Mapping[str, Any], piece: int | None = None
    ) -> Sequence[Any]:
        """The statement's rows as tuples (or tuple-like records). With
        ``piece``, SQLite's rows are read that many at a time with a turn of
        the event loop between (``turns``): SQLite reads on the loop's
        thread, and a long result read at once holds every other request."""
        driver = await _driver_of(conn)
        if isinstance(driver, InlineConnection):
            sql, args = self._args(conn, params)
            cursor = driver.sqlite.execute(sql, args)
            if piece is None:
                return cursor.fetchall()
            out: list[Any] = []
            try:
                while True:
                    got = cursor.fetchmany(piece)
                    out += got
                    if len(got) < piece:
                        return out
                    await turn()
            finally:
                # Cancelled between pieces: the statement must not go on
                # running on the reader, holding its snapshot past the
                # ROLLBACK (until the cursor is freed, whenever that is).
                cursor.close()
        if (
            driver is not None
            and conn.dialect.driver == "asyncpg"
            # Only a read in autocommit (db.read): in a transaction,
            # SQLAlchemy may not have sent its BEGIN to asyncpg yet.
            and conn.sync_connection is not None
            and conn.sync_connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        ):
            sql, args = self._args(conn, params)
            try:
                rows: Sequence[Any] = await driver.fetch(sql, *args)
            except _CONNECTION_BROKEN:
                # SQLAlchemy never saw this statement, so it would keep the
                # connection as good: one read fails, not every later one.
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                raise
            return rows
        return (await conn.execute(self.statement, params)).all()

    def _for_columns(self, conn: AsyncConnection, keys: tuple[str, ...]) -> _Compiled:
        """The statement compiled for the columns ``keys`` set, its parameters
        in order with their bind processors, and its constants."""
        found = self._written.get((conn.dialect.name, keys))
        if found is None:
            compiled = self.statement.compile(  # type: ignore[attr-defined]
                dialect=conn.dialect, column_keys=list(keys)
            )
            processors = compiled._bind_processors
            found = (
                compiled.string,
                tuple((n, processors.get(n)) for n in compiled.positiontup or ()),
                compiled.params,
            )
            self._written[(conn.dialect.name, keys)] = found
        return found

    async def write(
        self, conn: AsyncConnection, params: Sequence[Mapping[str, Any]]
    ) -> list[Sequence[Any]]:
        """Run a written statement once per mapping (every mapping sets the
        same columns) in the caller's transaction; the rows it returns
        (``RETURNING``), in order, as tuples."""
        if not params:
            return []
        driver = await _driver_of(conn)
        inline = isinstance(driver, InlineConnection)
        on_asyncpg = (
            isinstance(driver, asyncpg.Connection)
            # SQLAlchemy sends BEGIN with the transaction's first statement:
            # before it, asyncpg would run this outside the transaction.
            and driver.is_in_transaction()
        )
        if not inline and not on_asyncpg:
            result = await conn.execute(self.statement, list(params))
            return [tuple(r) for r in result.all()] if result.returns_rows else []
        sql, binds, constants = self._for_columns(conn, tuple(params[0]))
        batch = []
        for one in params:
            args = []
            for n, process in binds:
                value = one[n] if n in one else constants[n]
                args.append(value if process is None or value is None else process(value))
            batch.append(args)
        try:
            if inline:
                assert isinstance(driver, InlineConnection)
                out: list[Sequence[Any]] = []
                for i, args in enumerate(batch):
                    if i and i % PIECE == 0:
                        # A thousand-file upload's rows: other requests get
                        # turns of the loop meanwhile (``turns``). Other
                        # writers wait for the write lock this one holds.
                        await turn()
                    out += driver.sqlite.execute(sql, args).fetchall()
                return out
            assert driver is not None
            return await _pipelined(conn, driver, sql, batch)
        except (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError) as exc:
            # As SQLAlchemy would raise it: ``db.write`` makes it a domain error.
            raise IntegrityError(sql, batch, exc, ismulti=True) from exc


async def _pipelined(
    conn: AsyncConnection, driver: asyncpg.Connection, sql: str, batch: list[list[Any]]
) -> list[Sequence[Any]]:
    """Every row of ``batch`` in one round trip (asyncpg pipelines the
    executions; a statement not yet in its cache is prepared first): a
    combined commit of sixteen small uploads sent three statements of
    sixteen round trips each, one at a time.

    Shielded: asyncpg (0.30-0.32) sends a batch over 128 KiB in pieces, and
    a cancel that lands between two is swallowed there while it waits for
    an answer that never comes (the batch's end was never sent): the
    transaction and its locks would stay open for good. So a cancel lets
    the batch end first (one round trip), then is raised. If it has not
    ended within ``CANCEL_GRACE_SECONDS`` (the batch itself was cancelled
    too, as every task is when the server stops, or a second cancel came),
    the connection is dropped: the server then rolls the transaction back.
    SQLAlchemy is told (invalidated), or the rollback it then sends over the
    closed connection would fail and replace the cancel with that error."""
    task = asyncio.ensure_future(driver.fetchmany(sql, batch))
    try:
        rows: list[Sequence[Any]] = await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait([task], timeout=CANCEL_GRACE_SECONDS)
        finally:
            if not task.done():
                driver.terminate()
                # No I/O left to wait for: asyncpg's close of a terminated
                # connection returns at once. A further cancel meanwhile is
                # the one already being raised.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await conn.invalidate()
            task.add_done_callback(_retrieved)  # the caller gets the cancel
        raise
    return rows


CANCEL_GRACE_SECONDS = 5.0


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
