"""An S3 user space on a real S3 server on loopback, through the v1 API."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

from jcs_helpers import Api, create_s3_space

from jointcloud.core.authz import Principal
from jointcloud.meta import strays
from support.blackhole import Blackhole
from support.s3server import S3Server, s3_server_fixture

s3_server = s3_server_fixture(scope="module", bucket="jcs-functional")


def _keys(server: S3Server) -> list[str]:
    resp: dict[str, Any] = server.client().list_objects_v2(Bucket=server.bucket)
    return [o["Key"] for o in resp.get("Contents", [])]


async def _s3_space(api: Api, server: S3Server, name: str) -> int:
    space = await create_s3_space(api, server, name)
    assert space["credential"]["secretAccessKey"] == "********"
    assert server.secret_key not in str(space)
    return int(space["userSpaceID"])


async def test_s3_space_test_and_round_trip(api: Api, s3_server: S3Server) -> None:
    name = f"s3-{os.getpid()}-{id(api)}"
    space_id = await _s3_space(api, s3_server, name)
    result = await api.post("/v1/userSpace/test", {"userSpaceID": space_id})
    assert result["ok"] is True and result["latencyMs"] >= 0

    # rep(2): one copy on the local space, one in the S3 bucket.
    pkg = await api.package("s3pkg", {"type": "rep", "repCount": 2})
    content = os.urandom(5 * 1024 * 1024 + 123)
    obj = await api.upload_one(pkg, "dir/big.bin", content, affinity=space_id)
    assert await api.download(obj["objectID"]) == content
    assert (
        await api.download(obj["objectID"], offset=4_000_000, length=2_000_000)
        == (content[4_000_000:6_000_000])
    )

    stored = [k for k in _keys(s3_server) if k.startswith(f"{name}/blocks/")]
    assert len(stored) == 1, stored
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=stored[0])["Body"].read()
    assert content[:4096] not in body  # ciphertext only in the third-party cloud


async def test_s3_space_unreachable_fails_upload_cleanly(api: Api, s3_server: S3Server) -> None:
    space_id = await _s3_space(api, s3_server, f"s3-down-{os.getpid()}-{id(api)}")
    pkg = await api.package("down", {"type": "rep", "repCount": 2})
    before_local = api.all_block_files()
    s3_server.stop()
    try:
        r = await api.upload_raw(
            [
                ("info", None, b'{"packageID": %d, "affinity": %d}' % (pkg, space_id)),
                ("files", "x.bin", os.urandom(1 << 20)),
            ]
        )
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "OperationFailed"
        msg = await api.fail(
            "POST", "/v1/userSpace/test", "OperationFailed", 503, json={"userSpaceID": space_id}
        )
        assert "step 'connect'" in msg or "step 'write'" in msg, msg
    finally:
        s3_server.start()
    assert await api.objects(pkg) == []
    assert api.all_block_files() == before_local  # the local copy was removed too


async def _relayed_space(api: Api, server: S3Server, relay: Blackhole, name: str) -> int:
    """An S3 user space reaching ``server`` through ``relay``; its id."""
    name = f"{name}-{os.getpid()}-{id(api)}"
    storage = {**server.storage(), "endpoint": f"http://127.0.0.1:{relay.port}"}
    space = await api.post(
        "/v1/userSpace/create",
        {"name": name, "storage": storage, "credential": server.credential(), "rootPath": name},
    )
    return int(space["userSpace"]["userSpaceID"])


async def test_a_small_upload_is_placed_again_when_a_cloud_hangs(
    api: Api, s3_server: S3Server
) -> None:
    """A batch of small blocks (in memory) put on a cloud that stopped
    answering waited for the S3 client's limit (60 s) before the space was
    found unreachable and the batch placed again. Now the puts wait their
    patience, then the spaces are checked (5 s at most) while they go on:
    the hung one is marked Unavailable and the batch goes elsewhere."""
    await api.add_spaces(1)
    relay = Blackhole(s3_server.port)
    relay.start()
    try:
        hung = await _relayed_space(api, s3_server, relay, "s3-put-hang")
        pkg = await api.package("put-hang", {"type": "rep", "repCount": 2})
        relay.cut()
        content = os.urandom(100_000)  # above the inline limit, below streaming
        async with asyncio.timeout(25):  # under the client's 30 s
            obj = await api.upload_one(pkg, "x.bin", content, affinity=hung)
        assert await api.download(obj["objectID"]) == content
        assert api.ctx.pool.records[hung].state == "Unavailable"
        user = await api.ctx.accounts.authenticate(api.client.headers["Authorization"].split()[1])
        placed = await api.ctx.objects.open(Principal.user(user.user_id), obj["objectID"])
        [(_, rec)] = placed.parts
        assert hung not in {b.user_space_id for b in rec.blocks}
        # The abandoned batch's blocks are owed, none deleted under a put
        # that may still land: GC deletes them after its delay.
        async with api.ctx.db.read() as conn:
            assert await strays.count(conn) == 2
    finally:
        relay.stop()


async def test_a_streamed_upload_to_a_cloud_that_hangs_fails_in_seconds(
    api: Api, s3_server: S3Server
) -> None:
    """A large upload (streamed: its bytes cannot be sent again) to a cloud
    that stopped answering waited for the S3 client's limits (60 s and
    more) before it failed. Now, once its writes have waited their
    patience, its spaces are checked: the hung one is marked Unavailable
    and the upload fails at once with a 503 that names it, so the client's
    retry goes to the other spaces."""
    await api.add_spaces(1)
    relay = Blackhole(s3_server.port)
    relay.start()
    try:
        hung = await _relayed_space(api, s3_server, relay, "s3-stream-hang")
        pkg = await api.package("stream-hang", {"type": "rep", "repCount": 2})
        relay.cut()
        content = os.urandom(6 << 20)
        info = b'{"packageID": %d, "affinity": %d}' % (pkg, hung)
        async with asyncio.timeout(25):  # under the client's 30 s without a byte
            r = await api.upload_raw([("info", None, info), ("files", "x.bin", content)])
        assert r.status_code == 503, r.text
        assert f"user space {hung} did not answer a write in time" in r.json()["message"]
        assert api.ctx.pool.records[hung].state == "Unavailable"
        assert await api.objects(pkg) == []
        [obj] = await api.upload(pkg, [("x.bin", content)])  # the client's retry
        assert await api.download(obj["objectID"]) == content
    finally:
        relay.stop()


async def test_a_read_does_not_wait_on_a_cloud_that_hangs(api: Api, s3_server: S3Server) -> None:
    """A cloud that stops answering (its packets dropped, nothing refused)
    held a read of a block there for the S3 client's own limits (30 s
    without a byte, 60 s in all) before the other copy was asked. Now the
    read asks the other copy too once it has waited its patience (about 2
    s plus the bytes' time at 2 MB/s) and takes the first answer."""
    relay = Blackhole(s3_server.port)
    relay.start()
    try:
        space_id = await _relayed_space(api, s3_server, relay, "s3-hang")
        pkg = await api.package("hang", {"type": "rep", "repCount": 2})
        content = os.urandom(3 * 1024 * 1024 + 5)
        obj = await api.upload_one(pkg, "x.bin", content, affinity=space_id)
        # The cloud's copy is the one a read asks first (lowest latency).
        for rec in await api.ctx.store.user_spaces(1):
            latency = 1.0 if rec.user_space_id == space_id else 500.0
            api.ctx.pool.note(dataclasses.replace(rec, latency_ms=latency))
        relay.cut()
        async with asyncio.timeout(25):  # under the client's 30 s
            assert await api.download(obj["objectID"]) == content
            part = await api.download(obj["objectID"], offset=1_000_000, length=10)
        assert part == content[1_000_000:1_000_010]
        # The first read asked for a health probe now; the second did not ask again.
        await api.ctx.health.close()
        assert api.ctx.health.wakes == 1
    finally:
        relay.stop()
