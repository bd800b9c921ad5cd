"""When PostgreSQL cannot be reached, or stops answering.

Why: a database server on another machine can vanish without closing its
connections (a network partition, a host that died, a firewall that drops
packets). asyncpg then waits for an answer for as long as TCP keeps trying,
about a quarter of an hour. Every request that needed the database waited
with it (a client saw no answer at all), and a stop of the server waited
too: closing each pooled connection sends a ROLLBACK and waits for its
answer, one connection after another.

What now holds:

- every statement and every connection attempt is limited to
  ``JCS_DB_TIMEOUT_SECONDS`` (asyncpg's ``command_timeout`` and connect
  ``timeout``), except a migration's statements (``migration_engine``);
- a connection whose statement timed out, or whose server went away, is
  dropped at once (invalidated: asyncpg closes its socket without a word),
  not rolled back over the dead link;
- the request then fails with ``MetadataUnavailable``, which every
  protocol answers with 503 and a message naming the problem (no URL: it
  may hold the database password);
- a stop closes connections politely for at most ``CLOSE_SECONDS``, then
  drops the rest.

SQLite is a file in this process: none of the above applies to it. Its
file can fail, though (a full disk, an I/O error, a file made read-only or
damaged): ``sqlite_failure`` names that as ``MetadataUnavailable`` too, so
that every protocol answers 503 saying so, not 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from jointcloud.errors import MetadataOutOfReach, MetadataUnavailable

log = structlog.get_logger(__name__)

CLOSE_SECONDS = 5.0

# A connection that cannot be (or no longer is) talked to.
_UNREACHABLE = (
    ConnectionError,  # refused, reset, aborted
    socket.gaierror,  # the host name does not resolve
    asyncpg.PostgresConnectionError,  # the server closed it, or refused it
)


def connect_args(timeout: float) -> dict[str, Any]:
    """asyncpg's limits for every statement and connection attempt."""
    return {"command_timeout": timeout, "timeout": timeout}


# SQLSTATEs of a server that is there but out of service: shutting down by
# an operator or after a crash, starting up or in recovery, its connections
# full, its disk full, out of memory. Class 08 (connection exceptions) is
# out of service too.
_OUT_OF_SERVICE = frozenset({"57P01", "57P02", "57P03", "53300", "53100", "53200"})


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error, raw (asyncpg) or wrapped (SQLAlchemy)."""
    for found in (exc, getattr(exc, "orig", None), exc.__cause__):
        code = getattr(found, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def migration_engine(url: str, timeout: float) -> AsyncEngine:
    """An engine for migrations: the connect limit, but no statement limit
    (a migration may rewrite a large table); one connection, not pooled."""
    return create_async_engine(url, connect_args={"timeout": timeout}, poolclass=NullPool)


def outage(exc: BaseException, timeout: float) -> MetadataUnavailable | None:
    """``exc`` as the database's unavailability, or None if it is not one:
    ``MetadataOutOfReach`` where the server could not be talked to (trying
    again at once would wait as long), plain ``MetadataUnavailable`` where
    it answered that it cannot serve (shutting down, its disk full)."""
    code = _sqlstate(exc)
    if code is not None and (code.startswith("08") or code in _OUT_OF_SERVICE):
        # The server's own words ("the database system is shutting down"):
        # they never hold the connection's URL.
        said = str(getattr(exc, "orig", None) or exc).rsplit(": ", 1)[-1].strip()
        kind = MetadataOutOfReach if code.startswith("08") else MetadataUnavailable
        return kind(f"the metadata database is out of service ({said})")
    if isinstance(exc, TimeoutError):  # asyncpg's statement or connect limit
        return MetadataOutOfReach(f"the metadata database did not answer within {timeout:g} s")
    if isinstance(exc, sa_exc.TimeoutError):  # the pool: every connection stayed in use
        return MetadataOutOfReach(
            "no connection to the metadata database came free in time; try again later"
        )
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return MetadataOutOfReach("the connection to the metadata database was lost")
    if isinstance(exc, _UNREACHABLE):
        return MetadataOutOfReach(f"cannot reach the metadata database ({type(exc).__name__})")
    return None


# SQLite's primary result codes for a database file it cannot use: read
# only (8), an I/O error (10), damaged (11), the disk full (13), cannot be
# opened (14), not a database (26). Busy and locked are waited out elsewhere.
_SQLITE_FILE_FAILURES = frozenset({8, 10, 11, 13, 14, 26})


def sqlite_failure(exc: BaseException) -> MetadataUnavailable | None:
    """``exc`` as SQLite's file failing, or None if it is not that. The
    message is SQLite's own ("disk I/O error", "database or disk is full"),
    which never holds the file's path."""
    for found in (exc, getattr(exc, "orig", None), exc.__cause__):
        code = getattr(found, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_FILE_FAILURES:
            return MetadataUnavailable(f"the metadata database cannot use its file ({found})")
    return None


async def raise_if_outage(
    conn: AsyncConnection | None, exc: BaseException, limit: float, committing: bool = False
) -> None:
    """Return if ``exc`` is not the database's unavailability; else drop
    ``conn`` (a ROLLBACK over it would wait as long again) and raise it as
    ``MetadataUnavailable``. ``committing``: it came while the COMMIT was
    sent, which may have been carried out: the message says so."""
    found = outage(exc, limit)
    if found is None:
        return
    if committing:
        found = type(found)(
            f"{found.message}, while committing: the change may or may not have been saved"
        )
    if conn is not None and not conn.invalidated:
        with contextlib.suppress(Exception):
            await conn.invalidate()
    raise found from exc


class Connections:
    """Every asyncpg connection the engine opened (weakly), so that a stop
    can drop those that do not close in time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._raw: weakref.WeakSet[Any] = weakref.WeakSet()
        event.listen(engine.sync_engine, "connect", self._opened)

    def _opened(self, dbapi_connection: Any, _record: Any) -> None:
        self._raw.add(dbapi_connection.driver_connection)

    async def close(self, engine: AsyncEngine, polite: Callable[[], Awaitable[None]]) -> None:
        """Run ``polite()`` (closing every connection) for at most
        ``CLOSE_SECONDS``; then drop whatever is still open."""
        try:
            await asyncio.wait_for(polite(), CLOSE_SECONDS)
            return
        except TimeoutError:
            log.warning(
                "database: the server did not answer while closing; connections dropped",
                waited_seconds=CLOSE_SECONDS,
            )
        for raw in list(self._raw):
            if not raw.is_closed():
                raw.terminate()
        await engine.dispose(close=False)
