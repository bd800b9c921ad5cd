"""Engine set-up, migrations and transactions.

SQLite needs care for concurrency: WAL so readers never block the writer, a
busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so two writers
queue on the lock instead of failing when a read lock is upgraded.

Durability (docs/durability.md): a write is acknowledged only once its commit
is on disk. PostgreSQL does that with its defaults. On SQLite, writers of this
process share one connection and form *groups*: each writer runs in its own
SAVEPOINT of the group's transaction (a failing writer rolls back only its
own work), and one COMMIT plus one ``fdatasync`` of the write-ahead log make
the whole group durable before any of its writers returns. SQLite itself
runs with ``synchronous=NORMAL`` (checkpoints sync; commits do not) and the
sync after each group commit is ours, done explicitly: that is what makes it
cheap under concurrency (one sync for many writers, as PostgreSQL's own
group commit) and observable (``Database.sync_wal`` is the one place, which
a test can count and fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, event, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from jointcloud.config import sqlite_file
from jointcloud.errors import (
    Conflict,
    DomainError,
    DuplicateEntry,
    MetadataUnavailable,
)
from jointcloud.meta.driver import check_on_checkout, note_checkin
from jointcloud.meta.group import WriterGroup
from jointcloud.meta.migrate import foreign_keys, upgrade
from jointcloud.meta.outage import (
    Connections,
    connect_args,
    migration_engine,
    raise_if_outage,
    sqlite_failure,
)
from jointcloud.meta.readers import KeptReaders
from jointcloud.meta.sqlite import BUSY_MS, InlineConnection, checkpoint, inline_creator
from jointcloud.meta.writerlock import WriterLock, locked_too_long

log = structlog.get_logger(__name__)
T = TypeVar("T")


def _domain_conflict(exc: IntegrityError) -> DomainError:
    """A constraint the database enforced, as a domain error (core never sees
    SQLAlchemy): a unique key taken by a concurrent writer, or a row another
    writer removed under a reference."""
    orig = exc.orig
    unique = getattr(orig, "sqlstate", None) == "23505" or "UNIQUE" in str(orig).upper()
    if unique:
        return DuplicateEntry("that name is already taken (a concurrent request created it)")
    return Conflict("a concurrent change removed something this request refers to; try again")


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


def _file_failure(exc: BaseException) -> MetadataUnavailable | None:
    """SQLite's file failing (meta/outage.py), logged: the client only
    gets a 503, and the operator must learn that the disk is full."""
    failed = sqlite_failure(exc)
    if failed is not None:
        log.warning("database: SQLite cannot use its file", error=failed.message)
    return failed


# Writers committed together at most (bounds a group's latency).
GROUP_MAX = 64


class NotDurable(MetadataUnavailable):
    """The commit went to SQLite but could not be synced to disk: the write
    is not acknowledged (after a crash it may or may not be there)."""


# The write-ahead log is copied into the database (in a thread) once it
# holds this much; SQLite's own automatic checkpoint would do it on the
# loop's thread (sqlite.py). Large, because the same hot pages (the tables'
# last leaves, the indexes' upper levels) are in nearly every commit: a
# larger log copies each of them once for many commits (4 MiB: 685 4 KiB
# PUT/s, 64 MiB: 757, none: 793 in one run). Recovery after a crash reads
# at most this much log.
CHECKPOINT_BYTES = 64 << 20
# How long a write waits in all for another process's write lock.
LOCKED_FOR = 60.0


def _sync_log(path: str, failed: list[OSError], release_writer: Callable[[], None]) -> None:
    """The group commit's sync of the log, run right after its COMMIT (in
    the same worker thread); a failure is kept in ``failed``: the commit
    itself went through, and the group is told it is not durable. The
    writer lock goes first: another process may write while this one
    syncs (its own sync covers what this one wrote before it)."""
    release_writer()
    try:
        fdatasync_path(path)
    except OSError as exc:
        failed.append(exc)


def _nothing() -> None:
    pass


def fdatasync_path(path: str) -> None:
    """Sync one file's data by name (its current inode: SQLite may have
    replaced the write-ahead log since the last sync). A log that is gone
    was checkpointed into the database, which SQLite synced itself."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class Database:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.timeout = timeout  # PostgreSQL's answers (meta/outage.py)
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs["connect_args"] = connect_args(timeout)
            # Last in, first out: at a low steady load after a burst, the
            # connection just given back is taken again, and the others
            # stay idle (FIFO would hand out one idle past
            # driver.IDLE_PING_SECONDS each time, and ping it first).
            kwargs.update(pool_size=20, max_overflow=20, pool_use_lifo=True)
        self._file = sqlite_file(url) if self.is_sqlite else None
        if self._file is not None:
            kwargs["async_creator"] = inline_creator(self._file)  # no thread hops
            # Readers each hold a connection for a moment; keep enough open
            # that concurrent requests do not open and close them (each open
            # sets the pragmas again).
            kwargs.update(pool_size=32, max_overflow=32)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._connections: Connections | None = None
        if not self.is_sqlite:
            event.listen(self.engine.sync_engine, "checkout", check_on_checkout)
            event.listen(self.engine.sync_engine, "checkin", note_checkin)
            self._connections = Connections(self.engine)
        self._read_engine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        # SQLite group commit (see the module docstring).
        self._lock = asyncio.Lock()
        self._queued = 0  # writers waiting for the lock
        self._group: WriterGroup | None = None
        self._flushing = False
        self._flusher: asyncio.Future[None] | None = None
        self._wal = None if self._file is None else self._file + "-wal"
        self._checkpointing: asyncio.Future[None] | None = None
        self._readers = KeptReaders(self._read_engine)
        self.syncs = 0  # group syncs made (for the durability test and metrics)
        # Among processes writing this file (``jcs serve --workers``).
        self._writer = (
            None
            if self._file is None
            else WriterLock(self._file + ".writer", self._file, LOCKED_FOR)
        )
        if self.is_sqlite:
            _private_sqlite_file(url)
            self._tune_sqlite()

    def _tune_sqlite(self) -> None:
        sync = self.engine.sync_engine
        inline = self._file is not None

        @event.listens_for(sync, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # Commits are synced by ``sync_wal`` after each group; SQLite
            # syncs around checkpoints itself.
            cur.execute("PRAGMA synchronous=NORMAL")
            # On the loop's thread (sqlite.py) the busy handler may wait only
            # briefly; writes are retried without holding the loop instead.
            cur.execute(f"PRAGMA busy_timeout={BUSY_MS if inline else 60000}")
            cur.execute("PRAGMA foreign_keys=ON")
            # SQLite reuses the log's file after a checkpoint rather than
            # shrinking it, so its size would go on saying "checkpoint due"
            # after every commit (``_maybe_checkpoint``). Cut back to below
            # the mark when the log restarts, the size says what it holds.
            cur.execute(f"PRAGMA journal_size_limit={CHECKPOINT_BYTES // 2}")
            cur.close()

        @event.listens_for(sync, "begin")
        def _begin(conn: Connection) -> None:
            driver = conn.connection.driver_connection
            write = conn.get_execution_options().get("jcs_write", False)
            if not isinstance(driver, InlineConnection):
                # may meet the lock: see _while_locked
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
            elif write:
                _begin_inline(driver.sqlite, "BEGIN IMMEDIATE")
            else:
                # A read's BEGIN takes no lock and cannot fail for one.
                driver.sqlite.execute("BEGIN")

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` (tests stop at older ones).

        On SQLite the migrations run with foreign keys off: rebuilding a table
        (batch mode) drops the old one, and with foreign keys on that DROP
        deletes every row referencing it through ON DELETE CASCADE.

        Another process holding SQLite's write lock (a server while a
        ``jcs admin`` command starts): wait and try again, as writes do."""
        with contextlib.ExitStack() as held:
            if self._writer is not None:
                held.enter_context(self._writer.holding(await self._writer.acquire()))
            await _while_locked(lambda: self._migrate(revision))

    async def _migrate(self, revision: str) -> None:
        # PostgreSQL: on an engine of its own without the statement limit
        # (meta/outage.py), since a migration may rewrite a large table.
        engine = self.engine if self.is_sqlite else migration_engine(self.url, self.timeout)
        try:
            conn = await self._connected(engine.connect)
            try:
                conn = await conn.execution_options(jcs_write=True)
                if self.is_sqlite:
                    await conn.run_sync(foreign_keys, False)
                try:
                    async with conn.begin():
                        await conn.run_sync(upgrade, revision)
                finally:
                    if self.is_sqlite:
                        try:
                            await conn.run_sync(foreign_keys, True)
                        except Exception:
                            # Never back into the pool with foreign keys off.
                            await conn.invalidate()
            finally:
                await conn.close()
        finally:
            if engine is not self.engine:
                await engine.dispose()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed — and on disk — when the block
        exits cleanly; an exception rolls back this block's work only."""
        if not self.is_sqlite:
            conn = await self._connected(self.engine.connect)
            committing = False
            try:
                conn = await conn.execution_options(jcs_write=True)
                try:
                    async with conn.begin():
                        try:
                            yield conn
                        except Exception as exc:  # no ROLLBACK over a dead link
                            await self._unless_outage(conn, exc)
                            raise
                        committing = True
                except IntegrityError as exc:
                    raise _domain_conflict(exc) from exc
                except Exception as exc:
                    await self._unless_outage(conn, exc, committing)
                    raise
            finally:
                await conn.close()
            return
        try:
            async with self._grouped() as conn:
                yield conn
        except Exception as exc:
            failed = _file_failure(exc)
            if failed is None:
                raise
            raise failed from exc

    @asynccontextmanager
    async def _grouped(self) -> AsyncIterator[AsyncConnection]:
        """SQLite: join the open group (or open one), run in a SAVEPOINT,
        then commit the group now if nobody queues behind, else leave the
        commit to a flusher queued behind them and wait for it."""
        self._queued += 1
        try:
            await self._lock.acquire()
        finally:
            self._queued -= 1
        handed_off = False
        try:
            group = self._group
            if group is None:
                conn, release_writer = await self._begin_writing()
                driver = (await conn.get_raw_connection()).driver_connection
                inline = driver if isinstance(driver, InlineConnection) else None
                group = self._group = WriterGroup(conn, inline, release_writer)
            ok = False
            try:
                if group.raw is not None:
                    with group.savepoint():
                        yield group.conn
                else:  # an in-memory database, on aiosqlite's own thread
                    async with group.conn.begin_nested():
                        yield group.conn
                ok = True
            except IntegrityError as exc:
                raise _domain_conflict(exc) from exc
            finally:
                if ok:
                    group.members += 1
                if self._queued and group.members < GROUP_MAX and group.lost is None:
                    self._schedule_flush()
                    self._lock.release()
                    handed_off = True
                else:
                    await _uninterrupted(self._end_group(group))
            if ok and handed_off:
                await asyncio.shield(group.done)
            elif ok:
                group.done.result()
        finally:
            if not handed_off:
                self._lock.release()

    async def _begin_writing(self) -> tuple[AsyncConnection, Callable[[], None]]:
        """A group's connection, in a write transaction, with the writer
        lock among processes (``writerlock.py``) held until ``_end_group``
        calls the release returned."""
        if self._writer is None:
            return await self._begin_immediate(), _nothing
        taking = await self._writer.acquire()
        release = functools.partial(self._writer.release, taking)
        try:
            return await self._begin_immediate(), release
        except BaseException:
            release()
            raise

    async def _begin_immediate(self) -> AsyncConnection:
        """A connection in a write transaction. Another process holding the
        write lock (SQLite's busy handler waits only briefly on the loop's
        thread): wait here, without holding the loop, and try again."""

        async def attempt() -> AsyncConnection:
            conn = await self.engine.connect()
            try:
                conn = await conn.execution_options(jcs_write=True)
                await conn.begin()
            except BaseException:
                await conn.close()
                raise
            return conn

        return await _while_locked(attempt)

    def _schedule_flush(self) -> None:
        if not self._flushing:
            self._flushing = True
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        """Queued behind the writers present when it was scheduled (the lock
        is FIFO): ends their group once they have joined it."""
        async with self._lock:
            self._flushing = False
            if self._group is not None:
                await _uninterrupted(self._end_group(self._group))

    async def _end_group(self, group: WriterGroup) -> None:
        """Commit (or, with no member, roll back) the group, sync it, and
        tell its members. Called with the lock held."""
        self._group = None
        if group.lost is None and group.raw is not None and not group.raw.in_transaction:
            # Ended by a way no savepoint saw: a COMMIT now would do nothing
            # and acknowledge every member.
            group.lost = RuntimeError("the group's transaction ended before its commit")
        if group.lost is not None:  # nothing left to commit: SQLite rolled it all back
            try:
                group.release_writer()
            finally:
                if group.members:  # those that went before the failing one
                    group.done.set_exception(group.unavailable())
                else:
                    group.done.set_result(None)  # nobody waits for it
                await finish_close(group.conn)
            return
        sync_failed: list[OSError] = []
        synced = False
        try:
            try:
                if group.members:
                    if group.driver is not None and self._wal is not None:
                        group.driver.after_commit = functools.partial(
                            _sync_log, self._wal, sync_failed, group.release_writer
                        )
                        synced = True
                    try:
                        await group.conn.commit()
                    finally:
                        if group.driver is not None:
                            group.driver.after_commit = None  # never left for a later commit
                else:
                    await group.conn.rollback()
            finally:
                group.release_writer()
        except Exception as exc:
            group.done.set_exception(
                _domain_conflict(exc) if isinstance(exc, IntegrityError) else exc
            )
            await finish_close(group.conn)
            return
        try:
            await group.conn.close()
        except Exception as exc:  # committed; the connection is just dropped
            log.warning("database: closing a committed connection failed", error=repr(exc))
        if not group.members:
            group.done.set_result(None)
            return
        try:
            if synced:  # with the commit, in its thread
                self.syncs += 1
                if sync_failed:
                    raise sync_failed[0]
            else:
                await self.sync_wal()
        except OSError as exc:
            group.done.set_exception(
                NotDurable(f"the metadata commit could not be synced to disk ({exc.strerror})")
            )
            return
        group.done.set_result(None)
        self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        if self._file is None or self._wal is None or self._checkpointing is not None:
            return
        try:
            size = os.stat(self._wal).st_size
        except FileNotFoundError:
            return
        if size >= CHECKPOINT_BYTES:
            self._checkpointing = asyncio.ensure_future(self._checkpoint(self._file))

    async def _checkpoint(self, path: str) -> None:
        try:
            await asyncio.to_thread(checkpoint, path)
        except Exception as exc:  # the next commit tries again
            log.warning("database: checkpoint failed", error=repr(exc))
        finally:
            self._checkpointing = None

    async def sync_wal(self) -> None:
        """Make the last commit durable (SQLite's write-ahead log)."""
        if self._wal is not None:
            await asyncio.to_thread(fdatasync_path, self._wal)
        self.syncs += 1

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only snapshot on SQLite (one transaction, rolled back at the
        end). PostgreSQL reads in autocommit: under READ COMMITTED a
        transaction gives each statement its own snapshot anyway, so it
        would only add a BEGIN and a ROLLBACK round trip; whatever must be
        read as one is read in one statement (``catalog.open_by_path``)."""
        if self.is_sqlite and self._file is None:  # in-memory, on aiosqlite's thread
            async with self._read_engine.connect() as conn, conn.begin() as tx:
                yield conn
                await tx.rollback()
            return
        conn = await self._connected(self._readers.take)  # kept out of the pool (meta/readers.py)
        clean = False
        try:
            tx = await conn.begin()
            try:
                yield conn
            except Exception as exc:
                await self._unless_outage(conn, exc)
                raise
            finally:
                await tx.rollback()
                clean = True
        finally:
            await self._readers.give_back(conn, clean)

    @asynccontextmanager
    async def read_statement(self) -> AsyncIterator[AsyncConnection]:
        """For a read of one statement run through ``DriverQuery.rows``: no
        transaction around it, since one statement is its own snapshot on
        both databases. Saves the BEGIN and ROLLBACK (two trips through
        SQLAlchemy's greenlets) that were a fifth of a small GET. A caller
        that runs SQLAlchemy statements anyway gets a transaction
        (autobegin), and it is rolled back here."""
        if self.is_sqlite and self._file is None:  # in-memory: aiosqlite's own thread
            async with self.read() as conn:
                yield conn
            return
        conn = await self._connected(self._readers.take)
        clean = False
        try:
            yield conn
        except Exception as exc:
            await self._unless_outage(conn, exc)
            raise
        finally:
            try:
                if conn.in_transaction():
                    await conn.rollback()
                clean = True
            finally:
                await self._readers.give_back(conn, clean)

    async def _connected(self, take: Callable[[], Awaitable[AsyncConnection]]) -> AsyncConnection:
        """A connection from ``take`` (an engine's ``connect``, the kept
        readers' ``take``); failing to get one because the server is out of
        reach is ``MetadataUnavailable``."""
        try:
            return await take()
        except Exception as exc:
            await self._unless_outage(None, exc)
            raise

    async def _unless_outage(
        self, conn: AsyncConnection | None, exc: BaseException, committing: bool = False
    ) -> None:
        """Raise ``exc`` as ``MetadataUnavailable`` if it says PostgreSQL is
        out of reach or silent, dropping ``conn``, or that SQLite cannot use
        its file (meta/outage.py)."""
        if not self.is_sqlite:
            await raise_if_outage(conn, exc, self.timeout, committing)
        elif (failed := _file_failure(exc)) is not None:
            raise failed from exc

    async def _dispose(self) -> None:
        await self._readers.close()
        await self.engine.dispose()

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.wait([self._flusher])
        if self._checkpointing is not None:
            await asyncio.wait([self._checkpointing])
        if self._connections is None:
            await self._dispose()
        else:  # a server that stopped answering must not hold up the stop
            await self._connections.close(self.engine, self._dispose)
        if self._writer is not None:
            self._writer.close()


def _begin_inline(sqlite: sqlite3.Connection, statement: str) -> None:
    """``statement`` on the sqlite3 connection itself, 10-25 µs less than
    through SQLAlchemy's ``exec_driver_sql``, which was 4 % of the loop's
    busy time under 1 MiB uploads (py-spy, 2026-12-07). Its error is raised as
    ``exec_driver_sql`` raises it (``OperationalError`` for "database is
    locked"), which ``_while_locked`` reads."""
    try:
        sqlite.execute(statement)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


async def _while_locked(attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``, again while another process holds SQLite's write lock
    (with asyncio.sleep in between: the loop is never held), for up to
    ``LOCKED_FOR`` seconds."""
    waited, pause = 0.0, 0.005
    while True:
        try:
            return await attempt()
        except OperationalError as exc:
            if "locked" not in str(exc.orig):
                raise
            if waited >= LOCKED_FOR:  # a holder that never lets go: not this request's fault
                raise locked_too_long(LOCKED_FOR) from exc
        await asyncio.sleep(pause)
        waited += pause
        pause = min(pause * 2, 0.2)


async def _uninterrupted(work: Awaitable[None]) -> None:
    """Run ``work`` to its end even if the caller is cancelled meanwhile (a
    group commit half done would leave its members waiting), then let the
    cancellation go on."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def finish_close(conn: AsyncConnection) -> None:
    """Close a connection whose transaction failed; it goes back invalidated."""
    try:
        await conn.invalidate()
    finally:
        await conn.close()
