"""One transfer run against in-memory Source/Sink fakes and a real SQLite
metadata database: retries, failures, progress, diff, resume, deleteSource."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_none,
)

from jointcloud.core.models import FileRecord, TransferProgress
from jointcloud.core.transfer import engine as transfer_mod
from jointcloud.core.transfer.engine import (
    ATTEMPTS,
    TransferFailed,
    TransferRun,
    retrying,
    transient,
)
from jointcloud.core.transfer.spec import TransferFilter
from jointcloud.core.transfer.trees import Item
from jointcloud.errors import BlockNotFound, SpaceAuthError, SpaceUnavailable
from jointcloud.meta import accounts
from jointcloud.meta import transfers as repo
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

RUN_STARTED = 1_000_000.0
SRC_MTIME = 500_000.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemSource:
    """Files by relative path, with scripted failures per path."""

    def __init__(self, files: dict[str, bytes], mtime: float = SRC_MTIME) -> None:
        self.files = dict(files)
        self.mtimes = dict.fromkeys(files, mtime)
        self.listed_size: dict[str, int] = {}  # the listing lies: the file changed
        self.read_errors: dict[str, list[BaseException]] = {}  # raised in turn, then OK
        self.stream_errors: dict[str, list[BaseException]] = {}  # after the first chunk
        self.stat_override: dict[str, Item | None] = {}
        self.reads: dict[str, int] = {}
        self.deleted: list[str] = []
        self.events: list[str] | None = None
        self.chunk = 8

    def _item(self, rel: str) -> Item:
        return Item(rel, self.listed_size.get(rel, len(self.files[rel])), self.mtimes[rel])

    async def items(self) -> AsyncIterator[Item]:
        for rel in sorted(self.files):
            yield self._item(rel)

    def _fail(self, table: dict[str, list[BaseException]], rel: str) -> None:
        pending = table.get(rel)
        if pending:
            raise pending.pop(0)

    async def open(self, item: Item) -> AsyncIterator[bytes]:
        self.reads[item.rel] = self.reads.get(item.rel, 0) + 1
        self._fail(self.read_errors, item.rel)
        data = self.files[item.rel]
        for i in range(0, len(data), self.chunk):
            yield data[i : i + self.chunk]
            if i == 0:
                self._fail(self.stream_errors, item.rel)

    async def read_small(self, item: Item) -> bytes:
        self.reads[item.rel] = self.reads.get(item.rel, 0) + 1
        self._fail(self.read_errors, item.rel)
        return self.files[item.rel]

    async def stat(self, rel: str) -> Item | None:
        if rel in self.stat_override:
            return self.stat_override[rel]
        return self._item(rel) if rel in self.files else None

    async def delete(self, rel: str) -> None:
        if self.events is not None:
            self.events.append(f"delete {rel}")
        self.deleted.append(rel)
        del self.files[rel]

    async def digest(self, rel: str) -> str:
        return sha(self.files[rel])


class MemSink:
    """A destination: whole files stored atomically, with a settable clock."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, float]] = {}
        self.clock = RUN_STARTED + 10.0
        self.writes: list[str] = []
        self.put_errors: dict[str, list[BaseException]] = {}
        self.corrupt: set[str] = set()  # stores other bytes of the same size
        self.flushes = 0
        self.events: list[str] | None = None

    def hold(self, rel: str, data: bytes, mtime: float) -> None:
        self.files[rel] = (data, mtime)

    def _store(self, rel: str, data: bytes) -> None:
        if rel in self.corrupt:
            data = bytes(b ^ 0xFF for b in data)
        self.writes.append(rel)
        self.files[rel] = (data, self.clock)

    async def holdings(self) -> dict[str, Item]:
        return {rel: Item(rel, len(d), m) for rel, (d, m) in self.files.items()}

    async def write(self, item: Item, stream: AsyncIterator[bytes]) -> int:
        parts = [chunk async for chunk in stream]  # nothing stored if it fails
        data = b"".join(parts)
        self._store(item.rel, data)
        return len(data)

    async def put_small(self, item: Item, data: bytes) -> None:
        pending = self.put_errors.get(item.rel)
        if pending:
            raise pending.pop(0)
        self._store(item.rel, data)

    async def flush(self) -> None:
        if self.events is not None:
            self.events.append("flush")
        self.flushes += 1

    async def sweep(self, older_than: float) -> int:
        return 0

    async def digest(self, rel: str) -> str:
        return sha(self.files[rel][0])

    def data(self, rel: str) -> bytes:
        return self.files[rel][0]


def fast_retrying() -> AsyncRetrying:
    return AsyncRetrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_none(),
        retry=retry_if_exception(transient),
        reraise=True,
    )


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer_mod, "retrying", fast_retrying)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/m.db")
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
async def task_id(db: Database) -> int:
    async with db.write() as conn:
        user = await accounts.create_user(conn, "alice")
        task = await repo.create(conn, user.user_id, "sync", {"srcPath": ""}, now(), None)
    return task.task_id


def make_run(
    db: Database, task_id: int, source: MemSource, *sinks: MemSink, **kw: Any
) -> TransferRun:
    kw.setdefault("run_no", 1)
    kw.setdefault("run_started", RUN_STARTED)
    return TransferRun(db=db, task_id=task_id, source=source, sinks=list(sinks), **kw)


async def records(db: Database, task_id: int) -> dict[tuple[int, str], FileRecord]:
    async with db.read() as conn:
        return await repo.load_records(conn, task_id)


async def failures(db: Database, task_id: int, run_no: int = 1) -> list[tuple[str, str]]:
    async with db.read() as conn:
        return await repo.failures(conn, task_id, run_no)


async def save(db: Database, task_id: int, *recs: tuple[int, str, FileRecord]) -> None:
    async with db.write() as conn:
        await repo.save_records(conn, task_id, list(recs))


def progress(run: TransferRun) -> dict[str, int]:
    p = run.progress
    return {
        "files_total": p.files_total,
        "files_done": p.files_done,
        "files_failed": p.files_failed,
        "files_skipped": p.files_skipped,
        "bytes_total": p.bytes_total,
        "bytes_done": p.bytes_done,
    }


# -- the retry policy ----------------------------------------------------------


def test_retry_policy_waits_half_one_two_four_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real policy, not the fast one
    policy = transfer_mod.retrying()
    assert policy.stop.max_attempt_number == ATTEMPTS == 5  # type: ignore[attr-defined]
    assert policy.reraise
    wait = policy.wait
    assert 0 < wait.jitter <= 0.5  # type: ignore[attr-defined]
    wait.jitter = 0  # type: ignore[attr-defined]

    def wait_after(attempt: int) -> float:
        state = RetryCallState(policy, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return wait(state)

    assert [wait_after(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


async def test_retry_policy_sleeps_between_real_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    monkeypatch.undo()
    monkeypatch.setattr(random, "uniform", lambda a, b: 0.0)  # no jitter
    policy = retrying()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    policy.sleep = fake_sleep  # type: ignore[method-assign]
    calls = 0
    with pytest.raises(SpaceUnavailable):
        async for attempt in policy:
            with attempt:
                calls += 1
                raise SpaceUnavailable("down")
    assert calls == 5
    assert slept == [0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (SpaceUnavailable("x"), True),
        (TransferFailed("source changed"), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (BlockNotFound("x"), False),
        (SpaceAuthError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_transient(exc: BaseException, expected: bool) -> None:
    assert transient(exc) is expected


# -- retries and failures ------------------------------------------------------


async def test_small_file_read_fails_twice_then_copies(db: Database, task_id: int) -> None:
    src = MemSource({"a.txt": b"hello", "b.txt": b"world!"})
    src.read_errors["a.txt"] = [SpaceUnavailable("blip"), SpaceUnavailable("blip")]
    sink = MemSink()
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert src.reads["a.txt"] == 3
    assert sink.data("a.txt") == b"hello" and sink.data("b.txt") == b"world!"
    assert progress(run) == {
        "files_total": 2,
        "files_done": 2,
        "files_failed": 0,
        "files_skipped": 0,
        "bytes_total": 11,
        "bytes_done": 11,
    }
    assert run.failures == []
    recs = await records(db, task_id)
    assert recs[(0, "a.txt")] == FileRecord(5, SRC_MTIME, 1, "done")
    assert sink.flushes == 1


async def test_small_file_write_fails_twice_bytes_not_double_counted(
    db: Database, task_id: int
) -> None:
    src = MemSource({"a.txt": b"0123456789"})
    sink = MemSink()
    sink.put_errors["a.txt"] = [SpaceUnavailable("503"), SpaceUnavailable("503")]
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert src.reads["a.txt"] == 3
    assert sink.data("a.txt") == b"0123456789"
    assert run.progress.bytes_done == 10 and run.progress.files_done == 1


async def test_streamed_file_fails_midway_bytes_not_double_counted(
    db: Database, task_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer_mod, "SMALL", 4)  # stream everything above 4 bytes
    payload = bytes(range(40))
    src = MemSource({"big.bin": payload, "tiny": b"abc"})
    src.stream_errors["big.bin"] = [SpaceUnavailable("reset"), SpaceUnavailable("reset")]
    sink = MemSink()
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert src.reads["big.bin"] == 3
    assert sink.data("big.bin") == payload and sink.writes.count("big.bin") == 1
    assert progress(run) == {
        "files_total": 2,
        "files_done": 2,
        "files_failed": 0,
        "files_skipped": 0,
        "bytes_total": 43,
        "bytes_done": 43,  # the 8 bytes of each failed attempt start over
    }


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (BlockNotFound("no such file 'gone.txt'"), "no such file 'gone.txt'"),
        (SpaceAuthError("access key rejected"), "access key rejected"),
    ],
)
async def test_not_found_and_auth_errors_are_not_retried(
    db: Database, task_id: int, exc: BaseException, message: str
) -> None:
    src = MemSource({"gone.txt": b"12345", "ok1": b"x", "ok2": b"yy"})
    src.read_errors["gone.txt"] = [exc, exc, exc, exc, exc, exc]
    sink = MemSink()
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert src.reads["gone.txt"] == 1
    assert "gone.txt" not in sink.files
    assert sink.data("ok1") == b"x" and sink.data("ok2") == b"yy"
    assert run.progress.files_failed == 1 and run.progress.files_done == 2
    assert run.progress.bytes_done == 3
    assert run.failures == [("gone.txt", message)]
    recs = await records(db, task_id)
    assert recs[(0, "gone.txt")].state == "failed"
    assert recs[(0, "ok1")].state == "done" and recs[(0, "ok2")].state == "done"
    assert await failures(db, task_id) == [("gone.txt", message)]


async def test_source_changed_size_is_retried_then_failed(db: Database, task_id: int) -> None:
    src = MemSource({"grew.log": b"0123456789AB", "ok": b"fine"})
    src.listed_size["grew.log"] = 10  # listed at 10 bytes, now 12
    sink = MemSink()
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert src.reads["grew.log"] == ATTEMPTS
    assert "grew.log" not in sink.files
    assert sink.data("ok") == b"fine"
    assert run.progress.files_failed == 1 and run.progress.files_done == 1
    assert run.progress.bytes_done == 4
    [(path, error)] = run.failures
    assert path == "grew.log"
    assert "source changed" in error and "listed 10 bytes, read 12" in error
    assert (await records(db, task_id))[(0, "grew.log")].state == "failed"
    [(_, stored)] = await failures(db, task_id)
    assert "source changed" in stored


async def test_streamed_source_changed_size_is_retried_then_failed(
    db: Database, task_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer_mod, "SMALL", 4)
    src = MemSource({"shrunk.bin": bytes(20)})
    src.listed_size["shrunk.bin"] = 30
    sink = MemSink()
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert src.reads["shrunk.bin"] == ATTEMPTS
    assert run.progress.files_failed == 1
    assert run.progress.bytes_done == 0  # every attempt's bytes taken back
    assert "listed 30 bytes, read 20" in run.failures[0][1]


# -- diff mode -----------------------------------------------------------------


async def test_diff_skips_by_record(db: Database, task_id: int) -> None:
    src = MemSource({"a": b"aaaa", "b": b"bbbbbb"})
    sink = MemSink()
    first = make_run(db, task_id, src, sink, mode="diff")
    await first.run()
    assert sorted(sink.writes) == ["a", "b"]
    # The destination copies are older than the sources, but the record says
    # this task copied exactly these versions: unchanged.
    for rel, (data, _) in list(sink.files.items()):
        sink.hold(rel, data, SRC_MTIME - 100)
    sink.writes.clear()
    second = make_run(db, task_id, src, sink, mode="diff", run_no=2)
    await second.run()
    assert sink.writes == []
    assert progress(second) == {
        "files_total": 2,
        "files_done": 0,
        "files_failed": 0,
        "files_skipped": 2,
        "bytes_total": 0,
        "bytes_done": 0,
    }
    # A new modification time at the same size means changed, even though
    # the destination copy is newer than the source.
    src.mtimes["a"] = SRC_MTIME + 1
    sink.hold("a", sink.data("a"), SRC_MTIME + 50)
    third = make_run(db, task_id, src, sink, mode="diff", run_no=3)
    await third.run()
    assert sink.writes == ["a"]
    assert third.progress.files_done == 1 and third.progress.files_skipped == 1
    assert (await records(db, task_id))[(0, "a")] == FileRecord(4, SRC_MTIME + 1, 3, "done")


async def test_diff_copies_when_destination_size_differs_despite_record(
    db: Database, task_id: int
) -> None:
    src = MemSource({"a": b"aaaa"})
    sink = MemSink()
    await make_run(db, task_id, src, sink, mode="diff").run()
    sink.hold("a", b"edited at the destination", SRC_MTIME + 10)
    sink.writes.clear()
    run = make_run(db, task_id, src, sink, mode="diff", run_no=2)
    await run.run()
    assert sink.writes == ["a"] and sink.data("a") == b"aaaa"


async def test_diff_compares_bytes_of_a_file_copied_within_its_clock_tick(
    db: Database, task_id: int
) -> None:
    """A source whose clock keeps whole seconds (S3's LastModified) gives a
    rewrite made in the second of the copy the very time the copy recorded:
    the record then said "unchanged" for good, and the stale copy stayed at
    the destination through every later diff run (found by review,
    2026-12-07). A copy of a file modified that close to the run's start is
    recorded as such, and the next diff run compares its bytes."""
    src = MemSource({"a": b"AAAA", "old": b"old!"})
    src.mtimes["a"] = RUN_STARTED - 0.5  # written just before the run began
    sink = MemSink()
    await make_run(db, task_id, src, sink, mode="diff").run()
    assert sink.data("a") == b"AAAA"
    src.files["a"] = b"BBBB"  # rewritten in the same tick: same size, same mtime
    sink.writes.clear()
    second = make_run(db, task_id, src, sink, mode="diff", run_no=2, run_started=RUN_STARTED + 60)
    await second.run()
    assert sink.data("a") == b"BBBB"
    assert sink.writes == ["a"]  # "old" is trusted by its record, as before
    assert second.progress.files_done == 1 and second.progress.files_skipped == 1
    # Now proven at a time well past its modification: trusted from here on.
    assert (await records(db, task_id))[(0, "a")].state == "done"
    sink.writes.clear()
    third = make_run(db, task_id, src, sink, mode="diff", run_no=3, run_started=RUN_STARTED + 120)
    await third.run()
    assert sink.writes == [] and src.reads.get("a") == 2  # no digest read either


async def test_diff_a_recent_copy_proven_equal_is_not_rewritten(db: Database, task_id: int) -> None:
    src = MemSource({"a": b"AAAA"}, mtime=RUN_STARTED - 0.5)
    sink = MemSink()
    await make_run(db, task_id, src, sink, mode="diff").run()
    sink.writes.clear()
    second = make_run(db, task_id, src, sink, mode="diff", run_no=2, run_started=RUN_STARTED + 60)
    await second.run()
    assert sink.writes == []
    assert second.progress.files_skipped == 1 and second.progress.files_done == 0


async def test_delete_source_keeps_a_file_rewritten_within_its_clock_tick(
    db: Database, task_id: int
) -> None:
    """deleteSource checked only the size and modification time before it
    deleted: a rewrite after the copy, within the source clock's tick (a
    whole second on S3), passed, and the new bytes were deleted with the
    source, found nowhere else (found by review, 2026-12-07)."""
    src = MemSource({"a": b"AAAA", "old": b"old!"})
    src.mtimes["a"] = RUN_STARTED - 0.5

    class Rewriting(MemSink):
        async def flush(self) -> None:
            await super().flush()
            src.files["a"] = b"BBBB"  # after the copy, before the deletes
            src.files["old"] = b"new!"  # a clock that keeps the old time: the rule's limit

    sink = Rewriting()
    run = make_run(db, task_id, src, sink, delete_source=True)
    await run.run()
    assert sink.data("a") == b"AAAA"
    assert src.files.get("a") == b"BBBB"  # kept: the only copy of these bytes
    assert src.deleted == ["old"]
    assert run.failures == []


async def test_diff_without_record_skips_by_destination_mtime(db: Database, task_id: int) -> None:
    src = MemSource({"same_newer": b"1111", "same_equal": b"2222", "older": b"3333", "size": b"44"})
    sink = MemSink()
    sink.hold("same_newer", b"xxxx", SRC_MTIME + 1)
    sink.hold("same_equal", b"yyyy", SRC_MTIME)
    sink.hold("older", b"3333", SRC_MTIME - 1)
    sink.hold("size", b"444", SRC_MTIME + 1)
    run = make_run(db, task_id, src, sink, mode="diff")
    await run.run()
    assert sorted(sink.writes) == ["older", "size"]
    assert sink.data("same_newer") == b"xxxx"  # not compared by content in sizeMtime
    assert progress(run) == {
        "files_total": 4,
        "files_done": 2,
        "files_failed": 0,
        "files_skipped": 2,
        "bytes_total": 6,
        "bytes_done": 6,
    }
    # Skipped files are not recorded (a diff over a big unchanged tree writes
    # nothing); the next run decides by the same rule and skips them again.
    recs = await records(db, task_id)
    assert (0, "same_newer") not in recs and (0, "same_equal") not in recs
    again = make_run(db, task_id, src, sink, mode="diff", run_no=2)
    await again.run()
    assert sorted(sink.writes) == ["older", "size"]
    assert again.progress.files_skipped == 4


async def test_full_mode_ignores_destination(db: Database, task_id: int) -> None:
    src = MemSource({"a": b"1111"})
    sink = MemSink()
    sink.hold("a", b"1111", SRC_MTIME + 100)
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert sink.writes == ["a"]
    assert run.progress.files_done == 1 and run.progress.files_skipped == 0


async def test_diff_hash_compares_content(db: Database, task_id: int) -> None:
    src = MemSource({"same": b"abcd", "differs": b"abcd"})
    sink = MemSink()
    sink.hold("same", b"abcd", SRC_MTIME - 50)
    sink.hold("differs", b"abce", SRC_MTIME + 50)
    run = make_run(db, task_id, src, sink, mode="diff", compare="hash")
    await run.run()
    assert sink.writes == ["differs"] and sink.data("differs") == b"abcd"
    assert run.progress.files_skipped == 1 and run.progress.files_done == 1
    assert run.progress.bytes_total == 4 and run.progress.bytes_done == 4


# -- resume --------------------------------------------------------------------


async def test_resumed_record_of_this_run_but_destination_missing_recopies(
    db: Database, task_id: int
) -> None:
    src = MemSource({"lost": b"lost data", "kept": b"kept"})
    sink = MemSink()
    sink.hold("kept", b"kept", RUN_STARTED + 1)
    await save(
        db,
        task_id,
        (0, "lost", FileRecord(9, SRC_MTIME, 1, "done")),
        (0, "kept", FileRecord(4, SRC_MTIME, 1, "done")),
    )
    run = make_run(db, task_id, src, sink, resumed=True)
    await run.run()
    assert sink.writes == ["lost"] and sink.data("lost") == b"lost data"
    assert progress(run) == {
        "files_total": 2,
        "files_done": 2,
        "files_failed": 0,
        "files_skipped": 0,
        "bytes_total": 13,
        "bytes_done": 13,
    }


async def test_resumed_record_of_this_run_with_wrong_size_recopies(
    db: Database, task_id: int
) -> None:
    src = MemSource({"a": b"full content"})
    sink = MemSink()
    sink.hold("a", b"", RUN_STARTED + 1)  # lost to a crash before the flush
    await save(db, task_id, (0, "a", FileRecord(12, SRC_MTIME, 1, "done")))
    run = make_run(db, task_id, src, sink, resumed=True)
    await run.run()
    assert sink.writes == ["a"] and sink.data("a") == b"full content"


async def test_resumed_unrecorded_destination_written_after_start_counts_done(
    db: Database, task_id: int
) -> None:
    src = MemSource({"landed": b"12345", "stale": b"67890", "new": b"abc"})
    sink = MemSink()
    sink.hold("landed", b"12345", RUN_STARTED + 5)  # copied, record lost
    sink.hold("stale", b"xxxxx", RUN_STARTED - 3600)  # from long before this run
    run = make_run(db, task_id, src, sink, resumed=True)
    await run.run()
    assert sorted(sink.writes) == ["new", "stale"]
    assert progress(run) == {
        "files_total": 3,
        "files_done": 3,
        "files_failed": 0,
        "files_skipped": 0,
        "bytes_total": 13,
        "bytes_done": 13,
    }
    assert (await records(db, task_id))[(0, "landed")] == FileRecord(5, SRC_MTIME, 1, "done")


async def test_resumed_unrecorded_destination_of_other_size_is_copied(
    db: Database, task_id: int
) -> None:
    src = MemSource({"a": b"12345"})
    sink = MemSink()
    sink.hold("a", b"1234", RUN_STARTED + 5)
    run = make_run(db, task_id, src, sink, resumed=True)
    await run.run()
    assert sink.writes == ["a"] and sink.data("a") == b"12345"


async def test_not_resumed_ignores_destination_written_after_start(
    db: Database, task_id: int
) -> None:
    src = MemSource({"a": b"12345"})
    sink = MemSink()
    sink.hold("a", b"12345", RUN_STARTED + 5)
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert sink.writes == ["a"]


# -- deleteSource --------------------------------------------------------------


async def test_delete_source_only_verified_and_unchanged_files(db: Database, task_id: int) -> None:
    events: list[str] = []
    src = MemSource(
        {
            "good": b"good",
            "corrupt": b"corrupt",
            "changed": b"changed",
            "missing": b"missing",
            "skipped.tmp": b"not selected",
        }
    )
    src.events = events
    src.read_errors["missing"] = [BlockNotFound("gone")]
    src.stat_override["changed"] = Item("changed", 7, SRC_MTIME + 1)  # touched after listing
    sink = MemSink()
    sink.events = events
    sink.corrupt.add("corrupt")  # the read-back digest never matches
    run = make_run(
        db,
        task_id,
        src,
        sink,
        delete_source=True,
        select=TransferFilter(exclude_ext=("tmp",)),
    )
    await run.run()
    assert src.deleted == ["good"]
    assert events == ["flush", "delete good"]  # flushed before any source goes
    assert sink.data("changed") == b"changed"
    assert src.reads["corrupt"] == ATTEMPTS
    assert sorted(p for p, _ in run.failures) == ["corrupt", "missing"]
    assert "SHA-256" in dict(run.failures)["corrupt"]
    assert "skipped.tmp" not in sink.files
    assert set(src.files) == {"corrupt", "changed", "missing", "skipped.tmp"}


async def test_delete_source_needs_every_destination(db: Database, task_id: int) -> None:
    src = MemSource({"a": b"aaaa", "b": b"bbbb"})
    ok, bad = MemSink(), MemSink()
    bad.put_errors["a"] = [SpaceAuthError("denied")]
    run = make_run(db, task_id, src, ok, bad, delete_source=True)
    await run.run()
    assert src.deleted == ["b"]
    assert ok.data("a") == b"aaaa" and "a" not in bad.files
    assert run.progress.files_total == 4 and run.progress.files_done == 3
    assert run.progress.files_failed == 1


async def test_delete_source_a_failed_delete_is_that_files_failure(
    db: Database, task_id: int
) -> None:
    """A source delete that raised something other than a SpaceError ended
    the run's task group: the task failed with "ExceptionGroup: ..." and
    the deletions after it were dropped (found by review, 2026-12-06)."""
    src = MemSource({"a": b"aaaa", "b": b"bbbb", "c": b"cccc"})
    real_delete = src.delete

    async def delete(rel: str) -> None:
        if rel == "b":
            raise OSError(22, "Invalid argument")
        if rel == "c":
            raise SpaceUnavailable("the disk went away")
        await real_delete(rel)

    src.delete = delete  # type: ignore[method-assign]
    run = make_run(db, task_id, src, MemSink(), delete_source=True)
    await run.run()
    assert src.deleted == ["a"]
    assert run.progress.files_failed == 2
    shown = dict(run.failures)
    assert "not deleted" in shown["b"] and "Invalid argument" in shown["b"]
    assert "not deleted" in shown["c"] and "the disk went away" in shown["c"]
    assert sorted(p for p, _ in await failures(db, task_id)) == ["b", "c"]


async def test_delete_source_source_gone_before_delete(db: Database, task_id: int) -> None:
    src = MemSource({"a": b"aaaa"})
    src.stat_override["a"] = None
    run = make_run(db, task_id, src, MemSink(), delete_source=True)
    await run.run()
    assert src.deleted == []


async def test_delete_source_diff_proves_unchanged_by_hash(db: Database, task_id: int) -> None:
    src = MemSource({"same": b"1234", "other": b"5678"})
    sink = MemSink()
    sink.hold("same", b"1234", SRC_MTIME + 10)
    sink.hold("other", b"0000", SRC_MTIME + 10)  # would be skipped by sizeMtime
    run = make_run(db, task_id, src, sink, mode="diff", delete_source=True)
    await run.run()
    assert sink.writes == ["other"] and sink.data("other") == b"5678"
    assert sorted(src.deleted) == ["other", "same"]
    assert run.progress.files_skipped == 1 and run.progress.files_done == 1


async def test_delete_source_flushes_a_destination_it_only_compared(
    db: Database, task_id: int
) -> None:
    """The destination is flushed before any source file goes (its files
    are written without an fsync each). A diff run that proved every copy
    equal by its bytes wrote nothing there, and skipped the flush: copies an
    earlier run wrote and never flushed (it stopped after 32 failures in a
    row, say) were read from the page cache, "proven", and their sources
    deleted before they were on disk (found by review, 2026-12-07)."""
    events: list[str] = []
    src = MemSource({"a": b"aaaa"})
    src.events = events
    sink = MemSink()
    sink.events = events
    sink.hold("a", b"aaaa", SRC_MTIME + 10)  # left by an earlier run, not flushed
    run = make_run(db, task_id, src, sink, mode="diff", delete_source=True, run_no=2)
    await run.run()
    assert sink.writes == [] and src.deleted == ["a"]
    assert events == ["flush", "delete a"]


async def test_delete_source_resumed_with_verified_record_of_this_run(
    db: Database, task_id: int
) -> None:
    src = MemSource({"a": b"aaaa"})
    sink = MemSink()
    sink.hold("a", b"aaaa", RUN_STARTED + 1)
    await save(db, task_id, (0, "a", FileRecord(4, SRC_MTIME, 1, "done")))
    run = make_run(db, task_id, src, sink, delete_source=True, resumed=True)
    await run.run()
    assert sink.writes == []
    assert src.deleted == ["a"]  # recorded only after it was read back and verified


async def test_delete_source_resumed_never_trusts_an_unverified_destination(
    db: Database, task_id: int
) -> None:
    """A crash after the destination file was written but before it was read
    back and verified (or before its record was saved) leaves a file of the
    right size and a fresh mtime. The resumed run must not delete the source
    on that evidence alone (docs/sync.md: deleted only after every
    destination holds a copy read back and verified by size and SHA-256)."""
    src = MemSource({"a": b"precious"})
    sink = MemSink()
    sink.hold("a", b"garbage!", RUN_STARTED + 5)  # same size, wrong bytes, no record
    run = make_run(db, task_id, src, sink, delete_source=True, resumed=True)
    await run.run()
    # The only good copy of the data must survive somewhere.
    assert src.files.get("a") == b"precious" or sink.data("a") == b"precious"


async def test_streamed_file_of_wrong_size_never_lands(
    db: Database, task_id: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that grew after it was listed fails before the destination
    commits: no file, no temporary file, on a real local destination."""
    from jointcloud.core.transfer.trees import SpaceTree
    from jointcloud.spaces.local import LocalSpace

    monkeypatch.setattr(transfer_mod, "SMALL", 4)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "grew.bin").write_bytes(bytes(64))
    source = SpaceTree(LocalSpace(tmp_path / "src"), "")
    listed = [Item("grew.bin", 40, 1.0)]  # what the listing saw before it grew
    dest_root = tmp_path / "dst"
    dest_root.mkdir()
    sink = SpaceTree(LocalSpace(dest_root, durable=False), "")
    run = TransferRun(db=db, task_id=task_id, run_no=1, source=source, sinks=[sink])
    run.prelisted = listed
    await run.run()
    assert run.progress.files_failed == 1
    assert "listed 40 bytes, read more" in run.failures[0][1]
    assert list(dest_root.rglob("*")) == []


def test_local_errors_another_try_cannot_fix_are_not_retried(tmp_path: Path) -> None:
    """What LocalSpace raises for a path blocked by a file (ENOTDIR) is final;
    a vanished network is not."""
    import errno

    blocked = SpaceUnavailable("local space failed on key 'a/b': Not a directory")
    blocked.__cause__ = NotADirectoryError(errno.ENOTDIR, "Not a directory")
    assert not transient(blocked)
    full = SpaceUnavailable("local space failed: No space left on device")
    full.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert not transient(full)
    reset = SpaceUnavailable("S3 failed: connection reset")
    reset.__cause__ = ConnectionResetError(errno.ECONNRESET, "reset")
    assert transient(reset)
    assert transient(SpaceUnavailable("S3 failed on write: 503 Slow Down"))


async def test_a_destination_that_is_gone_stops_the_run_after_a_few_files(
    db: Database, task_id: int
) -> None:
    """A destination whose cloud is gone failed every file after its
    retries, and the run went on through them all (11 minutes for 2,000
    files in a review's run). After GIVE_UP_AFTER files in a row it stops,
    saying why; what failed is recorded for the next run to resume."""
    files = {f"f{i:04d}": b"x" for i in range(500)}
    src = MemSource(files)
    sink = MemSink()
    for rel in files:
        sink.put_errors[rel] = [SpaceUnavailable("connection refused")] * transfer_mod.ATTEMPTS
    run = make_run(db, task_id, src, sink)
    with pytest.raises(TransferFailed) as stopped:
        await run.run()
    assert "files in a row failed, the last with: connection refused" in stopped.value.message
    tried = sum(src.reads.values())
    assert tried <= (transfer_mod.GIVE_UP_AFTER + transfer_mod.PARALLEL) * transfer_mod.ATTEMPTS
    assert sink.files == {}


async def test_failures_between_successes_do_not_stop_the_run(db: Database, task_id: int) -> None:
    files = {f"f{i:04d}": b"x" for i in range(200)}
    src = MemSource(files)
    sink = MemSink()
    for i, rel in enumerate(sorted(files)):
        if i % 10:  # nine in ten fail, every tenth copies
            sink.put_errors[rel] = [SpaceUnavailable("flaky")] * transfer_mod.ATTEMPTS
    run = make_run(db, task_id, src, sink)
    await run.run()
    assert run.progress.files_failed == 180 and run.progress.files_done == 20


async def test_a_lease_renewal_without_counters_keeps_the_saved_ones(
    db: Database, task_id: int
) -> None:
    """A resumed run counts from zero while it plans; the runner renews its
    lease then without counters (``TransferRun.planned``), and the saved
    ones stay: an e2e run under load saw a resumed sync's progress go back
    to zero for a while."""
    async with db.write() as conn:
        task = await repo.get(conn, task_id)
        assert task is not None
        assert await repo.claim(conn, task, "me", now() + timedelta(seconds=30), now())
        saved = TransferProgress(files_total=10, files_done=4, bytes_total=100, bytes_done=40)
        await repo.renew(conn, task_id, "me", now() + timedelta(seconds=30), saved, None)
        state = await repo.renew(conn, task_id, "me", now() + timedelta(seconds=30), None, None)
        assert state == "running"
        again = await repo.get(conn, task_id)
    assert again is not None and again.progress == saved
    run = make_run(db, task_id, MemSource({"a": b"x"}), MemSink())
    assert not run.planned
    await run.plan()
    assert run.planned
