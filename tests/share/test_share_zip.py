"""?download-kind=zip: a streamed zip of a prefix, read back with zipfile;
the caps (files, bytes) say so when they leave files out; only where the
access may list and read."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
from share_support import World, sent_to_a_client_that_leaves

from jointcloud.api.share import zipstream
from jointcloud.api.share.app import create_app


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return {n: z.read(n) for n in z.namelist()}


@pytest.mark.pg
async def test_zip_of_a_prefix(world: World) -> None:
    files = {
        "set/a.txt": b"alpha",
        "set/sub/b.bin": os.urandom(2 * 1024 * 1024 + 5),
        "set/sub/deeper/c.txt": b"",
        "other/x.txt": b"not in the zip",
    }
    for path, data in files.items():
        await world.put(path, data)
    access = await world.public()
    r = await world.client.get(f"/s/{access}/docs/set/?download-kind=zip")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith('attachment; filename="set.zip"')
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "x-share-zip-truncated" not in r.headers
    assert unzip(r.content) == {
        "a.txt": b"alpha",
        "sub/b.bin": files["set/sub/b.bin"],
        "sub/deeper/c.txt": b"",
    }
    # the same from /raw, and of the whole bucket
    r = await world.client.get(f"/raw/{access}/docs/set/?download-kind=zip")
    assert unzip(r.content)["a.txt"] == b"alpha"
    r = await world.client.get(f"/s/{access}/docs/?download-kind=zip")
    assert r.headers["content-disposition"].startswith('attachment; filename="docs.zip"')
    assert set(unzip(r.content)) == set(files)


async def test_zip_caps_say_so(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        await world.put(f"many/{i}.txt", b"x" * 100)
    access = await world.public()
    monkeypatch.setattr(zipstream, "MAX_FILES", 3)
    r = await world.client.get(f"/s/{access}/docs/many/?download-kind=zip")
    assert r.status_code == 200
    assert r.headers["x-share-zip-truncated"] == "more than 3 files; 3 files in this zip"
    got = unzip(r.content)
    assert sorted(got) == ["0.txt", "1.txt", "2.txt", zipstream.NOTE_NAME]
    assert b"incomplete" in got[zipstream.NOTE_NAME]
    monkeypatch.setattr(zipstream, "MAX_FILES", 100)
    monkeypatch.setattr(zipstream, "MAX_BYTES", 250)
    r = await world.client.get(f"/s/{access}/docs/many/?download-kind=zip")
    assert r.headers["x-share-zip-truncated"] == "more than 250 bytes; 2 files in this zip"
    assert sorted(unzip(r.content)) == ["0.txt", "1.txt", zipstream.NOTE_NAME]


async def test_a_zip_stops_when_its_client_leaves(world: World) -> None:
    """A zip of up to 10 GiB went on being read, decrypted and zipped after
    its client had closed the connection (uvicorn drops such writes
    silently): an anonymous visitor could start one and leave, again and
    again, for nothing (found by review, 2026-12-07)."""
    total = 0
    for i in range(8):
        data = os.urandom(1024 * 1024)
        total += len(data)
        await world.put(f"heavy/{i}.bin", data)
    access = await world.public()
    sent = await sent_to_a_client_that_leaves(
        create_app(world.ctx), f"/s/{access}/docs/heavy/", "download-kind=zip"
    )
    assert 0 < sent < total


async def test_zip_holds_only_what_the_access_reads(world: World) -> None:
    await world.put("mix/open.txt", b"open")
    await world.put("mix/closed.txt", b"closed")
    access = await world.public(world.restricted(paths=["mix/open.txt"]))
    r = await world.client.get(f"/s/{access}/docs/mix/?download-kind=zip")
    assert r.status_code == 200
    assert unzip(r.content) == {"open.txt": b"open"}


def test_entry_names_are_relative_and_safe() -> None:
    # S3 keys are opaque (core/paths.object_key): a zip's names are made safe
    assert zipstream.entry_name("a/b/c", "a/") == "b/c"
    assert zipstream.entry_name("a/", "a/") is None
    assert zipstream.entry_name("a/x/", "a/") is None
    assert zipstream.entry_name("a//./x", "a/") == "_/_/x"
    assert zipstream.entry_name("a/../../etc/passwd", "a/") == "_/_/etc/passwd"
    assert zipstream.entry_name("/etc/passwd", "") == "_/etc/passwd"
    assert zipstream.entry_name("a\\..\\..\\x", "") == "a_.._.._x"
    # controls (an S3 key may hold them): no extractor takes them
    assert zipstream.entry_name("d/clear\x1b[2J\r\n.txt", "d/") == "clear_[2J__.txt"
