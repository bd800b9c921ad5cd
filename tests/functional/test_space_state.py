"""A space that fails its test leaves placement until a test passes again;
HEAD on a download answers the size without a body."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from typing import Any

import pytest
from jcs_helpers import Api
from sqlalchemy import update

from jointcloud.meta import tables as t


async def test_failed_test_marks_space_unavailable_and_recovers(api: Api) -> None:
    [extra] = await api.add_spaces(1)
    pkg = await api.package("p", {"type": "rep", "repCount": 2})
    path = api.spaces[extra]
    shutil.rmtree(path, ignore_errors=True)
    path.write_bytes(b"not a directory any more")
    await api.fail(
        "POST", "/v1/userSpace/test", "OperationFailed", 503, json={"userSpaceID": extra}
    )
    got = await api.get("/v1/userSpace/get", userSpaceID=extra)
    assert got["userSpace"]["state"] == "Unavailable"

    # rep(2) now needs two usable spaces and only one is left.
    r = await api.upload_raw(
        [("info", None, b'{"packageID": %d}' % pkg), ("files", "a.txt", b"hello")]
    )
    assert r.status_code == 503 and r.json()["code"] == "OperationFailed"
    assert "needs 2 usable user spaces" in r.json()["message"]

    path.unlink()
    (path / "jcs").mkdir(parents=True)  # the operator makes its directory anew
    ok = await api.post("/v1/userSpace/test", {"userSpaceID": extra})
    assert ok["ok"] is True
    got = await api.get("/v1/userSpace/get", userSpaceID=extra)
    assert got["userSpace"]["state"] == "Normal"
    obj = await api.upload_one(pkg, "a.txt", b"hello")
    assert await api.download(obj["objectID"]) == b"hello"


async def test_head_download_gives_size_without_body(api: Api) -> None:
    pkg = await api.package("h")
    obj = await api.upload_one(pkg, "dir/h.bin", b"x" * 1234)
    r = await api.client.head("/v1/object/download", params={"objectID": obj["objectID"]})
    assert r.status_code == 200
    assert r.headers["content-length"] == "1234"
    assert r.content == b""


async def test_read_survives_a_space_that_cannot_be_opened_after_restart(api: Api) -> None:
    [extra] = await api.add_spaces(1)
    pkg = await api.package("r", {"type": "rep", "repCount": 2})
    obj = await api.upload_one(pkg, "r.bin", b"survivor" * 1000)
    # As after a restart: the backend is not open yet, and now it cannot be.
    await api.ctx.pool.forget(extra)
    shutil.rmtree(api.spaces[extra])
    api.spaces[extra].write_bytes(b"a file where the space's directory was")
    assert await api.download(obj["objectID"]) == b"survivor" * 1000


async def test_upload_routes_around_a_space_that_went_away(api: Api) -> None:
    first, second = await api.add_spaces(2)
    pkg = await api.package("fallback", {"type": "rep", "repCount": 2})
    await api.upload_one(pkg, "warm.txt", b"opens every backend")
    # One space disappears; no health probe has run yet.
    shutil.rmtree(api.spaces[first], ignore_errors=True)
    api.spaces[first].write_bytes(b"no longer a directory")
    obj = await api.upload_one(pkg, "b.txt", b"still two copies")
    assert await api.download(obj["objectID"]) == b"still two copies"
    holders = {sid for sid, files in api.block_files().items() if files}
    assert first not in holders and second in holders
    got = await api.get("/v1/userSpace/get", userSpaceID=first)
    assert got["userSpace"]["state"] == "Unavailable"


async def test_upload_fails_clearly_when_too_few_spaces_are_left(api: Api) -> None:
    [extra] = await api.add_spaces(1)
    pkg = await api.package("fallback2", {"type": "rep", "repCount": 2})
    shutil.rmtree(api.spaces[extra], ignore_errors=True)
    api.spaces[extra].write_bytes(b"no longer a directory")
    r = await api.upload_raw(
        [("info", None, b'{"packageID": %d}' % pkg), ("files", "a.txt", b"hello")]
    )
    assert r.status_code == 503, r.text
    assert r.json()["message"] == (
        "redundancy rep(2) needs 2 usable user spaces, but only 1 of your 2 are available"
    )
    assert await api.objects(pkg) == []


# Rows that passed the checks when they were stored and that later rules
# refuse at open (1b15532: an OBS space needs a credential; 0e7898d: a GCS
# credential is a service-account key).
REFUSED_ROWS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "OBS without credential": (
        {"type": "OBS", "endpoint": "https://obs.example.com", "bucket": "b"},
        None,
    ),
    "GCS authorized_user": (
        {"type": "GCS", "bucket": "b"},
        {
            "type": "GCSServiceAccount",
            "json": {"type": "authorized_user", "client_id": "a", "client_secret": "b"},
        },
    ),
}


async def refuse_stored_row(api: Api, space_id: int, row: str) -> None:
    """Rewrite the space's row as one stored before a rule that now refuses it."""
    storage, credential = REFUSED_ROWS[row]
    async with api.ctx.db.write() as conn:
        await conn.execute(
            update(t.user_spaces)
            .where(t.user_spaces.c.id == space_id)
            .values(
                storage=json.dumps(storage),
                credential=api.ctx.pool.seal(space_id, credential),
            )
        )
    await api.ctx.pool.forget(space_id)


@pytest.mark.parametrize("row", sorted(REFUSED_ROWS))
async def test_a_stored_space_a_new_rule_refuses_is_routed_around(api: Api, row: str) -> None:
    """Found by review: a space row that a later rule refuses at open made
    the open fail as the caller's bad argument (400), not as a refused
    space, so reads and uploads did not route around it as around any space
    that cannot be opened: an object with a good replica elsewhere could
    not be read, and an upload that could use the other spaces failed."""
    first, _ = await api.add_spaces(2)
    pkg = await api.package("refused", {"type": "rep", "repCount": 2})
    obj = await api.upload_one(pkg, "r.bin", b"survivor" * 1000, affinity=first)
    assert api.block_files()[first]
    await refuse_stored_row(api, first, row)
    assert await api.download(obj["objectID"]) == b"survivor" * 1000
    again = await api.upload_one(pkg, "b.bin", b"two copies elsewhere")
    assert await api.download(again["objectID"]) == b"two copies elsewhere"
    got = await api.get("/v1/userSpace/get", userSpaceID=first)
    assert got["userSpace"]["state"] == "Unavailable"


async def test_a_refused_move_does_not_make_a_missing_directory_again(api: Api) -> None:
    """Found by review: ``userSpace/update`` of a space's root path made its
    directory before it found that the space holds blocks (a move it then
    refused). A space whose disk was unmounted thus got its directory back
    on the file system beneath from a refused request, and the next health
    probe found it Normal again: blocks landed there, as before 216c5ec."""
    [extra] = await api.add_spaces(1)
    pkg = await api.package("held", {"type": "rep", "repCount": 2})
    await api.upload_one(pkg, "held.bin", b"held" * 1000)
    assert api.block_files()[extra]
    root = api.spaces[extra] / "jcs"
    root.rename(root.with_name("jcs.unmounted"))  # the mount point stays, empty
    message = await api.fail(
        "POST",
        "/v1/userSpace/update",
        "OperationFailed",
        409,
        json={"userSpaceID": extra, "rootPath": "jcs"},
    )
    assert "holds blocks" in message
    assert not root.exists()
    ok = await api.client.post("/v1/userSpace/test", json={"userSpaceID": extra})
    assert ok.status_code == 503, ok.text


async def test_transfers_refuse_a_space_whose_directory_went_away(api: Api) -> None:
    """Found by review: transfers open a Local space at its storage root,
    which an unmounted disk leaves behind as an empty mount point; with the
    space's own directory gone (the space Unavailable), an export still
    wrote the user's files onto the file system beneath it, and an import
    found the space empty instead of unavailable."""
    [extra] = await api.add_spaces(1)
    pkg = await api.package("out")
    await api.upload_one(pkg, "f.txt", b"exported")
    mount = api.spaces[extra]
    (mount / "in").mkdir()
    (mount / "in" / "x.txt").write_bytes(b"x")
    shutil.move(mount, mount.with_name("s.unmounted"))
    mount.mkdir()  # the empty mount point
    r = await api.client.post(
        "/v1/userSpace/downloadPackage",
        json={"packageID": pkg, "userSpaceID": extra, "rootPath": "out"},
    )
    assert r.status_code == 503, r.text
    assert "is missing" in r.json()["message"]
    assert list(mount.iterdir()) == []
    bucket = await api.bucket("imports")
    r = await api.client.post(
        "/v1/userSpace/createPackage",
        json={"userSpaceID": extra, "path": "/in/", "bucketID": bucket, "name": "in"},
    )
    assert r.status_code == 503, r.text
    assert "is missing" in r.json()["message"]


async def test_a_space_that_hangs_is_unreachable_within_a_bound(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: after a write failed on a cloud that hung, the
    check whether it was reachable waited as long as the cloud's client
    library would (60 s), and counted it alive when the cloud came back,
    so the upload failed instead of being placed elsewhere. Now a stat not
    answered within the bound, or a space the health job marked Unavailable
    meanwhile, is unreachable."""
    from jointcloud.core import blockstore
    from jointcloud.core.models import SpaceState

    hung, fine = await api.add_spaces(2)
    store = api.ctx.store
    records = {s.user_space_id: s for s in await store.user_spaces(1)}
    never = asyncio.Event()

    class Hanging:
        async def stat(self, key: str) -> object:
            await never.wait()
            raise AssertionError("unreachable")

    real_get = api.ctx.pool.get

    async def get(rec: Any) -> Any:
        return Hanging() if rec.user_space_id == hung else await real_get(rec)

    monkeypatch.setattr(api.ctx.pool, "get", get)
    monkeypatch.setattr(blockstore, "REACH_SECONDS", 0.2)
    async with asyncio.timeout(30):
        dead = await store._unreachable([records[hung], records[fine]])
    assert dead == {hung}

    # marked Unavailable by the health job meanwhile: not asked at all
    monkeypatch.setattr(blockstore, "REACH_SECONDS", 3600)
    api.ctx.pool.note(dataclasses.replace(records[hung], state=SpaceState.UNAVAILABLE))
    async with asyncio.timeout(30):
        assert await store._unreachable([records[hung], records[fine]]) == {hung}


async def test_a_health_pass_ends_even_if_recording_hangs(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that never ends holds the job's lease, so no later pass runs
    and spaces stay as they were marked (seen once by review, for 40
    minutes): recording its results is bounded, and the pass fails."""
    from jointcloud.core import health
    from jointcloud.errors import OperationFailed

    await api.add_spaces(1)

    async def hangs(*args: object) -> object:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(health, "_record", hangs)
    monkeypatch.setattr(health, "RECORD_SECONDS", 0.2)
    async with asyncio.timeout(30):
        with pytest.raises(OperationFailed, match=r"could not record its results within 0\.2 s"):
            await health.check_health(api.ctx.db, api.ctx.pool)


async def test_a_read_that_outran_a_space_makes_the_health_job_due_now(api: Api) -> None:
    """A hedged read tells the health job (through the database, so the
    process holding its lease sees it) to probe now rather than at its next
    interval; once per WAKE_EVERY, however many reads outrun the space."""
    from jointcloud.core.jobstate import JobBoard
    from jointcloud.jobs.registry import build_runner

    [sid] = await api.add_spaces(1)
    board = JobBoard(api.ctx.db)
    await build_runner(api.ctx).run_now("health")  # a pass just ran: the next is 30 s away
    assert not await board.due("health")
    for _ in range(5):
        api.ctx.health.note_slow_space(sid)
    await api.ctx.health.close()
    assert await board.due("health")
    assert api.ctx.health.wakes == 1
