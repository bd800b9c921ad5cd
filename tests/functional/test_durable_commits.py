"""Acknowledged writes are on disk (issue 10, item 1).

On SQLite every write transaction joins a group that is committed and then
synced (``Database.sync_wal``, an ``fdatasync`` of the write-ahead log)
before any of its writers returns. These tests hold the sync at a fault hook
and check that nothing is acknowledged while it is held, that one sync
covers many concurrent writers, and that a sync that fails fails the write
(``NotDurable``, never a success).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from jointcloud.errors import MetadataUnavailable
from jointcloud.meta import tables as t
from jointcloud.meta.db import Database, NotDurable
from jointcloud.meta.rows import now
from jointcloud.meta.sqlite import InlineConnection


@pytest.fixture
async def db(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[Database]:
    path = tmp_path / "meta.db"
    shutil.copyfile(migrated_sqlite, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    yield database
    await database.close()


class HeldSync:
    """Replaces ``fdatasync_path``: each sync blocks until released, and is
    recorded with what was acknowledged before it started."""

    def __init__(self, acks: list[str]) -> None:
        self.acks = acks
        self.started = threading.Event()
        self.release = threading.Event()
        self.seen: list[tuple[str, int]] = []  # (path, acks before the sync)
        self.fail: OSError | None = None

    def __call__(self, path: str) -> None:
        self.seen.append((path, len(self.acks)))
        self.started.set()
        assert self.release.wait(30), "sync never released"
        if self.fail is not None:
            raise self.fail


async def add_user(db: Database, name: str, acks: list[str]) -> None:
    async with db.write() as conn:
        await conn.execute(insert(t.users).values(name=name, created_at=now()))
    acks.append(name)


async def names(db: Database) -> set[str]:
    async with db.read() as conn:
        return {r.name for r in await conn.execute(select(t.users.c.name))}


async def test_no_write_returns_before_its_commit_is_synced(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    acks: list[str] = []
    hook = HeldSync(acks)
    monkeypatch.setattr("jointcloud.meta.db.fdatasync_path", hook)
    writers = [asyncio.ensure_future(add_user(db, f"u{i}", acks)) for i in range(20)]
    assert await asyncio.to_thread(hook.started.wait, 30)
    # The first group's commit is in SQLite and its sync is held: nobody has
    # been told "done", whatever else ran meanwhile.
    await asyncio.sleep(0)
    assert acks == []
    hook.release.set()
    await asyncio.gather(*writers)
    assert sorted(acks) == sorted(f"u{i}" for i in range(20))
    assert all(before == 0 or path.endswith("-wal") for path, before in hook.seen)
    assert hook.seen[0] == (str(Path(db.engine.url.database or "")) + "-wal", 0)
    # Group commit: 20 concurrent writers needed fewer syncs than writers.
    assert 1 <= db.syncs < 20, db.syncs
    assert {f"u{i}" for i in range(20)} <= await names(db)


async def test_every_acknowledged_write_was_followed_by_a_sync(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting: each sync records how many writes were acknowledged before
    it; every acknowledgement comes after the sync of its own group, so the
    last sync saw fewer acknowledgements than there are writes."""
    acks: list[str] = []
    hook = HeldSync(acks)
    hook.release.set()
    monkeypatch.setattr("jointcloud.meta.db.fdatasync_path", hook)
    for i in range(5):  # one at a time: one group, one sync each
        await add_user(db, f"seq{i}", acks)
    assert [before for _, before in hook.seen] == [0, 1, 2, 3, 4]
    assert db.syncs == 5


async def test_a_failed_sync_fails_the_write(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    acks: list[str] = []
    hook = HeldSync(acks)
    hook.release.set()
    hook.fail = OSError(5, "Input/output error")
    monkeypatch.setattr("jointcloud.meta.db.fdatasync_path", hook)
    with pytest.raises(NotDurable, match="could not be synced to disk"):
        await add_user(db, "lost", acks)
    assert acks == []
    hook.fail = None
    await add_user(db, "next", acks)  # the database goes on working
    assert acks == ["next"]


async def test_a_failing_writer_rolls_back_only_its_own_work(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers of one group are isolated by savepoints: one whose block
    raises leaves the others' rows committed."""
    acks: list[str] = []
    hook = HeldSync(acks)
    monkeypatch.setattr("jointcloud.meta.db.fdatasync_path", hook)

    async def failing() -> None:
        async with db.write() as conn:
            await conn.execute(insert(t.users).values(name="bad", created_at=now()))
            raise RuntimeError("refused after writing")

    first = asyncio.ensure_future(add_user(db, "first", acks))
    assert await asyncio.to_thread(hook.started.wait, 30)  # group 1 syncing
    grouped = [
        asyncio.ensure_future(add_user(db, "a", acks)),
        asyncio.ensure_future(failing()),
        asyncio.ensure_future(add_user(db, "b", acks)),
    ]
    hook.release.set()
    results = await asyncio.gather(first, *grouped, return_exceptions=True)
    assert isinstance(results[2], RuntimeError)
    assert sorted(acks) == ["a", "b", "first"]
    found = await names(db)
    assert {"first", "a", "b"} <= found and "bad" not in found


async def test_a_write_waits_for_another_process_without_holding_the_loop(db: Database) -> None:
    """Another process holding SQLite's write lock (a ``jcs admin`` command
    while the server runs): the write waits and then goes through, and the
    event loop keeps serving meanwhile (the busy handler on the loop's
    thread waits only briefly; the retry sleeps asynchronously)."""
    other = sqlite3.connect(str(db.engine.url.database), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other process's write transaction
    acks: list[str] = []
    writer = asyncio.ensure_future(add_user(db, "waited", acks))
    started = time.monotonic()
    for _ in range(30):  # the loop doing other work: 0.3 s if nothing holds it
        await asyncio.sleep(0.01)
    # A busy handler waiting on the loop's thread would have held these
    # sleeps for as long as it waits (SQLite's default here was a minute).
    assert time.monotonic() - started < 3
    assert not writer.done() and acks == []  # it cannot commit while the lock is held
    other.execute("INSERT INTO users (name, created_at) VALUES ('other', '2026-01-01')")
    other.execute("COMMIT")
    other.close()
    await writer
    assert acks == ["waited"] and {"other", "waited"} <= await names(db)


async def test_a_writer_that_ends_the_transaction_gets_its_own_error(db: Database) -> None:
    """A writer whose work ended the group's transaction (SQLite does so on
    some errors; here the writer rolls it back outright) is told its own
    error, not the failed rollback of its savepoint; the next write works."""

    async def breaking() -> None:
        async with db.write() as conn:
            await conn.execute(insert(t.users).values(name="gone", created_at=now()))
            await conn.exec_driver_sql("ROLLBACK")
            raise RuntimeError("the writer's own failure")

    with pytest.raises(RuntimeError, match="the writer's own failure"):
        await breaking()
    acks: list[str] = []
    await add_user(db, "after", acks)
    assert acks == ["after"]
    found = await names(db)
    assert "after" in found and "gone" not in found


async def test_a_lock_held_by_a_program_outside_jcs_fails_writes_with_503_words(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``sqlite3`` shell (which takes no ``.writer`` lock) holding a
    write transaction: writes wait up to ``LOCKED_FOR``, then fail as the
    database being unavailable (a 503 in every protocol), not as a raw
    SQLite error (a 500); and work again once the shell lets go."""
    monkeypatch.setattr("jointcloud.meta.db.LOCKED_FOR", 0.3)
    shell = sqlite3.connect(tmp_path / "meta.db", isolation_level=None)
    shell.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(MetadataUnavailable, match="stayed locked by another process"):
            await add_user(db, "waited", [])
    finally:
        shell.execute("ROLLBACK")
        shell.close()
    acks: list[str] = []
    await add_user(db, "after", acks)
    assert acks == ["after"]


# Run in a process of its own: it limits its own files' size (RLIMIT_FSIZE)
# so that the write-ahead log cannot grow, as on a full disk.
_GROUP_LOST = """
import asyncio, json, os, resource, sys
from sqlalchemy import insert, select, text
from jointcloud.meta import tables as t
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

async def main(path):
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    async with db.write() as conn:
        await conn.execute(insert(t.users).values(name="before", created_at=now()))
    wal = os.stat(path + "-wal").st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (wal + 64 * 1024, resource.RLIM_INFINITY))
    b_queued = asyncio.Event()
    results = {}

    async def writer(name, body):
        try:
            async with db.write() as conn:
                await body(conn)
            results[name] = "acknowledged"
        except Exception as exc:
            results[name] = f"{type(exc).__name__}: {exc}"

    async def small(conn):  # done before B's statements, in the same group
        await conn.execute(insert(t.users).values(name="member A", created_at=now()))
        await b_queued.wait()

    async def large(conn):  # spills SQLite's cache into a log that cannot grow
        await conn.execute(text("PRAGMA cache_size=10"))
        for i in range(3000):
            await conn.execute(insert(t.users).values(name=f"b{i}" + "x" * 900, created_at=now()))

    async def b():
        b_queued.set()  # runs on into db.write(), queued before A resumes
        await writer("B", large)

    await asyncio.gather(writer("A", small), b())
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    await writer("after", lambda conn: conn.execute(
        insert(t.users).values(name="after", created_at=now())))
    async with db.read() as conn:
        results["names"] = sorted(
            r.name for r in await conn.execute(select(t.users.c.name))
            if not r.name.endswith("x"))
    await db.close()
    print(json.dumps(results))

asyncio.run(main(sys.argv[1]))
"""


def test_a_group_sqlite_rolled_back_acknowledges_none_of_its_writers(tmp_path: Path) -> None:
    """Writer A's statement is done; B's, in the same group commit, fails
    with an I/O error that makes SQLite roll back the whole transaction.
    A must not be acknowledged (its row is gone with B's), nor may the
    group's commit go on as if nothing happened; later writes work."""
    child = subprocess.run(
        [sys.executable, "-c", _GROUP_LOST, str(tmp_path / "meta.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    results = json.loads(child.stdout.splitlines()[-1])
    assert results["A"] == (
        "MetadataUnavailable: the metadata database cannot use its file (disk I/O error); "
        "the transaction was rolled back, nothing was saved"
    ), results
    assert results["B"].startswith("MetadataUnavailable: the metadata database cannot use its file")
    assert results["after"] == "acknowledged"
    assert results["names"] == ["after", "before"]


class _FailingBegin:
    """A sqlite3 connection whose next ``BEGIN IMMEDIATE`` fails as a disk
    that cannot be written does; everything else goes to the connection."""

    def __init__(self, raw: sqlite3.Connection, failures: list[str]) -> None:
        self.raw = raw
        self.failures = failures

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "BEGIN IMMEDIATE" and self.failures:
            error = sqlite3.OperationalError(self.failures.pop())
            error.sqlite_errorcode = sqlite3.SQLITE_IOERR  # as SQLite sets it
            raise error
        return self.raw.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


async def test_a_disk_failing_at_a_writes_begin_answers_503_words_and_the_next_write_works(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's ``BEGIN IMMEDIATE`` runs on the sqlite3 connection itself
    (``db._begin_inline``): SQLite's error there must still reach the
    protocols as the database being unavailable (a 503 everywhere), not as
    a raw SQLite error (a 500), and leave the connection usable."""
    failures = ["disk I/O error"]
    real = InlineConnection.sqlite
    monkeypatch.setattr(
        InlineConnection,
        "sqlite",
        property(lambda self: _FailingBegin(real.fget(self), failures)),  # type: ignore[attr-defined]
    )
    with pytest.raises(MetadataUnavailable, match=r"cannot use its file \(disk I/O error\)"):
        await add_user(db, "failed", [])
    assert failures == []  # the failure was met at the BEGIN
    acks: list[str] = []
    await add_user(db, "after", acks)
    assert acks == ["after"]
    found = await names(db)
    assert "after" in found and "failed" not in found
