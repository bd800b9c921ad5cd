"""A cloud that lies (``tests/support/liar.py``, an HTTP relay in front of a
real S3 server) under one block of each object: reads serve the written
bytes, and scrub, repair, health and drain see the lie for what it is
rather than trusting it or shrugging it off as an outage."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import pytest
from jcs_helpers import Api

from jointcloud.core.fsck import fsck
from jointcloud.core.repair import OK, check_block
from jointcloud.jobs.registry import build_runner
from jointcloud.jobs.scrub import ScrubResult
from jointcloud.meta import layouts
from jointcloud.redundancy.stream import BlockRef
from support.liar import Exchange, LyingRelay
from support.s3server import S3Server, s3_server_fixture

s3_server = s3_server_fixture(scope="module", bucket="jcs-liar")

POLICIES = {
    "rep2": {"type": "rep", "repCount": 2},
    "rep3": {"type": "rep", "repCount": 3},
    "ec23": {"type": "ec", "k": 2, "n": 3, "chunkSize": 16384},
    "ec35": {"type": "ec", "k": 3, "n": 5, "chunkSize": 16384},
}


@pytest.fixture
def relay(s3_server: S3Server) -> Iterator[LyingRelay]:
    r = LyingRelay(s3_server.port)
    r.start()
    try:
        yield r
    finally:
        r.stop()


async def liar_space(api: Api, server: S3Server, relay: LyingRelay) -> int:
    name = f"liar-{os.getpid()}-{id(api)}-{relay.port}"
    storage = {**server.storage(), "endpoint": relay.endpoint}
    space = await api.post(
        "/v1/userSpace/create",
        {"name": name, "storage": storage, "credential": server.credential(), "rootPath": name},
    )
    return int(space["userSpace"]["userSpaceID"])


def on_block_gets(change: Callable[[Exchange], None]) -> Callable[[Exchange], None]:
    def after(ex: Exchange) -> None:
        if ex.method == "GET" and "/blocks/" in ex.path:
            change(ex)

    return after


def html_page(ex: Exchange) -> None:
    """A proxy's error page, with status 200, instead of the block's bytes."""
    ex.status, ex.reason = 200, "OK"
    ex.set_header("Content-Range", None)
    ex.set_header("Content-Type", "text/html")
    ex.resp_body = b"<html><body><h1>Service busy</h1></body></html>"


def extended(ex: Exchange) -> None:
    ex.resp_body += b"\0" * 64


def truncated(ex: Exchange) -> None:
    ex.resp_body = ex.resp_body[:-7]


LIES = {"html": html_page, "extended": extended, "truncated": truncated}


async def run(api: Api, name: str) -> object:
    return await build_runner(api.ctx).run_now(name)


async def layout_of(api: Api, object_id: int) -> int:
    return await api.layout_of(object_id)


async def block_states(api: Api, layout_id: int) -> dict[int, tuple[int, str]]:
    """(space, state) of every block of a layout, checked as repair checks them."""
    async with api.ctx.db.read() as conn:
        rec = (await layouts.load(conn, [layout_id]))[layout_id]
    layout = api.ctx.store.layout(rec)
    out = {}
    for b in rec.blocks:
        ref = BlockRef(
            b.index, await api.ctx.pool.get_by_id(b.user_space_id), b.key, b.user_space_id
        )
        out[b.index] = (b.user_space_id, (await check_block(layout, ref))[0])
    return out


async def upload_all(api: Api, liar: int, seed: int) -> dict[str, tuple[int, bytes]]:
    rng = random.Random(seed)
    objs = {}
    for name, policy in POLICIES.items():
        pkg = await api.package(name, policy)
        data = rng.randbytes(300_000)
        o = await api.upload_one(pkg, f"{name}.bin", data, affinity=liar)
        objs[name] = (int(o["objectID"]), data)
    return objs


@pytest.mark.parametrize("lie", list(LIES))
async def test_scrub_reports_blocks_a_cloud_answers_with_a_body_of_the_wrong_length(
    api: Api, s3_server: S3Server, relay: LyingRelay, lie: str
) -> None:
    """A block whose cloud answers its reads with a body that is not the
    range asked for (an HTML error page with status 200, a body with bytes
    added or missing) is one whose bytes cannot be had: scrub reported it
    "not reachable (skipped)", queued nothing, and a block nobody read
    stayed bad for ever (the health probe, which reads another key, kept
    the cloud Normal). Now it is corrupt: reported, queued, rebuilt."""
    await api.add_spaces(5)  # six Local and the liar: a free space for every policy
    liar = await liar_space(api, s3_server, relay)
    objs = await upload_all(api, liar, seed=len(lie))
    relay.after = on_block_gets(LIES[lie])
    # Only scrub may find them: no read of the objects before it.
    result = await run(api, "scrub")
    assert isinstance(result, ScrubResult)
    bad = {(b.layout_id, b.space_id, b.state) for b in result.bad}
    want = {(await layout_of(api, oid), liar, "corrupt") for oid, _ in objs.values()}
    assert bad == want, result.message
    assert "not reachable" not in result.message, result.message

    report = await fsck(api.ctx, deep=True)
    assert report.count("corrupt") == len(objs) and report.count("unreachable") == 0, (
        report.summary()
    )
    assert report.count("lost") == report.count("unreadable") == 0

    repaired = await run(api, "repair")
    assert "queue empty" in repaired.message, repaired.message  # type: ignore[attr-defined]
    for name, (oid, data) in objs.items():
        states = await block_states(api, await layout_of(api, oid))
        assert all(s == OK for _, s in states.values()), (name, states)
        assert liar not in {sid for sid, _ in states.values()}, (name, states)
        assert await api.download(oid) == data
        assert await api.download(oid, offset=12_345, length=100_000) == data[12_345:112_345]


def ranged_gets_fail(ex: Exchange) -> None:
    if ex.method == "GET" and "range" in ex.headers:
        ex.status, ex.reason = 500, "Internal Server Error"
        ex.set_header("Content-Range", None)
        ex.set_header("Content-Type", "application/xml")
        ex.resp_body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
            b"<Message>We encountered an internal error.</Message></Error>"
        )


async def test_a_cloud_that_fails_every_ranged_read_is_found_by_the_health_probe(
    api: Api, s3_server: S3Server, relay: LyingRelay
) -> None:
    """Every block read is ranged; the health probe read its object whole.
    A cloud that fails ranged GETs only (a gateway that mishandles Range)
    stayed Normal: its blocks were "not reachable (skipped)" by every
    scrub and never moved, and it kept receiving new blocks. Now the probe
    reads a range too: the cloud is Unavailable, and the repair job's scan
    moves its blocks off it."""
    await api.add_spaces(5)
    liar = await liar_space(api, s3_server, relay)
    objs = await upload_all(api, liar, seed=7)
    relay.after = ranged_gets_fail
    for oid, data in objs.values():
        assert await api.download(oid) == data
        assert await api.download(oid, offset=99, length=50_000) == data[99:50_099]
    await run(api, "health")
    assert api.ctx.pool.records[liar].state == "Unavailable"
    await run(api, "repair")
    for name, (oid, data) in objs.items():
        states = await block_states(api, await layout_of(api, oid))
        assert liar not in {sid for sid, _ in states.values()}, (name, states)
        assert all(s == OK for _, s in states.values()), (name, states)
        assert await api.download(oid) == data


def puts_not_stored(ex: Exchange) -> None:
    """Block writes answered 200 and dropped (a single PUT, or a multipart
    upload's parts and completion)."""
    if ex.method in ("PUT", "POST") and "/blocks/" in ex.path and ex.query != "uploads":
        ex.forward = False


@pytest.mark.parametrize("policy", list(POLICIES))
async def test_drain_keeps_a_block_its_target_cloud_did_not_store(
    api: Api, s3_server: S3Server, relay: LyingRelay, policy: str
) -> None:
    """A drain copied each block to its target, swapped it in and deleted
    the old one; a target cloud that acknowledged the write and stored
    nothing cost the layout that block, silently (the old copy was the
    only one of its index). Now the copy is checked (its size, as the
    cloud reports it) before the old one is let go."""
    width = {"rep2": 2, "rep3": 3, "ec23": 3, "ec35": 5}[policy]
    spaces = await api.add_spaces(width - 1)  # the default one and these hold the blocks
    pkg = await api.package(policy, POLICIES[policy])
    data = random.Random(width).randbytes(300_000)
    oid = int((await api.upload_one(pkg, "d.bin", data))["objectID"])
    liar = await liar_space(api, s3_server, relay)  # the only space free for a copy
    relay.before = puts_not_stored
    victim = spaces[0]
    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    result = await run(api, "drain")
    layout_id = await layout_of(api, oid)
    states = await block_states(api, layout_id)
    message = result.message  # type: ignore[attr-defined]
    assert all(s == OK for _, s in states.values()), (message, states)
    assert victim in {sid for sid, _ in states.values()}, (message, states)
    assert "1 failed" in message and "acknowledged the copy" in message, message
    assert await api.download(oid) == data
    relay.honest()  # once the cloud stores what it is sent, the block moves
    again = await run(api, "drain")
    states = await block_states(api, layout_id)
    assert all(s == OK for _, s in states.values()), (again, states)
    assert victim not in {sid for sid, _ in states.values()} and liar in {
        sid for sid, _ in states.values()
    }
    assert await api.download(oid) == data


async def test_repair_does_not_let_go_of_a_block_for_a_copy_its_target_did_not_store(
    api: Api, s3_server: S3Server, relay: LyingRelay
) -> None:
    """Repair rebuilds a block it could not read (here: a cloud whose
    ranged reads fail, not yet found by the health probe) on another
    space, swaps it in and deletes the old one. A target that acknowledged
    the rebuilt block and stored nothing cost the layout a copy that was
    good all along. Now the new blocks are looked up before the swap; one
    that is not there is not swapped in, and the old block stays."""
    flaky = await liar_space(api, s3_server, relay)
    pkg = await api.package("r", POLICIES["rep2"])
    data = random.Random(3).randbytes(300_000)
    oid = int((await api.upload_one(pkg, "r.bin", data, affinity=flaky))["objectID"])
    layout_id = await layout_of(api, oid)
    target_relay = LyingRelay(s3_server.port)
    target_relay.start()
    try:
        target = await liar_space(api, s3_server, target_relay)
        relay.after = ranged_gets_fail
        target_relay.before = puts_not_stored
        assert await api.download(oid) == data  # queues the layout for repair
        await api.ctx.repair.flush()
        result = await run(api, "repair")
        relay.honest()
        target_relay.honest()
        states = await block_states(api, layout_id)
        assert all(s == OK for _, s in states.values()), (result, states)
        assert target not in {sid for sid, _ in states.values()}, (result, states)
        assert await api.download(oid) == data
    finally:
        target_relay.stop()
