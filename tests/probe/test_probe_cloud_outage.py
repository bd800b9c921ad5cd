"""Two of six clouds go away under ec(4,6): one S3 space on a real S3 server
on loopback (stopped by its PID) and one Local space whose directory is
replaced by a regular file (the tests run as root, so permissions would not
stop them). Every object and random ranges of it still read back identical;
an upload that needs six spaces fails with a clear error. Then the S3 server
comes back with its data, the Local space is replaced (a new space, the dead
one drained and deleted), health, drain and repair run once each: every
object has its full redundancy again and fsck is clean."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from jointcloud.api.jcs.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.core.fsck import fsck
from jointcloud.jobs.registry import build_runner
from jointcloud.meta import layouts
from support.s3server import S3Server

EC46 = {"type": "ec", "k": 4, "n": 6, "chunkSize": 16 * 1024}  # 64 KiB segments
SIZES = (1, 65_536, 200_003, 1_000_003, 333_333)


@dataclasses.dataclass
class Store:
    ctx: Context
    api: httpx.AsyncClient
    root: Path

    async def ok(self, method: str, url: str, **kw: Any) -> Any:
        r = await self.api.request(method, url, **kw)
        assert r.status_code == 200, (url, r.status_code, r.text)
        body = r.json()
        assert body["code"] == "OK", body
        return body["data"]

    async def upload(self, package_id: int, path: str, content: bytes) -> httpx.Response:
        return await self.api.post(
            "/v1/object/upload",
            files={
                "info": (None, json.dumps({"packageID": package_id})),
                "files": (path, content, "application/octet-stream"),
            },
        )

    async def read(self, object_id: int, **params: Any) -> bytes:
        r = await self.api.get("/v1/object/download", params={"objectID": object_id, **params})
        assert r.status_code == 200, (object_id, params, r.text)
        return r.content

    async def job(self, name: str) -> str:
        result = await build_runner(self.ctx).run_now(name)
        return result.message


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    ctx = await Context.open(
        Settings(data_dir=tmp_path / "data", local_roots=(tmp_path,), endpoint_allow=("127.0.0.1",))
    )
    key = await ctx.bootstrap()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx, background=False)),
        base_url="http://jcs.test",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as api:
        yield Store(ctx, api, tmp_path)
    await ctx.close()


def _snapshot(s3: S3Server) -> dict[str, bytes]:
    client = s3.client()
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
        for o in page.get("Contents", [])
    ]
    return {k: client.get_object(Bucket=s3.bucket, Key=k)["Body"].read() for k in keys}


def _restore(s3: S3Server, objects: dict[str, bytes]) -> None:
    client = s3.client()
    for key, data in objects.items():
        client.put_object(Bucket=s3.bucket, Key=key, Body=data)


async def test_two_of_six_clouds_down_then_repaired(store: Store) -> None:
    s = store
    s3 = S3Server(bucket="jcs-outage")
    s3.start()
    try:
        await _scenario(s, s3)
    finally:
        s3.stop()


async def _scenario(s: Store, s3: S3Server) -> None:
    spaces: dict[str, int] = {
        sp["name"]: sp["userSpaceID"]
        for sp in (await s.ok("GET", "/v1/userSpace/list"))["userSpaces"]
    }
    for n in range(2, 6):
        data = await s.ok(
            "POST",
            "/v1/userSpace/create",
            json={
                "name": f"local-{n}",
                "storage": {"type": "Local", "path": str(s.root / f"l{n}")},
            },
        )
        spaces[f"local-{n}"] = data["userSpace"]["userSpaceID"]
    data = await s.ok(
        "POST",
        "/v1/userSpace/create",
        json={
            "name": "s3",
            "storage": s3.storage(),
            "credential": s3.credential(),
            "rootPath": "jcs",
        },
    )
    spaces["s3"] = data["userSpace"]["userSpaceID"]
    assert len(spaces) == 6

    bucket = (await s.ok("POST", "/v1/bucket/create", json={"name": "outage"}))["bucket"]
    pkg = (
        await s.ok(
            "POST",
            "/v1/package/create",
            json={"bucketID": bucket["bucketID"], "name": "p", "redundancy": EC46},
        )
    )["package"]["packageID"]
    rng = random.Random(46)
    contents: dict[int, bytes] = {}
    for i, size in enumerate(SIZES):
        content = rng.randbytes(size)
        r = await s.upload(pkg, f"obj-{i}.bin", content)
        assert r.status_code == 200, r.text
        contents[r.json()["data"]["uploadeds"][0]["objectID"]] = content
    assert (await fsck(s.ctx)).clean

    # --- two clouds go away -------------------------------------------------
    saved = _snapshot(s3)
    assert saved, "the S3 space holds blocks"
    s3.stop()
    dead = s.root / "l3"
    dead.rename(s.root / "l3-gone")
    dead.write_bytes(b"this directory is gone")

    for object_id, content in contents.items():
        assert await s.read(object_id) == content
        for _ in range(4):
            offset = rng.randrange(len(content))
            length = rng.randint(1, len(content) - offset)
            got = await s.read(object_id, offset=offset, length=length)
            assert got == content[offset : offset + length], (object_id, offset, length)

    # an upload that needs six spaces: before health notices, the writes fail
    r = await s.upload(pkg, "new.bin", b"x" * 100_000)
    assert r.status_code == 503, r.text
    first_error = r.json()["message"]
    assert "space" in first_error, first_error
    # once health has marked the two spaces Unavailable, placement says why
    health = await s.job("health")
    assert "2 failing" in health, health
    r = await s.upload(pkg, "new.bin", b"x" * 100_000)
    assert r.status_code == 503, r.text
    assert r.json()["message"] == (
        "redundancy ec(4,6) needs 6 usable user spaces, but only 4 of your 6 are available"
    )
    states = {
        sp["name"]: sp["state"] for sp in (await s.ok("GET", "/v1/userSpace/list"))["userSpaces"]
    }
    assert states["s3"] == states["local-3"] == "Unavailable", states
    # still readable with both down and known down
    for object_id, content in contents.items():
        assert await s.read(object_id) == content

    # --- one comes back, the other is replaced --------------------------------
    s3.start()
    _restore(s3, saved)
    data = await s.ok(
        "POST",
        "/v1/userSpace/create",
        json={"name": "local-7", "storage": {"type": "Local", "path": str(s.root / "l7")}},
    )
    spaces["local-7"] = data["userSpace"]["userSpaceID"]
    await s.ok("POST", "/v1/userSpace/drain", json={"userSpaceID": spaces["local-3"]})

    health = await s.job("health")
    drain = await s.job("drain")
    repair = await s.job("repair")
    assert "queue empty" in repair, (health, drain, repair)
    await s.ok("POST", "/v1/userSpace/delete", json={"userSpaceID": spaces["local-3"]})

    # --- full redundancy again ------------------------------------------------
    admin = await s.ctx.accounts.authenticate(s.api.headers["Authorization"].split()[1])
    layout_ids = [
        rec.layout_id
        for oid in contents
        for _, rec in (await s.ctx.objects.open(Principal.user(admin.user_id), oid)).parts
    ]
    async with s.ctx.db.read() as conn:
        records = await layouts.load(conn, layout_ids)
    alive = set(spaces.values()) - {spaces["local-3"]}
    for rec in records.values():
        if rec.inline is not None:
            continue  # a small object lives in the metadata database, on no cloud
        holders = [b.user_space_id for b in rec.blocks]
        assert sorted(b.index for b in rec.blocks) == list(range(6)), rec
        assert len(set(holders)) == 6 and set(holders) <= alive, holders
    s.ctx.settings = dataclasses.replace(s.ctx.settings, gc_delay=timedelta(0))
    report = await fsck(s.ctx, deep=True)
    assert report.clean, (report.summary(), report.findings)
    # Six blocks per stored object; deep fsck authenticates an inline one once.
    inline = sum(1 for n in SIZES if n <= s.ctx.settings.inline_max_bytes)
    assert report.blocks_checked == 6 * (len(SIZES) - inline) + inline
    for object_id, content in contents.items():
        assert await s.read(object_id) == content

    # fsck lists the S3 space too: a stray key there is an orphan, and goes
    s3.client().put_object(Bucket=s3.bucket, Key="jcs/blocks/zz/stray.0", Body=b"stray")
    report = await fsck(s.ctx, repair=True)
    assert [(f.kind, f.space_name, f.key) for f in report.findings] == [
        ("orphan", "s3", "blocks/zz/stray.0")
    ]
    assert report.orphans_deleted == 1
    assert (await fsck(s.ctx)).clean
