"""GC drops multipart uploads abandoned past the expiry, and nothing else."""

from __future__ import annotations

from datetime import timedelta

from jcs_helpers import Api

from jointcloud.core.gc import collect_garbage

EXPIRED = timedelta(seconds=-1)  # every unfinished upload counts as abandoned
NOW = timedelta(seconds=-1)  # no safety delay for released blocks


async def gc(api: Api, multipart_expiry: timedelta) -> None:
    await collect_garbage(api.ctx.db, api.ctx.store, NOW, multipart_expiry=multipart_expiry)


async def test_abandoned_upload_to_a_new_path_leaves_nothing(api: Api) -> None:
    pkg = await api.package("mp")
    before = api.all_block_files()
    obj = (await api.post("/v1/object/newMultipartUpload", {"packageID": pkg, "path": "x.bin"}))[
        "object"
    ]
    r = await api.upload_part(obj["objectID"], 0, b"part zero" * 1000)
    assert r.status_code == 200, r.text
    assert len(api.all_block_files()) == len(before) + 1

    await gc(api, timedelta(hours=1))  # not expired yet: kept
    assert len(api.all_block_files()) == len(before) + 1

    await gc(api, EXPIRED)  # placeholder and part dropped; blocks released...
    await gc(api, EXPIRED)  # ...and collected
    assert api.all_block_files() == before
    msg = await api.fail(
        "POST",
        "/v1/object/completeMultipartUpload",
        "DataNotFound",
        404,
        json={"objectID": obj["objectID"], "indexes": [0]},
    )
    assert str(obj["objectID"]) in msg
    # the path is free for a fresh upload
    new = await api.upload_one(pkg, "x.bin", b"fresh")
    assert await api.download(new["objectID"]) == b"fresh"


async def test_abandoned_upload_over_an_existing_object_keeps_the_object(api: Api) -> None:
    pkg = await api.package("mp2")
    obj = await api.upload_one(pkg, "keep.txt", b"old content")
    before = api.all_block_files()
    await api.post("/v1/object/newMultipartUpload", {"packageID": pkg, "path": "keep.txt"})
    assert (await api.upload_part(obj["objectID"], 0, b"never completed")).status_code == 200
    await gc(api, EXPIRED)
    await gc(api, EXPIRED)
    assert api.all_block_files() == before
    assert await api.download(obj["objectID"]) == b"old content"


async def test_an_expiry_of_never_keeps_uploads_without_stopping_gc(api: Api) -> None:
    """``JCS_MULTIPART_EXPIRY_SECONDS=1e11`` (uploads never expire, as a GC
    delay of 1e11 s never collects): now minus that lies before the year 1,
    so every GC pass failed on a date out of range and collected nothing at
    all (found by the time review)."""
    pkg = await api.package("never")
    obj = (await api.post("/v1/object/newMultipartUpload", {"packageID": pkg, "path": "p.bin"}))[
        "object"
    ]
    assert (await api.upload_part(obj["objectID"], 0, b"kept" * 1000)).status_code == 200
    await api.upload_one(pkg, "a", b"x" * 10_000)
    await api.upload_one(pkg, "a", b"y" * 10_000)  # the first version waits for GC
    before = len(api.all_block_files())
    report = await collect_garbage(
        api.ctx.db, api.ctx.store, NOW, multipart_expiry=timedelta(seconds=1e11)
    )
    assert report.uploads == 0 and report.layouts == 1
    assert len(api.all_block_files()) == before - 1  # the part's block is kept
