"""One behavioural contract, run against every space backend (memory, local, S3 via OpenDAL).

Each test states what a caller of the ``Space`` protocol relies on.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from jointcloud.errors import BadArgument, BlockNotFound, SpaceRefused, SpaceUnavailable
from jointcloud.spaces.base import BlockingSpace, BlockWriter, CachedReads, Entry, Space
from jointcloud.spaces.local import SYNCFS_AT, LocalSpace
from jointcloud.spaces.registry import open_space
from jointcloud.spaces.rules import SpaceRules
from support.hotreads import require_loop_reads
from support.s3server import S3Server

RULES = SpaceRules.unrestricted()  # these tests exercise backends, not operator rules

MiB = 1 << 20
MakeSpace = Callable[..., Space]


async def listed(space: Space, prefix: str = "") -> dict[str, Entry]:
    return {e.key: e async for e in space.list(prefix)}


async def streamed(space: Space, key: str, **kw: int | None) -> list[bytes]:
    return [chunk async for chunk in space.read_stream(key, **kw)]


async def test_put_then_read_returns_the_same_bytes(space: Space) -> None:
    data = os.urandom(100_000)
    await space.put("a/b.bin", data)
    assert await space.read("a/b.bin") == data
    assert b"".join(await streamed(space, "a/b.bin")) == data


async def test_streaming_writer_many_chunks_round_trip(space: Space) -> None:
    writer = await space.open_writer("big/blob")
    assert isinstance(writer, BlockWriter)
    sent = hashlib.sha256()
    for _ in range(20):
        chunk = os.urandom(MiB)
        sent.update(chunk)
        await writer.write(chunk)
    await writer.commit()

    assert (await space.stat("big/blob")).size == 20 * MiB
    assert hashlib.sha256(await space.read("big/blob")).hexdigest() == sent.hexdigest()
    got = hashlib.sha256()
    chunks = await streamed(space, "big/blob", chunk=3 * MiB)
    for chunk in chunks:
        assert 0 < len(chunk) <= 3 * MiB
        got.update(chunk)
    assert got.hexdigest() == sent.hexdigest()


async def test_small_writes_are_kept_in_order(space: Space) -> None:
    writer = await space.open_writer("small")
    parts = [bytes([i]) * (i + 1) for i in range(200)]
    for p in parts:
        await writer.write(p)
    await writer.commit()
    assert await space.read("small") == b"".join(parts)


async def test_nothing_is_visible_before_commit(space: Space) -> None:
    writer = await space.open_writer("pending/key")
    await writer.write(os.urandom(6 * MiB))
    with pytest.raises(BlockNotFound):
        await space.stat("pending/key")
    with pytest.raises(BlockNotFound):
        await space.read("pending/key")
    assert "pending/key" not in await listed(space)
    await writer.commit()
    assert (await space.stat("pending/key")).size == 6 * MiB


async def test_abort_leaves_nothing(space: Space) -> None:
    writer = await space.open_writer("aborted/key")
    for _ in range(3):
        await writer.write(os.urandom(4 * MiB))  # enough to start a multipart upload
    await writer.abort()
    await writer.abort()  # idempotent
    with pytest.raises(BlockNotFound):
        await space.read("aborted/key")
    with pytest.raises(BlockNotFound):
        await space.stat("aborted/key")
    assert await listed(space) == {}


async def test_abort_keeps_the_previous_version(space: Space) -> None:
    await space.put("k", b"old contents")
    writer = await space.open_writer("k")
    await writer.write(b"new contents that must never appear")
    await writer.abort()
    assert await space.read("k") == b"old contents"


async def test_empty_object(space: Space) -> None:
    await space.put("empty", b"")
    assert await space.read("empty") == b""
    assert await space.read("empty", 0, 10) == b""
    assert (await space.stat("empty")).size == 0
    assert await streamed(space, "empty") == []
    writer = await space.open_writer("empty-too")
    await writer.commit()
    assert (await space.stat("empty-too")).size == 0


async def test_ranged_reads(space: Space) -> None:
    data = bytes(range(256)) * 40
    n = len(data)
    await space.put("r", data)
    assert await space.read("r", 0, 10) == data[:10]
    assert await space.read("r", 1000, 500) == data[1000:1500]
    assert await space.read("r", n - 10, 10) == data[-10:]
    assert await space.read("r", 7) == data[7:]
    assert await space.read("r", n - 5, 100) == data[-5:]  # past the end: short
    assert await space.read("r", n, 10) == b""  # at the end: empty
    assert await space.read("r", n) == b""
    assert await space.read("r", n + 100, 10) == b""
    assert await space.read("r", 3, 0) == b""
    chunks = await streamed(space, "r", offset=100, length=5000, chunk=1000)
    assert b"".join(chunks) == data[100:5100]
    assert all(len(c) <= 1000 for c in chunks)
    assert b"".join(await streamed(space, "r", offset=n - 3, length=50)) == data[-3:]
    assert await streamed(space, "r", offset=n) == []
    with pytest.raises(BadArgument):
        await space.read("r", -1, 5)
    if isinstance(space, BlockingSpace):  # the same answers from the caller's thread
        for offset, length in [(0, 10), (1000, 500), (7, None), (n - 5, 100), (n, 10), (3, 0)]:
            expected = await space.read("r", offset, length)
            assert space.read_blocking("r", offset, length) == expected
        assert space.read_blocking("r") == data
        with pytest.raises(BadArgument):
            space.read_blocking("r", -1, 5)
    if isinstance(space, CachedReads):  # served exactly or not at all
        for offset, length in [(0, 10), (1000, 500), (n - 10, 10), (0, n)]:
            assert space.read_cached("r", offset, length) in (None, data[offset : offset + length])
        assert space.read_cached("r", n - 5, 100) is None  # past the end: not all of it
        assert space.read_cached("r", n + 100, 10) is None
        assert space.read_cached("r", -1, 10) is None


async def test_missing_key_is_block_not_found(space: Space) -> None:
    with pytest.raises(BlockNotFound):
        await space.read("no/such/key")
    with pytest.raises(BlockNotFound):
        await space.read("no/such/key", 10, 10)
    if isinstance(space, BlockingSpace):
        with pytest.raises(BlockNotFound):
            space.read_blocking("no/such/key", 10, 10)
    if isinstance(space, CachedReads):  # the read as usual then names the error
        assert space.read_cached("no/such/key", 0, 10) is None
        assert space.read_cached("../escape", 0, 10) is None
    with pytest.raises(BlockNotFound):
        await space.stat("no/such/key")
    with pytest.raises(BlockNotFound):
        await streamed(space, "no/such/key")


async def test_stat_reports_size_and_mtime(space: Space) -> None:
    before = time.time()
    await space.put("dir/s", b"x" * 12345)
    entry = await space.stat("dir/s")
    assert entry.key == "dir/s"
    assert entry.size == 12345
    assert before - 5 <= entry.mtime <= time.time() + 5


async def test_delete_is_idempotent(space: Space) -> None:
    await space.put("d/k", b"data")
    await space.delete("d/k")
    with pytest.raises(BlockNotFound):
        await space.read("d/k")
    await space.delete("d/k")
    await space.delete("never/existed")
    assert await listed(space) == {}


async def test_list_is_recursive_under_a_directory_prefix(space: Space) -> None:
    files = {
        "p/a": b"1",
        "p/sub/b": b"22",
        "p/sub/deeper/c": b"333",
        "pp/e": b"4444",
        "q/d": b"55555",
    }
    for key, data in files.items():
        await space.put(key, data)

    every = await listed(space)
    assert {k: e.size for k, e in every.items()} == {k: len(v) for k, v in files.items()}
    assert set(await listed(space, "p")) == {"p/a", "p/sub/b", "p/sub/deeper/c"}
    assert set(await listed(space, "p/")) == {"p/a", "p/sub/b", "p/sub/deeper/c"}
    sub = await listed(space, "p/sub")
    assert {k: e.size for k, e in sub.items()} == {"p/sub/b": 2, "p/sub/deeper/c": 3}
    assert await listed(space, "nothing-here") == {}


async def test_overwrite_replaces(space: Space) -> None:
    await space.put("o", b"old" * 1000)
    await space.put("o", b"new")
    assert await space.read("o") == b"new"
    assert (await space.stat("o")).size == 3
    writer = await space.open_writer("o")
    await writer.write(b"newer")
    await writer.commit()
    assert await space.read("o") == b"newer"
    assert list(await listed(space)) == ["o"]


@pytest.mark.parametrize(
    "key", ["dir with space/文件 ü.bin", "emoji/😀 x+y=z&%20.txt", "a b/c  d", "Ünïcödé"]
)
async def test_unicode_and_space_keys(space: Space, key: str) -> None:
    await space.put(key, key.encode())
    assert await space.read(key) == key.encode()
    assert (await space.stat(key)).size == len(key.encode())
    assert set(await listed(space)) == {key}
    await space.delete(key)
    assert await listed(space) == {}


BAD_KEYS = ["../escape", "a/../../b", "/absolute", "a\x00b", "", "a//b", "a/./b", "..", "a\\b"]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_rejected(space: Space, key: str) -> None:
    with pytest.raises(BadArgument):
        await space.put(key, b"x")
    with pytest.raises(BadArgument):
        await space.open_writer(key)
    with pytest.raises(BadArgument):
        await space.read(key)
    with pytest.raises(BadArgument):
        await streamed(space, key)
    with pytest.raises(BadArgument):
        await space.stat(key)
    with pytest.raises(BadArgument):
        await space.delete(key)


async def test_bad_list_prefix_is_rejected(space: Space) -> None:
    with pytest.raises(BadArgument):
        await listed(space, "../up")


async def test_unreachable_space_raises_space_unavailable(dead_space: Space) -> None:
    with pytest.raises(SpaceUnavailable):
        await dead_space.put("k", b"data")
    with pytest.raises(SpaceUnavailable):
        writer = await dead_space.open_writer("k")
        await writer.write(b"data")
        await writer.commit()  # remote backends may only notice here
    with pytest.raises(SpaceUnavailable):
        await dead_space.read("k")
    with pytest.raises(SpaceUnavailable):
        await streamed(dead_space, "k")
    with pytest.raises(SpaceUnavailable):
        await dead_space.stat("k")
    with pytest.raises(SpaceUnavailable):
        await dead_space.delete("k")
    with pytest.raises(SpaceUnavailable):
        await listed(dead_space)


async def test_root_paths_isolate_spaces_in_one_storage(make_space: MakeSpace) -> None:
    one, two, whole = make_space("one"), make_space("two"), make_space()
    await one.put("k", b"from one")
    await two.put("k", b"from two")
    await one.put("only/in/one", b"1")

    assert await one.read("k") == b"from one"
    assert await two.read("k") == b"from two"
    assert set(await listed(one)) == {"k", "only/in/one"}
    assert set(await listed(two)) == {"k"}
    with pytest.raises(BlockNotFound):
        await two.read("only/in/one")
    # the storage itself sees both, each under its root path
    assert set(await listed(whole)) == {"one/k", "one/only/in/one", "two/k"}
    assert await whole.read("two/k") == b"from two"

    await one.delete("k")
    assert await two.read("k") == b"from two"


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_local_abort_and_commit_leave_no_temp_files(tmp_path: Path) -> None:
    storage = {"type": "Local", "path": str(tmp_path)}
    space = open_space(storage, None, "sp", rules=RULES, create=True)
    writer = await space.open_writer("x/y")
    await writer.write(b"a" * (2 * MiB))
    assert any(Path(f).name.startswith(".jcs-tmp-") for f in files_under(tmp_path))
    assert await listed(space) == {}  # temp files are never listed
    await writer.abort()
    writer = await space.open_writer("x/z")
    await writer.write(b"b" * 10)
    await writer.commit()
    assert files_under(tmp_path) == ["sp/x/z"]
    assert (tmp_path / "sp/x/z").read_bytes() == b"b" * 10


async def test_sweep_keeps_committed_keys_and_fresh_writes(space: Space) -> None:
    await space.put("keep/a", b"committed")
    writer = await space.open_writer("keep/b")
    await writer.write(b"in flight")
    assert await space.sweep_incomplete(time.time() - 3600) == 0  # too young to go
    await writer.commit()
    assert await space.read("keep/a") == b"committed"
    assert await space.read("keep/b") == b"in flight"


async def test_a_write_kept_alive_survives_the_sweep(space: Space) -> None:
    """A writer that waits on a slow client longer than the sweep's delay
    is kept by ``keep_alive``; one that is not is swept (where a backend
    leaves anything to sweep)."""
    slow = await space.open_writer("alive/slow")
    await slow.write(b"a" * (2 * MiB))
    gone = await space.open_writer("alive/gone")
    await gone.write(b"b" * (2 * MiB))
    cutoff = time.time()
    await space.keep_alive("alive/slow")
    await space.keep_alive("alive/never-opened")  # nothing to keep: no error
    # "gone" where unfinished writes leave files (a local space's temporary
    # files); remote backends leave nothing to sweep.
    assert await space.sweep_incomplete(cutoff) == (1 if isinstance(space, LocalSpace) else 0)
    await slow.write(b"a")
    await slow.commit()
    assert await space.read("alive/slow") == b"a" * (2 * MiB) + b"a"
    await gone.abort()


async def test_local_sweep_removes_what_a_crashed_writer_left(tmp_path: Path) -> None:
    storage = {"type": "Local", "path": str(tmp_path)}
    space = open_space(storage, None, "sp", rules=RULES, create=True)
    await space.put("done", b"ok")
    writer = await space.open_writer("x/lost")
    await writer.write(b"a" * (2 * MiB))  # the process "dies" here: no commit, no abort
    leftovers = [f for f in files_under(tmp_path) if Path(f).name.startswith(".jcs-tmp-")]
    assert len(leftovers) == 1
    assert await space.sweep_incomplete(time.time() + 1) == 1
    assert files_under(tmp_path) == ["sp/done"]
    assert await space.read("done") == b"ok"


async def test_s3_outage_is_unavailable_then_recovers() -> None:
    """A stopped S3 endpoint is a SpaceUnavailable (not a missing block); restart heals."""
    with S3Server() as server:
        space = open_space(
            server.storage(), server.credential(), f"t-{uuid.uuid4().hex}", rules=RULES
        )
        await space.put("k", b"before")
        server.stop()
        with pytest.raises(SpaceUnavailable):
            await space.read("k")
        with pytest.raises(SpaceUnavailable):
            await space.put("k2", b"during")
        server.start()  # same port; moto keeps no data across restarts
        with pytest.raises(BlockNotFound):
            await space.read("k")
        await space.put("k", b"after")
        assert await space.read("k") == b"after"


async def test_flush_keeps_every_committed_write(space: Space) -> None:
    """``flush`` (what a transfer task calls before it reports success) keeps
    what was committed, and nothing uncommitted becomes visible."""
    await space.put("flushed/a", b"first")
    writer = await space.open_writer("flushed/b")
    await writer.write(b"second")
    await writer.commit()
    pending = await space.open_writer("flushed/c")
    await pending.write(b"never committed")
    await space.flush()
    assert await space.read("flushed/a") == b"first"
    assert await space.read("flushed/b") == b"second"
    assert sorted(e.key for e in [e async for e in space.list("flushed")]) == [
        "flushed/a",
        "flushed/b",
    ]
    await pending.abort()


async def test_local_sweep_stays_inside_prefix_and_out_of_skipped_dirs(tmp_path: Path) -> None:
    """A resumed transfer sweeps only its destination directory, never the
    block area beside it, where live uploads have temporary files."""
    space = open_space(
        {"type": "Local", "path": str(tmp_path)}, None, "", durable=False, rules=RULES
    )
    lost = await space.open_writer("dest/sub/lost")
    await lost.write(b"x" * 10)
    elsewhere = await space.open_writer("other/file")
    await elsewhere.write(b"y" * 10)
    block = await space.open_writer("dest/jcs/blocks/ab/block.0")
    await block.write(b"z" * 10)
    assert await space.sweep_incomplete(time.time() + 1, "dest", ("dest/jcs",)) == 1
    leftovers = sorted(
        str(Path(f).parent) for f in files_under(tmp_path) if Path(f).name.startswith(".jcs-tmp-")
    )
    assert leftovers == ["dest/jcs/blocks/ab", "other"]
    await block.commit()
    assert await space.read("dest/jcs/blocks/ab/block.0") == b"z" * 10


async def test_local_reads_refuse_links_out_of_the_root(tmp_path: Path) -> None:
    """Whether the key's file or one of its directories is the link, every
    way of reading refuses it, naming the link; a link that stays inside
    the root is read."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_bytes(b"not yours")
    (outside / "dir" / "secret").write_bytes(b"not yours either")
    root = tmp_path / "space"
    root.mkdir()
    space = LocalSpace(root)
    await space.put("blocks/aa/real", b"inside")
    (root / "blocks" / "aa" / "file-link").symlink_to(outside / "secret")
    (root / "blocks" / "dir-link").symlink_to(outside / "dir")
    (root / "blocks" / "inner").symlink_to(root / "blocks" / "aa")
    for key in ("blocks/aa/file-link", "blocks/dir-link/secret"):
        with pytest.raises(SpaceRefused, match="symbolic link"):
            await space.read(key)
        with pytest.raises(SpaceRefused, match="symbolic link"):
            space.read_blocking(key, 0, 4)
        with pytest.raises(SpaceRefused, match="symbolic link"):
            await streamed(space, key)
    assert await space.read("blocks/inner/real") == b"inside"
    assert space.read_blocking("blocks/inner/real", 1, 3) == b"nsi"


def _read_fifo(fifo: Path, read: Callable[[], object]) -> object:
    """What ``read`` of the FIFO ``fifo`` returns or raises, failing the
    test if it waits for a writer (after releasing it, by being one)."""
    got: list[object] = []

    def run() -> None:
        try:
            got.append(read())
        except BaseException as exc:
            got.append(exc)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(10)  # a bound on a hang, not a wait for something to happen
    stuck = reader.is_alive()
    if stuck:  # waiting in open() for a writer: be one, so it ends, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    assert not stuck
    assert len(got) == 1
    return got[0]


async def test_local_read_of_a_fifo_fails_at_once(tmp_path: Path) -> None:
    """A FIFO where a block belongs fails its read instead of holding a
    worker thread until some writer opens it."""
    space = LocalSpace(tmp_path)
    (tmp_path / "blocks").mkdir()
    fifo = tmp_path / "blocks" / "fifo"
    os.mkfifo(fifo)
    got = _read_fifo(fifo, lambda: space.read_blocking("blocks/fifo", 0, 10))
    assert isinstance(got, SpaceUnavailable)
    assert "blocks/fifo" in str(got)
    with pytest.raises(BlockNotFound):  # as stat says: not a regular file
        await streamed(space, "blocks/fifo")


async def test_local_read_cached_serves_recent_keys_and_refuses_what_read_refuses(
    tmp_path: Path,
) -> None:
    """Keys written lately are served from memory, exactly; once a key's
    file is swapped for a link out of the root, a directory or a FIFO,
    nothing is served (and the FIFO's open does not wait for a writer,
    which would hold the event loop)."""
    require_loop_reads(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not yours")
    root = tmp_path / "space"
    root.mkdir()
    space = LocalSpace(root)
    data = os.urandom(10_000)
    for key in ("blocks/aa/link", "blocks/aa/dir", "blocks/aa/fifo", "blocks/aa/real"):
        await space.put(key, data)
        assert space.read_cached(key, 0, len(data)) == data
        assert space.read_cached(key, 100, 50) == data[100:150]
    files = root / "blocks" / "aa"
    (files / "link").unlink()
    (files / "link").symlink_to(outside / "secret")
    (files / "dir").unlink()
    (files / "dir").mkdir()
    (files / "fifo").unlink()
    os.mkfifo(files / "fifo")
    assert space.read_cached("blocks/aa/link", 0, 9) is None
    with pytest.raises(SpaceRefused, match="symbolic link"):
        space.read_blocking("blocks/aa/link", 0, 9)
    assert space.read_cached("blocks/aa/dir", 0, 10) is None
    assert _read_fifo(files / "fifo", lambda: space.read_cached("blocks/aa/fifo", 0, 10)) is None
    # None of these turned the fast path off for the space's other keys.
    assert space.read_cached("blocks/aa/real", 0, len(data)) == data
    await space.delete("blocks/aa/real")
    await space.put("blocks/aa/real", data[:10])
    assert space.read_cached("blocks/aa/real", 0, 10) == data[:10]


async def test_local_read_cached_tries_only_keys_touched_lately(tmp_path: Path) -> None:
    """A space opened over blocks it did not write does not try them on the
    caller's thread (they may be cold: even the open could wait) until it
    has read them once."""
    require_loop_reads(tmp_path)
    await LocalSpace(tmp_path).put("blocks/bb/k", b"x" * 4096)
    fresh = LocalSpace(tmp_path)
    await fresh.put("blocks/bb/other", b"o")  # reads on the loop are on for this space now
    assert fresh.read_cached("blocks/bb/other", 0, 1) == b"o"
    assert fresh.read_cached("blocks/bb/k", 0, 4096) is None  # in memory, not touched lately
    assert await fresh.read("blocks/bb/k") == b"x" * 4096
    assert fresh.read_cached("blocks/bb/k", 0, 4096) == b"x" * 4096
    await fresh.delete("blocks/bb/k")
    assert "blocks/bb/k" not in fresh._recent
    assert fresh.read_cached("blocks/bb/k", 0, 4096) is None
    # a batch's keys (put_many) and a streamed write's are recent too
    batch = [(f"blocks/cc/{i}", bytes([i]) * 100) for i in range(SYNCFS_AT + 2)]
    await fresh.put_many(batch)
    writer = await fresh.open_writer("blocks/dd/w")
    await writer.write(b"w" * 5000)
    await writer.commit()
    for key, data in [*batch, ("blocks/dd/w", b"w" * 5000)]:
        assert fresh.read_cached(key, 0, len(data)) == data
    tree = LocalSpace(tmp_path, durable=False)  # a user file tree: never tried
    await tree.put("files/t", b"t" * 10)
    assert tree.read_cached("files/t", 0, 10) is None
