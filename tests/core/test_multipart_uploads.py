"""Multipart uploads as their own entity: opaque ids, several in flight for
one path, parts replaced, listed and paged, aborted; checksums per part;
uploads addressed only where they were begun, by whom may reach them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import zlib
from typing import Any

import pytest
from core_support import FailingSync, World
from test_multipart_support import (
    SMALL_PARTS,
    at,
    block_files,
    body,
    data,
    gc,
    md5,
    multipart_etag,
    object_at,
    package,
    read_back,
)

from jointcloud.core import multipart as multipart_module
from jointcloud.core.authz import Caveat, Operation, PathGrant
from jointcloud.core.commands import ChecksumAlgorithm, ObjectMeta, PackageRef
from jointcloud.core.multipart import CompletedPart, PartRules
from jointcloud.errors import (
    AccessDenied,
    BadArgument,
    BadDigest,
    ChecksumTypeMismatch,
    EntityTooLarge,
    InvalidPart,
    PackageNotFound,
    PartChecksumMissing,
    UploadNotFound,
)
from jointcloud.meta import uploads as uploads_module
from jointcloud.meta.db import NotDurable


async def test_two_uploads_of_one_path_are_in_flight_at_once(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    first = await ctx.multipart.create(alice, at(pkg, "dir/f.bin"))
    second = await ctx.multipart.create(alice, at(pkg, "dir/f.bin"))
    assert first.upload_id != second.upload_id
    # Opaque: 32 random bytes in hex (never a leading '-', which a command
    # line such as `aws s3api upload-part --upload-id ...` reads as an option).
    for up in (first, second):
        assert re.fullmatch(r"[0-9a-f]{64}", up.upload_id)
        assert up.path == "dir/f.bin" and up.package_id == pkg.package_id
    a, b = data(3000, 1), data(2000, 2)
    # Parts of both arrive at the same time.
    pa, pb = await asyncio.gather(
        ctx.multipart.upload_part(alice, first.upload_id, at(pkg, "dir/f.bin"), 1, body(a)),
        ctx.multipart.upload_part(alice, second.upload_id, at(pkg, "dir/f.bin"), 1, body(b)),
    )
    assert (pa.etag, pa.size) == (md5(a), len(a))
    listed = await ctx.multipart.list_uploads(alice, PackageRef.by_id(pkg.package_id))
    assert sorted(u.upload_id for u in listed.uploads) == sorted(
        [first.upload_id, second.upload_id]
    )
    assert await object_at(ctx, pkg, "dir/f.bin") is None  # nothing visible yet

    done = await ctx.multipart.complete(
        alice, second.upload_id, at(pkg, "dir/f.bin"), [(1, pb.etag, {})]
    )
    assert await read_back(ctx, done) == b
    assert done.etag == multipart_etag(b)
    # The other upload goes on and replaces the object when it completes.
    done = await ctx.multipart.complete(
        alice, first.upload_id, at(pkg, "dir/f.bin"), [CompletedPart(1, f'"{pa.etag}"')]
    )
    assert await read_back(ctx, done) == a
    assert (await ctx.multipart.list_uploads(alice, PackageRef.by_id(pkg.package_id))).uploads == []


async def test_reuploading_a_part_replaces_it(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    where = at(pkg, "f")
    up = await ctx.multipart.create(alice, where)
    old = await ctx.multipart.upload_part(alice, up.upload_id, where, 1, body(data(1500, 1)))
    last = await ctx.multipart.upload_part(alice, up.upload_id, where, 2, body(b"tail"))
    new_bytes = data(2500, 3)
    new = await ctx.multipart.upload_part(alice, up.upload_id, where, 1, body(new_bytes))
    assert new.etag != old.etag
    page = await ctx.multipart.list_parts(alice, up.upload_id, where)
    assert [(p.part_number, p.etag, p.size) for p in page.parts] == [
        (1, new.etag, 2500),
        (2, last.etag, 4),
    ]
    await gc(ctx)  # the replaced part's blocks go; the live parts stay
    assert len(block_files(ctx)) == 2
    with pytest.raises(BadArgument, match="ETag"):
        await ctx.multipart.complete(
            alice, up.upload_id, where, [(1, old.etag, {}), (2, last.etag, {})]
        )
    done = await ctx.multipart.complete(
        alice, up.upload_id, where, [(1, new.etag, {}), (2, last.etag, {})]
    )
    assert await read_back(ctx, done) == new_bytes + b"tail"
    assert done.etag == multipart_etag(new_bytes, b"tail")
    # Completing moved no byte: the object's blocks are the parts' blocks.
    assert len(block_files(ctx)) == 2


async def test_list_parts_in_pages(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    where = at(pkg, "f")
    up = await ctx.multipart.create(alice, where)
    for n in (5, 1, 3, 2, 4):
        await ctx.multipart.upload_part(alice, up.upload_id, where, n, body(bytes([n]) * n))
    seen, marker = [], None
    pages = 0
    while True:
        page = await ctx.multipart.list_parts(alice, up.upload_id, where, marker, max_parts=2)
        pages += 1
        seen += [(p.part_number, p.size) for p in page.parts]
        assert page.upload.upload_id == up.upload_id
        if page.next_marker is None:
            break
        marker = page.next_marker
    assert pages == 3 and seen == [(n, n) for n in range(1, 6)]
    for bad in (0, 1001):
        with pytest.raises(BadArgument, match="max parts"):
            await ctx.multipart.list_parts(alice, up.upload_id, where, max_parts=bad)


async def test_list_uploads_in_pages_and_by_prefix(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    ref = PackageRef.by_name("p", world.project.bucket_id)
    made = []
    for path in ("a/1", "a/2", "a/2", "a/2", "b/1", "a0"):
        made.append(await ctx.multipart.create(alice, at(pkg, path)))
    expected = sorted((u.path, u.upload_id) for u in made)

    everything = await ctx.multipart.list_uploads(alice, ref)
    assert [(u.path, u.upload_id) for u in everything.uploads] == expected
    assert everything.next_key_marker is None and everything.next_upload_id_marker is None

    under_a = [e for e in expected if e[0].startswith("a/")]
    got: list[tuple[str, str]] = []
    key = uid = None
    for _ in range(3):
        page = await ctx.multipart.list_uploads(
            alice, ref, "a/", key_marker=key, upload_id_marker=uid, max_uploads=2
        )
        got += [(u.path, u.upload_id) for u in page.uploads]
        key, uid = page.next_key_marker, page.next_upload_id_marker
        if key is None:
            break
    assert got == under_a  # the page boundary fell among the uploads of a/2
    assert key is None

    # A key marker alone skips every upload of that path.
    page = await ctx.multipart.list_uploads(alice, ref, "a/", key_marker="a/1")
    assert [u.path for u in page.uploads] == ["a/2"] * 3
    assert (await ctx.multipart.list_uploads(alice, ref, "c")).uploads == []
    # A key that reaches only b/ sees only the uploads there.
    narrow = alice.restricted(Caveat(paths=(PathGrant("p", "b/"),)))
    page = await ctx.multipart.list_uploads(narrow, ref)
    assert [u.path for u in page.uploads] == ["b/1"]
    with pytest.raises(BadArgument, match="max uploads"):
        await ctx.multipart.list_uploads(alice, ref, max_uploads=0)


async def test_a_limited_key_lists_uploads_without_reading_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key that reaches two folders of a package of many uploads read
    every upload of the package to list its few (found by review). The
    rows between its folders are skipped unread, as listings skip them;
    its pages, and their markers, are unchanged."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    ref = PackageRef.by_name("p", world.project.bucket_id)
    seen: dict[str, str] = {}
    for path in [f"{d}/{i:02d}" for d in ("a", "c", "e") for i in range(40)] + ["b/1", "d/1"]:
        up = await ctx.multipart.create(alice, at(pkg, path))
        seen[up.upload_id] = path
    up = await ctx.multipart.create(alice, at(pkg, "d/1"))  # two uploads of one path
    seen[up.upload_id] = "d/1"
    expected = sorted((p, u) for u, p in seen.items() if p[0] in "bd")
    rows: list[int] = []
    page_of = uploads_module.page

    async def counted(*args: Any) -> Any:
        found = await page_of(*args)
        rows.append(len(found))
        return found

    monkeypatch.setattr(uploads_module, "page", counted)
    monkeypatch.setattr(multipart_module, "MAX_PAGE", 10)  # rows a query reads
    narrow = alice.restricted(Caveat(paths=(PathGrant("p", "b/"), PathGrant("p", "d/"))))
    listed = await ctx.multipart.list_uploads(narrow, ref, max_uploads=10)
    assert [(u.path, u.upload_id) for u in listed.uploads] == expected
    assert listed.next_key_marker is None
    # One query from b/ on, one from d/ on; every upload (125 rows in 13
    # queries) before.
    assert sum(rows) <= 20, rows

    got: list[tuple[str, str]] = []
    key = uid = None
    for _ in range(5):
        page = await ctx.multipart.list_uploads(
            narrow, ref, key_marker=key, upload_id_marker=uid, max_uploads=1
        )
        got += [(u.path, u.upload_id) for u in page.uploads]
        key, uid = page.next_key_marker, page.next_upload_id_marker
        if key is None:
            break
    assert got == expected and key is None


async def test_abort_ends_the_upload_and_frees_its_parts(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    where = at(pkg, "f")
    before = block_files(ctx)
    up = await ctx.multipart.create(alice, where)
    part = await ctx.multipart.upload_part(alice, up.upload_id, where, 1, body(b"x" * 2000))
    assert len(block_files(ctx)) == len(before) + 1
    await ctx.multipart.abort(alice, up.upload_id, where)
    for attempt in (
        ctx.multipart.upload_part(alice, up.upload_id, where, 2, body(b"y")),
        ctx.multipart.complete(alice, up.upload_id, where, [(1, part.etag, {})]),
        ctx.multipart.list_parts(alice, up.upload_id, where),
        ctx.multipart.abort(alice, up.upload_id, where),
    ):
        with pytest.raises(UploadNotFound):
            await attempt
    assert (await ctx.multipart.list_uploads(alice, PackageRef.by_id(pkg.package_id))).uploads == []
    await gc(ctx)
    assert block_files(ctx) == before
    assert await object_at(ctx, pkg, "f") is None


async def test_an_upload_exists_only_where_it_was_begun(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    other = await package(world, "q")
    up = await ctx.multipart.create(alice, at(pkg, "f"))
    for where, upload_id in (
        (at(pkg, "g"), up.upload_id),  # another path
        (at(other, "f"), up.upload_id),  # another package
        (at(pkg, "f"), "no-such-upload"),
        (at(pkg, "f"), ""),
    ):
        with pytest.raises(UploadNotFound):
            await ctx.multipart.upload_part(alice, upload_id, where, 1, body(b"x"))
        with pytest.raises(UploadNotFound):
            await ctx.multipart.list_parts(alice, upload_id, where)
    assert block_files(ctx) == []
    # Another user cannot reach the package at all.
    with pytest.raises(PackageNotFound):
        await ctx.multipart.upload_part(
            world.bob,
            up.upload_id,
            at(pkg, "f").__class__(PackageRef.by_id(pkg.package_id), "f"),
            1,
            body(b"x"),
        )
    # A key without write, or limited to other paths, is refused before anything.
    read_only = alice.restricted(Caveat(disallow=frozenset({Operation.WRITE})))
    elsewhere = alice.restricted(Caveat(paths=(PathGrant("p", "other/"),)))
    for key in (read_only, elsewhere):
        with pytest.raises(AccessDenied):
            await ctx.multipart.create(key, at(pkg, "f"))
        with pytest.raises(AccessDenied):
            await ctx.multipart.upload_part(key, up.upload_id, at(pkg, "f"), 1, body(b"x"))
        with pytest.raises(AccessDenied):
            await ctx.multipart.complete(key, up.upload_id, at(pkg, "f"), [(1, "x", {})])
        with pytest.raises(AccessDenied):
            await ctx.multipart.abort(key, up.upload_id, at(pkg, "f"))
    assert block_files(ctx) == []


async def test_part_numbers_are_1_to_10000(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    up = await ctx.multipart.create(alice, at(pkg, "f"))
    for n in (0, 10001, -1):
        with pytest.raises(BadArgument, match="part number must be between 1 and 10000"):
            await ctx.multipart.upload_part(alice, up.upload_id, at(pkg, "f"), n, body(b"x"))
    await ctx.multipart.upload_part(alice, up.upload_id, at(pkg, "f"), 10000, body(b"x"))
    assert len(block_files(ctx)) == 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def test_checksums_per_part_and_for_the_object(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    where = at(pkg, "f")
    meta = ObjectMeta(content_type="text/plain", user_metadata={"colour": "blue"}, tags={"k": "v"})
    up = await ctx.multipart.create(alice, where, meta, ChecksumAlgorithm.CRC32)
    assert up.meta == meta and up.checksum_algorithm is ChecksumAlgorithm.CRC32
    one, two = data(1200, 1), data(700, 2)
    crc = [_b64(zlib.crc32(p).to_bytes(4, "big")) for p in (one, two)]
    sha = _b64(hashlib.sha256(one).digest())

    # Values the client sends are verified; a mismatch stores nothing.
    with pytest.raises(BadArgument, match="CRC32"):
        await ctx.multipart.upload_part(
            alice, up.upload_id, where, 1, body(one), checksums={ChecksumAlgorithm.CRC32: sha}
        )
    wrong = _b64(zlib.crc32(b"other").to_bytes(4, "big"))
    with pytest.raises(BadDigest, match="CRC32"):
        await ctx.multipart.upload_part(
            alice, up.upload_id, where, 1, body(one), checksums={ChecksumAlgorithm.CRC32: wrong}
        )
    with pytest.raises(BadDigest, match=r"(?i)md5"):
        await ctx.multipart.upload_part(
            alice,
            up.upload_id,
            where,
            1,
            body(one),
            checksums={ChecksumAlgorithm.CRC32: crc[0]},
            content_md5=md5(two),
        )
    # A part is checked with its upload's algorithm, not another (as S3).
    with pytest.raises(ChecksumTypeMismatch, match="expected checksum Type: crc32"):
        await ctx.multipart.upload_part(
            alice, up.upload_id, where, 1, body(one), checksums={ChecksumAlgorithm.SHA256: sha}
        )
    assert block_files(ctx) == []

    p1 = await ctx.multipart.upload_part(
        alice,
        up.upload_id,
        where,
        1,
        body(one),
        checksums={ChecksumAlgorithm.CRC32: crc[0]},
        content_md5=md5(one),
    )
    assert p1.checksums == {ChecksumAlgorithm.CRC32: crc[0]}
    # A part of a COMPOSITE upload comes with its value (as S3): the
    # object's is made of the parts' values as their client computed them.
    with pytest.raises(ChecksumTypeMismatch, match="actual checksum Type: null"):
        await ctx.multipart.upload_part(alice, up.upload_id, where, 2, body(two))
    p2 = await ctx.multipart.upload_part(
        alice, up.upload_id, where, 2, body(two), checksums={ChecksumAlgorithm.CRC32: crc[1]}
    )
    assert p2.checksums == {ChecksumAlgorithm.CRC32: crc[1]}
    listed = await ctx.multipart.list_parts(alice, up.upload_id, where)
    assert [p.checksums for p in listed.parts] == [p1.checksums, p2.checksums]

    # A completion lists each part's checksum, as the client has it (the
    # object's is made of them); a different one is refused, and so is a
    # completion that leaves one out (as AWS).
    bad = {ChecksumAlgorithm.CRC32: crc[1]}
    with pytest.raises(InvalidPart, match="checksum CRC32"):
        await ctx.multipart.complete(
            alice, up.upload_id, where, [(1, p1.etag, bad), (2, p2.etag, p2.checksums)]
        )
    with pytest.raises(PartChecksumMissing, match="It was missing for part 2 in the request"):
        await ctx.multipart.complete(
            alice, up.upload_id, where, [(1, p1.etag, p1.checksums), (2, p2.etag, {})]
        )
    done = await ctx.multipart.complete(
        alice,
        up.upload_id,
        where,
        [(1, p1.etag, {ChecksumAlgorithm.CRC32: crc[0]}), (2, p2.etag, p2.checksums)],
    )
    composite = zlib.crc32(b"".join(base64.b64decode(c) for c in crc)).to_bytes(4, "big")
    assert done.checksums == {ChecksumAlgorithm.CRC32: f"{_b64(composite)}-2"}
    assert done.meta.content_type == "text/plain"
    assert done.meta.user_metadata == {"colour": "blue"} and done.meta.tags == {"k": "v"}
    again = await object_at(ctx, pkg, "f")
    assert again is not None and again.checksums == done.checksums and again.meta == done.meta


async def test_a_jcs_upload_lives_beside_the_others(world: World) -> None:
    """The JCS three-step upload is an upload linked to an object: beginning
    one again discards only the earlier linked upload of that object."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    s3 = await ctx.multipart.create(alice, at(pkg, "f"))
    await ctx.multipart.upload_part(alice, s3.upload_id, at(pkg, "f"), 1, body(b"s3 part"))
    placeholder = await ctx.multipart.new_linked(alice, at(pkg, "f"))
    await ctx.multipart.upload_part_linked(alice, placeholder.object_id, 0, body(b"jcs part"))
    linked = await ctx.multipart.linked(alice, placeholder.object_id)
    assert linked is not None and linked.object_id == placeholder.object_id
    ref = PackageRef.by_id(pkg.package_id)
    assert len((await ctx.multipart.list_uploads(alice, ref)).uploads) == 2
    again = await ctx.multipart.new_linked(alice, at(pkg, "f"))
    assert again.object_id == placeholder.object_id
    relinked = await ctx.multipart.linked(alice, placeholder.object_id)
    assert relinked is not None and relinked.upload_id != linked.upload_id
    uploads = (await ctx.multipart.list_uploads(alice, ref)).uploads
    assert sorted(u.upload_id for u in uploads) == sorted([s3.upload_id, relinked.upload_id])
    with pytest.raises(BadArgument, match="part 0 was not uploaded"):
        await ctx.multipart.complete_linked(alice, placeholder.object_id, [0])
    await gc(ctx)
    assert len(block_files(ctx)) == 1  # the discarded JCS part went; the S3 part stays
    # JCS part numbers are 0..100000, in any order, without ETags or sizes.
    for n, raw in ((100_000, b"b"), (0, b"a")):
        await ctx.multipart.upload_part_linked(alice, placeholder.object_id, n, body(raw))
    done = await ctx.multipart.complete_linked(alice, placeholder.object_id, [100_000, 0])
    assert done.object_id == placeholder.object_id and await read_back(ctx, done) == b"ba"
    # A second completion (the loser of two racing) hears that there is no
    # upload, not that its parts went missing.
    with pytest.raises(BadArgument, match="no multipart upload in progress"):
        await ctx.multipart.complete_linked(alice, placeholder.object_id, [100_000, 0])
    # Aborting the S3 upload leaves the completed object alone.
    await ctx.multipart.abort(alice, s3.upload_id, at(pkg, "f"))
    assert await object_at(ctx, pkg, "f") == done


async def test_metadata_is_checked_when_the_upload_begins(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    too_many = ObjectMeta(tags={f"k{i}": "v" for i in range(11)})
    with pytest.raises(BadArgument, match="tags"):
        await ctx.multipart.create(alice, at(pkg, "f"), too_many)
    with pytest.raises(BadArgument, match="user metadata"):
        await ctx.multipart.create(alice, at(pkg, "f"), ObjectMeta(user_metadata={"a": "x" * 3000}))
    assert (await ctx.multipart.list_uploads(alice, PackageRef.by_id(pkg.package_id))).uploads == []
    up = await ctx.multipart.create(
        alice, at(pkg, "f"), ObjectMeta(user_metadata={"Colour": "red"})
    )
    assert up.meta.user_metadata == {"colour": "red"}


async def test_crc64nvme_of_parts_and_object(world: World) -> None:
    crt = pytest.importorskip("awscrt.checksums")
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    where = at(pkg, "f")
    up = await ctx.multipart.create(
        alice, where, checksum_algorithm=ChecksumAlgorithm.CRC64NVME, full_object=True
    )
    raw = [data(SMALL_PARTS, 1), data(10, 2)]
    # A FULL_OBJECT upload computes a part's value when it comes without.
    parts = [
        await ctx.multipart.upload_part(alice, up.upload_id, where, n, body(r))
        for n, r in enumerate(raw, 1)
    ]
    values = [_b64(crt.crc64nvme(r).to_bytes(8, "big")) for r in raw]
    assert [p.checksums[ChecksumAlgorithm.CRC64NVME] for p in parts] == values
    done = await ctx.multipart.complete(
        alice, up.upload_id, where, [(p.part_number, p.etag, {}) for p in parts]
    )
    expected = _b64(crt.crc64nvme(b"".join(raw)).to_bytes(8, "big"))
    assert done.checksums == {ChecksumAlgorithm.CRC64NVME: expected}


async def test_a_part_too_large_stores_nothing(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    up = await ctx.multipart.create(alice, at(pkg, "f"))
    rules = PartRules(max_part_size=5000)
    with pytest.raises(EntityTooLarge, match="at most 5000 bytes"):
        await ctx.multipart.upload_part(
            alice, up.upload_id, at(pkg, "f"), 1, body(data(3000), data(3000)), rules=rules
        )
    assert block_files(ctx) == []
    assert (await ctx.multipart.list_parts(alice, up.upload_id, at(pkg, "f"))).parts == []


async def test_a_part_whose_commit_is_not_synced_keeps_its_blocks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync of a part's commit fails: the part is not acknowledged
    (``NotDurable``), but it was recorded, so its blocks stay and the
    upload completes with it (they were discarded under the recorded part)."""
    ctx, alice = world.ctx, world.alice
    if not ctx.db.is_sqlite:
        pytest.skip("PostgreSQL syncs its own commits: there is no sync of ours to fail")
    pkg = await package(world, "p")
    up = await ctx.multipart.create(alice, at(pkg, "f.bin"))
    part = data(300_000, 3)  # blocks in spaces, not inline
    sync, real_put_part = FailingSync(monkeypatch), uploads_module.put_part

    async def put_part(*args: Any, **kwargs: Any) -> Any:
        sync.arm()  # the part's commit
        return await real_put_part(*args, **kwargs)

    monkeypatch.setattr(uploads_module, "put_part", put_part)
    with pytest.raises(NotDurable):
        await ctx.multipart.upload_part(alice, up.upload_id, at(pkg, "f.bin"), 1, body(part))
    monkeypatch.undo()
    done = await ctx.multipart.complete(alice, up.upload_id, at(pkg, "f.bin"), [(1, md5(part), {})])
    assert await read_back(ctx, done) == part
