"""§3.1–3.3: batch upload, download (offset/length and Range), redundancy
policies as stored on disk, overwrite, all-or-nothing batches, affinity."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from jcs_helpers import (
    MARKER,
    Api,
    assert_object,
    expect_error,
    file_parts,
    info_part,
    multipart,
    text_data,
)

from jointcloud.meta.catalog import FEW_OVERWRITES
from jointcloud.redundancy.stream import REPLICA_SEGMENT

REP2 = {"type": "rep", "repCount": 2}
EC23 = {"type": "ec", "k": 2, "n": 3, "chunkSize": 4096}
EC46 = {"type": "ec", "k": 4, "n": 6, "chunkSize": 4096}
EC23_BIG = {"type": "ec", "k": 2, "n": 3, "chunkSize": 65536}


def saved_name(disposition: str) -> str:
    """The file name a browser saves under (RFC 6266: ``filename*``, an RFC
    8187 value, over ``filename`` when both are given)."""
    params = dict(part.strip().partition("=")[::2] for part in disposition.split(";")[1:])
    extended = params.get("filename*")
    if extended is not None:
        charset, _, rest = extended.partition("'")
        assert charset.upper() == "UTF-8", extended
        return unquote(rest.partition("'")[2], errors="strict")
    return params["filename"]


def blocks_by_layout(api: Api, before: set[Path]) -> dict[str, dict[int, Path]]:
    """New block files since ``before``: layout name -> {space ID: file}; a
    layout never has two blocks in one space."""
    out: dict[str, dict[int, Path]] = {}
    for sid, files in api.block_files().items():
        for f in files:
            if f in before:
                continue
            name = f.name.rsplit(".", 1)[0]
            assert sid not in out.setdefault(name, {}), f"two blocks of {name} in space {sid}"
            out[name][sid] = f
    return out


def ranges_for(size: int, chunk: int, segment: int) -> list[tuple[int, int | None]]:
    picks: list[tuple[int, int | None]] = [
        (0, None),
        (0, 1),
        (1, 10),
        (size - 1, None),
        (size, None),
        (size, 5),
        (100, 0),
        (0, size + 1000),
        (size // 3, size // 3),
    ]
    for edge in (chunk, segment, 2 * segment, 3 * segment):
        if edge < size:
            picks += [(edge - 1, 2), (edge, chunk), (edge - 7, segment + 14)]
    return picks


async def test_upload_download_none_round_trip(api: Api) -> None:
    pid = await api.package("p")
    big = text_data(4 * 1024 * 1024 + 12345)  # several replica segments (1 MiB each)
    files = [
        ("empty", b""),
        ("one", b"x"),
        ("docs/readme.txt", text_data(1000)),
        ("big/data.bin", big),
        ("dir/hello world.txt", b"spaces"),
        ("unicode/文件.txt", "中文内容".encode()),
    ]
    before = set(api.all_block_files())
    ups = await api.upload(pid, files)
    assert len({o["objectID"] for o in ups}) == len(files)
    for o in ups:
        assert o["redundancy"] == {"type": "none"}
    assert ups[0]["size"] == "0"
    assert ups[3]["size"] == str(len(big))

    for o, (path, content) in zip(ups, files, strict=True):
        for url in ("/v1/object/download", "/v1/bucket/download"):
            r = await api.client.get(url, params={"objectID": o["objectID"]})
            assert r.status_code == 200, r.text
            assert r.content == content
            assert r.headers["content-type"] == "application/octet-stream"
            assert r.headers["content-length"] == str(len(content))
        r = await api.client.get(
            "/v1/object/downloadByPath", params={"packageID": pid, "path": path}
        )
        assert r.status_code == 200 and r.content == content
    # ``filename`` URL-escaped as always; RFC 6266's ``filename*`` gives a
    # browser (here the standard library's RFC 2231 reader) the real name.
    for o, escaped, name in (
        (ups[4], "hello%20world.txt", "hello world.txt"),
        (ups[5], "%E6%96%87%E4%BB%B6.txt", "文件.txt"),
    ):
        r = await api.client.get("/v1/object/download", params={"objectID": o["objectID"]})
        disposition = r.headers["content-disposition"]
        assert disposition.startswith(f"attachment; filename={escaped}; filename*="), disposition
        assert saved_name(disposition) == name

    # One block per object, all in the only space, none showing the plaintext.
    layouts = blocks_by_layout(api, before)
    assert len(layouts) == len(files)
    assert all(list(blocks) == [1] for blocks in layouts.values())
    for f in api.all_block_files():
        assert MARKER not in f.read_bytes()
        assert "中文内容".encode() not in f.read_bytes()


async def test_upload_paths_are_url_decoded_and_backslashes_become_slashes(api: Api) -> None:
    pid = await api.package("p")
    r = await api.upload_raw(
        [
            info_part({"packageID": pid}),
            ("files", "a%2Fb%2Ftest2.txt", b"1"),
            ("files", "win\\dir\\f.txt", b"2"),
            ("files", "pct%252F.txt", b"3"),
            ("files", "%E6%96%87.txt", b"4"),
            # Many clients send UTF-8 names without encoding them: taken as they are.
            ("files", "直接/naïve.txt", b"5"),
        ]
    )
    assert r.status_code == 200, r.text
    paths = [o["path"] for o in r.json()["data"]["uploadeds"]]
    assert paths == ["a/b/test2.txt", "win/dir/f.txt", "pct%2F.txt", "文.txt", "直接/naïve.txt"]
    r = await api.client.get(
        "/v1/object/downloadByPath", params={"packageID": pid, "path": "win/dir/f.txt"}
    )
    assert r.content == b"2"


@pytest.mark.parametrize(
    ("policy", "big_size"),
    [
        (REP2, 100_000),
        (EC23, 3 * 8192 + 1000),  # four segments of 2 x 4096
        (EC46, 4 * 16384 + 5),  # five segments of 4 x 4096
        (EC23_BIG, 2 * 131072 + 70000),  # three segments of 2 x 64 KiB
    ],
    ids=["rep2", "ec23", "ec46", "ec23-64k"],
)
async def test_redundant_round_trip_and_placement(
    api: Api, policy: dict[str, Any], big_size: int
) -> None:
    width = policy.get("repCount") or policy["n"]
    needed = 1 if policy["type"] == "rep" else policy["k"]
    await api.add_spaces(width - 1)
    assert len(api.spaces) == width
    pid = await api.package("p", redundancy=policy)
    big = text_data(big_size, seed=7)
    contents = {"zero": b"", "one": b"Z", "big": big}

    layouts: dict[str, dict[str, dict[int, Path]]] = {}
    ups: dict[str, dict[str, Any]] = {}
    for path, content in contents.items():
        before = set(api.all_block_files())
        ups[path] = await api.upload_one(pid, path, content)
        assert ups[path]["redundancy"] == policy
        layouts[path] = blocks_by_layout(api, before)
        assert len(layouts[path]) == 1
        (blocks,) = layouts[path].values()
        # Every block of the object is in its own space: all `width` spaces used.
        assert sorted(blocks) == sorted(api.spaces)
        for f in blocks.values():
            assert f.parent.parent.name == "blocks" and f.parent.parent.parent.name == "jcs"
            assert MARKER not in f.read_bytes()
        assert await api.download(ups[path]["objectID"]) == content

    (big_blocks,) = layouts["big"].values()
    stored = sum(f.stat().st_size for f in big_blocks.values())
    assert stored >= big_size * width // needed  # n/k (or rep) copies' worth
    assert stored < big_size * width / needed * 1.05 + 4096

    chunk = policy.get("chunkSize", REPLICA_SEGMENT)  # rep: segment edges
    segment = chunk * needed if policy["type"] == "ec" else chunk
    oid = ups["big"]["objectID"]
    for offset, length in ranges_for(big_size, chunk, segment):
        params: dict[str, Any] = {"offset": offset}
        if length is not None:
            params["length"] = length
        end = big_size if length is None else offset + length
        assert await api.download(oid, **params) == big[offset:end], (offset, length)

    # Losing as many blocks as the policy tolerates still reads back: block 0 (a
    # data fragment for ec) is corrupted in place, the next ones are deleted...
    by_index = sorted(big_blocks.values(), key=lambda f: int(f.name.rsplit(".", 1)[1]))
    raw = bytearray(by_index[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    by_index[0].write_bytes(bytes(raw))
    for f in by_index[1 : width - needed]:
        f.unlink()
    assert await api.download(oid) == big
    edge = min(segment, big_size // 2)
    assert await api.download(oid, offset=edge - 3, length=10) == big[edge - 3 : edge + 7]
    # ...one more (and the corrupted one gone too, so that not even the first
    # segment can be served) and the answer is a JSON error, not a broken stream.
    by_index[width - needed].unlink()
    by_index[0].unlink()
    r = await api.client.get("/v1/object/download", params={"objectID": oid})
    msg = expect_error(r, "OperationFailed", 503)
    assert "block" in msg
    # The small objects are untouched.
    assert await api.download(ups["one"]["objectID"]) == b"Z"
    assert await api.download(ups["zero"]["objectID"]) == b""


async def test_range_header(api: Api) -> None:
    await api.add_spaces(2)
    pid = await api.package("p", redundancy=EC23)
    data = text_data(30000, seed=3)
    o = await api.upload_one(pid, "r.txt", data)
    size = len(data)
    url = "/v1/object/download"
    params = {"objectID": o["objectID"]}

    cases = [
        ("bytes=0-9", 0, 9),
        ("bytes=8190-8200", 8190, 8200),
        ("bytes=-5", size - 5, size - 1),
        ("bytes=-100000", 0, size - 1),  # suffix longer than the object: all of it
        ("bytes=29000-", 29000, size - 1),
        ("bytes=0-", 0, size - 1),
        ("bytes=100-99999999", 100, size - 1),
        (f"bytes={size - 1}-{size - 1}", size - 1, size - 1),
    ]
    for header, first, last in cases:
        r = await api.client.get(url, params=params, headers={"Range": header})
        assert r.status_code == 206, (header, r.text)
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert r.headers["content-length"] == str(last - first + 1)
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.content == data[first : last + 1], header

    # The same through downloadByPath.
    r = await api.client.get(
        "/v1/object/downloadByPath",
        params={"packageID": pid, "path": "r.txt"},
        headers={"Range": "bytes=-3"},
    )
    assert r.status_code == 206 and r.content == data[-3:]
    assert r.headers["content-range"] == f"bytes {size - 3}-{size - 1}/{size}"

    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        r = await api.client.get(url, params=params, headers={"Range": header})
        assert r.status_code == 416, (header, r.text)
        assert r.headers["content-range"] == f"bytes */{size}"
        assert r.json()["code"] == "BadArgument"

    # Several ranges at once are not supported, and a last byte before the
    # first makes the header invalid (RFC 9110 §14.1.1), even one that starts
    # past the end (416 until 2026-12-07): the whole object, 200.
    for header in ("bytes=0-1,5-6", "bytes=5-2", f"bytes={size + 100}-5"):
        r = await api.client.get(url, params=params, headers={"Range": header})
        assert r.status_code == 200 and r.content == data, (header, r.status_code)
        assert "content-range" not in r.headers
    # Range and offset/length together are ambiguous.
    r = await api.client.get(url, params={**params, "offset": 1}, headers={"Range": "bytes=0-1"})
    expect_error(r, "BadArgument", 400)
    # Without Range: 200 and the whole object, advertising range support.
    r = await api.client.get(url, params=params)
    assert r.status_code == 200 and r.content == data
    assert r.headers["accept-ranges"] == "bytes"

    # An empty object has no satisfiable byte range.
    e = await api.upload_one(pid, "empty", b"")
    for header in ("bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-100"):
        r = await api.client.get(url, params={"objectID": e["objectID"]}, headers={"Range": header})
        assert r.status_code == 416, (header, r.status_code, r.headers)
        assert r.headers["content-range"] == "bytes */0"


async def test_offset_and_length_validation(api: Api) -> None:
    pid = await api.package("p")
    o = await api.upload_one(pid, "f", b"0123456789")
    oid = o["objectID"]
    assert await api.download(oid, offset=3) == b"3456789"
    assert await api.download(oid, offset=3, length=4) == b"3456"
    assert await api.download(oid, offset=8, length=100) == b"89"
    assert await api.download(oid, offset=10) == b""
    assert await api.download(oid, length=2) == b"01"

    for params, word in (
        ({"offset": 11}, "offset"),
        ({"offset": 1000, "length": 1}, "offset"),
        ({"offset": -1}, "offset"),
        ({"length": -1}, "length"),
    ):
        msg = await api.fail(
            "GET", "/v1/object/download", "BadArgument", 400, params={"objectID": oid, **params}
        )
        assert word in msg, msg
        msg = await api.fail(
            "GET",
            "/v1/object/downloadByPath",
            "BadArgument",
            400,
            params={"packageID": pid, "path": "f", **params},
        )
        assert word in msg, msg

    await api.fail("GET", "/v1/object/download", "DataNotFound", 404, params={"objectID": 987654})
    await api.fail("GET", "/v1/bucket/download", "DataNotFound", 404, params={"objectID": 987654})
    await api.fail(
        "GET",
        "/v1/object/downloadByPath",
        "DataNotFound",
        404,
        params={"packageID": pid, "path": "nope"},
    )
    await api.fail(
        "GET",
        "/v1/object/downloadByPath",
        "DataNotFound",
        404,
        params={"packageID": 987654, "path": "f"},
    )


async def test_overwrite_keeps_id_and_create_time(api: Api) -> None:
    pid = await api.package("p")
    first = await api.upload_one(pid, "doc.txt", text_data(5000, seed=1))
    second = await api.upload_one(pid, "doc.txt", b"new content")
    assert second["objectID"] == first["objectID"]
    assert second["createTime"] == first["createTime"]
    assert second["updateTime"] >= first["updateTime"]
    assert second["fileHash"] != first["fileHash"]
    assert second["size"] == "11"
    assert await api.download(first["objectID"]) == b"new content"
    objs = await api.objects(pid)
    assert len(objs) == 1 and objs[0] == second

    # A batch may overwrite too, in the order of its parts.
    ups = await api.upload(pid, [("other", b"o"), ("doc.txt", b"third")])
    assert ups[1]["objectID"] == first["objectID"]
    assert await api.download(first["objectID"]) == b"third"

    # The replaced content's blocks go with garbage collection.
    assert len(api.all_block_files()) == 4
    await api.gc()
    assert len(api.all_block_files()) == 2


@pytest.mark.parametrize("count", [3, FEW_OVERWRITES + 4])
async def test_a_batch_overwrite_of_few_or_many_objects(api: Api, count: int) -> None:
    # A few overwritten paths take one driver statement each, more take IN
    # lists: both keep ids and create times, release the old content, and
    # leave alone a layout a clone still shares.
    pid = await api.package("p")
    names = [f"f{i:02d}" for i in range(count)]
    first = await api.upload(pid, [(n, text_data(5000, seed=i)) for i, n in enumerate(names)])
    await api.post(
        "/v1/object/clone",
        {"clonings": [{"objectID": first[0]["objectID"], "newPackageID": pid, "newPath": "c"}]},
    )
    second = await api.upload(
        pid, [(n, text_data(6000, seed=100 + i)) for i, n in enumerate(names)]
    )
    assert [o["objectID"] for o in second] == [o["objectID"] for o in first]
    assert [o["createTime"] for o in second] == [o["createTime"] for o in first]
    for i, o in enumerate(second):
        assert await api.download(o["objectID"]) == text_data(6000, seed=100 + i)
    assert len(api.all_block_files()) == 2 * count
    report = await api.gc()
    assert report.layouts == count - 1  # the clone keeps the first one's
    assert len(api.all_block_files()) == count + 1
    clone = next(o for o in await api.objects(pid) if o["path"] == "c")
    assert await api.download(clone["objectID"]) == text_data(5000, seed=0)


@pytest.mark.parametrize("bad_index", [0, 1, 2])
async def test_batch_with_one_bad_file_leaves_nothing(api: Api, bad_index: int) -> None:
    await api.add_spaces(1)
    pid = await api.package("p", redundancy=REP2)
    old = await api.upload_one(pid, "keep.txt", b"old")
    blocks_before = sorted(api.all_block_files())
    files = [("new1.txt", text_data(20000)), ("keep.txt", b"replaced"), ("new2.txt", b"2")]
    parts = file_parts(files)
    parts[bad_index] = ("files", "a%2F..%2Fescape.txt", b"evil")
    r = await api.upload_raw([info_part({"packageID": pid}), *parts])
    msg = expect_error(r, "BadArgument", 400)
    assert "filename" in msg and ".." in msg

    assert await api.objects(pid) == [old]
    assert await api.download(old["objectID"]) == b"old"
    assert sorted(api.all_block_files()) == blocks_before
    assert (await api.gc()).layouts == 0


async def test_batch_failures_of_other_kinds_leave_nothing(api: Api) -> None:
    pid = await api.package("p")
    before = api.all_block_files()
    cases = [
        (file_parts([("a", b"1"), ("a", b"2")]), "twice"),
        ([*file_parts([("a", b"1")]), ("other", "x", b"2")], "other"),
        ([*file_parts([("a", b"1")]), ("files", None, b"2")], "filename"),
        ([*file_parts([("a", b"1")]), ("files", "b%00c", b"2")], "NUL"),
        ([*file_parts([("a", b"1")]), ("files", "", b"2")], "filename"),
        ([], "files"),
    ]
    for parts, word in cases:
        r = await api.upload_raw([info_part({"packageID": pid}), *parts])
        msg = expect_error(r, "BadArgument", 400)
        assert word in msg, msg
    assert await api.objects(pid) == []
    assert api.all_block_files() == before
    assert (await api.gc()).layouts == 0


async def test_too_few_spaces_for_the_policy(api: Api) -> None:
    pid = await api.package("p")
    for policy, need in ((REP2, 2), (EC46, 6)):
        r = await api.upload_raw(
            [info_part({"packageID": pid, "redundancy": policy}), *file_parts([("f", b"x")])]
        )
        msg = expect_error(r, "OperationFailed", 503)
        assert f"needs {need}" in msg, msg
    await api.add_spaces(2)
    r = await api.upload_raw(
        [info_part({"packageID": pid, "redundancy": EC46}), *file_parts([("f", b"x")])]
    )
    msg = expect_error(r, "OperationFailed", 503)
    assert "needs 6" in msg and "3" in msg, msg
    assert await api.objects(pid) == []
    assert api.all_block_files() == []
    # Packages whose default cannot be met fail the same way.
    p6 = await api.package("p6", redundancy=EC46)
    r = await api.upload_raw([info_part({"packageID": p6}), *file_parts([("f", b"x")])])
    assert "needs 6" in expect_error(r, "OperationFailed", 503)


async def test_affinity_picks_the_space(api: Api) -> None:
    s2, s3 = await api.add_spaces(2)
    pid = await api.package("p")
    o = await api.upload_one(pid, "pinned", text_data(3000), affinity=s3)
    blocks = api.block_files()
    assert len(blocks[s3]) == 1 and blocks[s2] == [] and blocks[1] == []
    assert await api.download(o["objectID"]) == text_data(3000)

    before = api.block_files()
    o2 = await api.upload_one(pid, "pinned2", b"two", affinity=s2, redundancy=REP2)
    after = api.block_files()
    added = {sid: len(after[sid]) - len(before[sid]) for sid in after}
    assert added[s2] == 1 and sum(added.values()) == 2 and max(added.values()) == 1
    assert await api.download(o2["objectID"]) == b"two"

    r = await api.upload_raw(
        [info_part({"packageID": pid, "affinity": 987654}), *file_parts([("f", b"x")])]
    )
    assert "affinity" in expect_error(r, "BadArgument", 400)


async def test_upload_with_random_binary_content(api: Api) -> None:
    await api.add_spaces(5)
    pid = await api.package("p", redundancy=EC46)
    payloads = [os.urandom(n) for n in (4095, 4096, 4097, 16383, 16384, 16385, 100_001)]
    ups = await api.upload(pid, [(f"f{i}", p) for i, p in enumerate(payloads)])
    for o, p in zip(ups, payloads, strict=True):
        assert await api.download(o["objectID"]) == p
        assert await api.download(o["objectID"], offset=len(p) // 2) == p[len(p) // 2 :]


async def test_concurrent_uploads_to_one_path(api: Api) -> None:
    """Racing writers of one new path all succeed; one object, one of their contents."""
    pid = await api.package("p")
    contents = [b"writer %d " % i * 100 for i in range(8)]
    results = await asyncio.gather(
        *(
            api.upload_raw([info_part({"packageID": pid}), *file_parts([("same", c)])])
            for c in contents
        )
    )
    for r in results:
        assert r.status_code == 200, r.text
    ids = {r.json()["data"]["uploadeds"][0]["objectID"] for r in results}
    assert len(ids) == 1
    objs = await api.objects(pid)
    assert len(objs) == 1 and objs[0]["objectID"] in ids
    assert await api.download(objs[0]["objectID"]) in contents
    # Only the winner's content is kept once garbage is collected.
    await api.gc()
    assert len(api.all_block_files()) == 1

    # The same for starting multipart uploads of one path.
    results = await asyncio.gather(
        *(
            api.client.post("/v1/object/newMultipartUpload", json={"packageID": pid, "path": "mp"})
            for _ in range(8)
        )
    )
    for r in results:
        assert r.status_code == 200, r.text
    assert len({r.json()["data"]["object"]["objectID"] for r in results}) == 1


async def test_a_failing_space_leaves_nothing_behind(api: Api) -> None:
    _, s3 = await api.add_spaces(2)
    # The server has the space open; then its block directory becomes unusable.
    await api.post("/v1/userSpace/test", {"userSpaceID": s3})
    (api.spaces[s3] / "jcs" / "blocks").write_bytes(b"in the way")
    pid = await api.package("p", redundancy=EC23)
    r = await api.upload_raw(
        [info_part({"packageID": pid}), *file_parts([("a", text_data(50000)), ("b", b"x")])]
    )
    msg = expect_error(r, "OperationFailed", 503)
    assert "local space" in msg
    assert await api.objects(pid) == []
    # No block and no half-written temporary file in any space.
    for path in api.spaces.values():
        leftovers = [p for p in (path / "jcs").rglob("*") if p.is_file() and p.name != "blocks"]
        assert leftovers == [], leftovers
    assert (await api.gc()).layouts == 0
    # With the space repaired, the same upload works.
    (api.spaces[s3] / "jcs" / "blocks").unlink()
    ups = await api.upload(pid, [("a", text_data(50000)), ("b", b"x")])
    assert await api.download(ups[0]["objectID"]) == text_data(50000)


@pytest.mark.parametrize("piece", [1, 7, 4093])
async def test_upload_body_arriving_in_small_pieces(api: Api, piece: int) -> None:
    """The streaming form reader gives the same result however the body is cut."""
    pid = await api.package("p")
    files = [
        ("a%2Fb.txt", text_data(3000 if piece == 1 else 70000)),
        ("empty", b""),
        ("z", b"\r\n--"),
    ]
    body, ctype = multipart([info_part({"packageID": pid}), *[("files", n, c) for n, c in files]])

    async def pieces() -> Any:
        for i in range(0, len(body), piece):
            yield body[i : i + piece]

    r = await api.client.post(
        "/v1/object/upload", content=pieces(), headers={"Content-Type": ctype}
    )
    assert r.status_code == 200, r.text
    ups = r.json()["data"]["uploadeds"]
    assert [o["path"] for o in ups] == ["a/b.txt", "empty", "z"]
    for o, (_, content) in zip(ups, files, strict=True):
        assert_object(o, data=content)
        assert await api.download(o["objectID"]) == content
