"""Local spaces are confined: what an API user tried against a fresh server,
done again, and what must come of it (docs/security.md).

Every test acts as an attacker holding a valid API key and asserts the
outcome a victim would check: the server's files untouched, nothing of them
readable, the request refused with a message naming the rule.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from jcs_helpers import Api, Other, expect_error

from jointcloud.core.gc import collect_garbage
from jointcloud.core.health import check_health
from jointcloud.meta import accounts

ETC_JCS = Path("/etc") / "jcs"  # where the health job once wrote its probes

# The rules are the same whatever the database; one is enough here.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def _admin(api: Api) -> int:
    key = api.client.headers["Authorization"].split()[1]
    return (await api.ctx.accounts.authenticate(key)).user_id


async def _create_local(api: Api, name: str, path: Path | str, **extra: object) -> str:
    r = await api.request(
        "POST",
        "/v1/userSpace/create",
        json={"name": name, "storage": {"type": "Local", "path": str(path)}, **extra},
    )
    return expect_error(r, "BadArgument", 400)


def _snapshot(directory: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime)
        for p in directory.rglob("*")
        if p.is_file() and not p.name.startswith("meta.db")
    }


async def test_space_on_the_data_dir_or_outside_the_roots_is_refused(api: Api) -> None:
    data = api.ctx.settings.data_dir
    for path in (data, data / "spaces", data.parent.parent / "elsewhere"):
        message = await _create_local(api, "grab", path)
        assert str(path.resolve()) in message or "data dir" in message, message
    assert "overlaps the server's data dir" in await _create_local(api, "d", data)
    for path in ("/", "/etc", "/root/.ssh"):
        message = await _create_local(api, "root", path)
        assert "outside the directories allowed for local spaces" in message
        assert "--local-root" in message
    # The same rule on userSpace/test and on update.
    r = await api.request(
        "POST", "/v1/userSpace/test", json={"storage": {"type": "Local", "path": "/etc"}}
    )
    assert "outside the directories allowed" in expect_error(r, "BadArgument", 400)
    sid = next(iter(api.spaces))
    r = await api.request(
        "POST",
        "/v1/userSpace/update",
        json={"userSpaceID": sid, "storage": {"type": "Local", "path": str(data)}},
    )
    assert "data dir" in expect_error(r, "BadArgument", 400)
    assert not (data / "jcs").exists() and not ETC_JCS.exists()


async def test_symlink_to_the_data_dir_is_not_followed_by_import_or_export(api: Api) -> None:
    data = api.ctx.settings.data_dir
    master = (data / "master.key").read_bytes()
    [sid] = await api.add_spaces(1)
    root = api.spaces[sid]
    (root / "tree").mkdir(parents=True)
    (root / "tree" / "ok.txt").write_bytes(b"mine")
    (root / "tree" / "master.key").symlink_to(data / "master.key")
    (root / "tree" / "data").symlink_to(data)
    (root / "link").symlink_to(data)
    bucket = await api.bucket("b")

    # The tree imports the user's own file only: links are never followed.
    out = await api.post(
        "/v1/userSpace/createPackage",
        {"userSpaceID": sid, "path": "tree", "bucketID": bucket, "name": "p"},
    )
    objects = await api.objects(out["package"]["packageID"])
    assert [o["path"] for o in objects] == ["ok.txt"]
    # A path through the link is refused, naming what happened.
    r = await api.request(
        "POST",
        "/v1/userSpace/createPackage",
        json={"userSpaceID": sid, "path": "link", "bucketID": bucket, "name": "p2"},
    )
    assert "(a symbolic link); it is not followed" in expect_error(r, "BadArgument", 400)

    # Exporting onto the link must not overwrite master.key.
    pkg = await api.package("evil", bucket_id=bucket)
    await api.upload_one(pkg, "master.key", b"attacker bytes")
    r = await api.request(
        "POST",
        "/v1/userSpace/downloadPackage",
        json={"packageID": pkg, "userSpaceID": sid, "rootPath": "link"},
    )
    assert "(a symbolic link); it is not followed" in expect_error(r, "BadArgument", 400)
    assert (data / "master.key").read_bytes() == master


async def test_one_users_space_cannot_overlap_another_users(api: Api, bob: Other) -> None:
    [sid] = await api.add_spaces(1)
    admin_dir = api.spaces[sid]
    admin_dir.mkdir(parents=True, exist_ok=True)
    bob_dir = next(iter(bob.api.spaces.values()))
    # Over, inside, or on another user's directory: refused, both ways round.
    for path in (admin_dir, admin_dir / "jcs", admin_dir / "jcs" / "blocks"):
        assert "spaces never share directories" in await _create_local(bob.api, "over", path)
    nest = api.tmp_path / "nest"
    await api.post(
        "/v1/userSpace/create",
        {"name": "nested", "storage": {"type": "Local", "path": str(nest / "inner")}},
    )
    assert "spaces never share directories" in await _create_local(bob.api, "outer", nest)
    assert "spaces never share directories" in await _create_local(api, "over", bob_dir)
    # Even the same user's two spaces never share a directory (each is a
    # failure domain, and one's export could land in the other's blocks).
    assert "spaces never share directories" in await _create_local(api, "again", admin_dir)


async def test_an_older_space_cannot_be_moved_over_a_newer_users_space(
    api: Api, bob: Other
) -> None:
    """Found by review: of two overlapping rows the older keeps working (rows
    from before the rule), and an update was checked only against older
    spaces. Moving one's first space onto the parent of a newer user's space
    took that user's files (an import read them) and shut the user out."""
    mine = min(api.spaces)
    bob_id, bob_dir = next(iter(bob.api.spaces.items()))
    assert mine < bob_id
    bob_dir.mkdir(parents=True, exist_ok=True)
    (bob_dir / "private.txt").write_bytes(b"bob's own")
    for path in (bob_dir.parent, bob_dir, bob_dir / "inner"):
        r = await api.request(
            "POST",
            "/v1/userSpace/update",
            json={"userSpaceID": mine, "storage": {"type": "Local", "path": str(path)}},
        )
        assert "spaces never share directories" in expect_error(r, "BadArgument", 400)
    space = await api.get("/v1/userSpace/get", userSpaceID=mine)
    assert space["userSpace"]["storage"]["path"] == str(api.spaces[mine])
    # Bob's space still works, and is still only his.
    assert (await bob.api.post("/v1/userSpace/test", {"userSpaceID": bob_id}))["ok"] is True


async def test_an_older_space_whose_directory_becomes_a_link_reaches_no_newer_space(
    api: Api, bob: Other
) -> None:
    """Found by review: a user with shell access to his own older space's
    directory replaced it by a link to a newer space of another user. Of
    two overlapping rows the older kept working, so his import read the
    other user's files, his sync deleted them, and the other user's own
    space was refused as overlapping his. A space's path is recorded
    resolved, and one that no longer resolves to itself is refused."""
    mine = min(api.spaces)
    mine_dir = api.spaces[mine]
    bob_id, bob_dir = next(iter(bob.api.spaces.items()))
    assert mine < bob_id
    bob_dir.mkdir(parents=True, exist_ok=True)
    (bob_dir / "private").mkdir(exist_ok=True)
    (bob_dir / "private" / "secret.txt").write_bytes(b"bob's own")
    mine_dir.mkdir(parents=True, exist_ok=True)
    os.rename(mine_dir, mine_dir.with_name("moved-away"))
    mine_dir.symlink_to(bob_dir)
    await api.ctx.pool.close()  # nothing cached: the next use opens it again
    r = await api.request(
        "POST",
        "/v1/userSpace/createPackage",
        json={
            "userSpaceID": mine,
            "path": "private",
            "bucketID": await api.bucket("x"),
            "name": "p",
        },
    )
    assert "replaced by a link" in expect_error(r, "BadArgument", 400)
    r = await api.request("POST", "/v1/userSpace/test", json={"userSpaceID": mine})
    assert r.status_code != 200 or r.json()["ok"] is not True, r.text
    assert (bob_dir / "private" / "secret.txt").read_bytes() == b"bob's own"
    # Bob's space still works, and is still only his.
    assert (await bob.api.post("/v1/userSpace/test", {"userSpaceID": bob_id}))["ok"] is True


async def test_a_path_is_recorded_resolved(api: Api) -> None:
    real = api.tmp_path / "real-dir"
    real.mkdir()
    link = api.tmp_path / "link-dir"
    link.symlink_to(real)
    made = await api.post(
        "/v1/userSpace/create",
        {"name": "linked", "storage": {"type": "Local", "path": str(link / "space")}},
    )
    assert made["userSpace"]["storage"]["path"] == str(real.resolve() / "space")


async def test_a_space_whose_directory_becomes_a_link_is_refused_at_use(api: Api) -> None:
    data = api.ctx.settings.data_dir
    [sid] = await api.add_spaces(1)
    root = api.spaces[sid]
    (root / "sub").mkdir(parents=True)
    r = await api.request(
        "POST",
        "/v1/userSpace/createPackage",
        json={"userSpaceID": sid, "path": "sub", "bucketID": await api.bucket("x"), "name": "p"},
    )
    assert r.status_code == 400  # an empty directory; nothing to import
    # Someone with shell access swaps the space's directory for a link.
    os.rename(root, root.with_name("moved"))
    root.symlink_to(data)
    await api.ctx.pool.close()  # nothing cached: the next use opens it again
    before = _snapshot(data)
    report = await check_health(api.ctx.db, api.ctx.pool)
    failed = {r.space.user_space_id: r.error for r in report.failed}
    assert "data dir" in (failed.get(sid) or ""), failed
    r = await api.request(
        "POST",
        "/v1/userSpace/downloadPackage",
        json={"packageID": await api.package("q"), "userSpaceID": sid},
    )
    assert "data dir" in expect_error(r, "BadArgument", 400)
    assert _snapshot(data) == before
    assert not (data / ".jcs-probe").exists() and not (data / "jcs").exists()


async def test_rows_from_before_the_rules_are_refused_and_never_written(api: Api) -> None:
    """A row an older version accepted (a space on /etc, on the data dir, a
    path with NUL): health, GC and fsck refuse it by name and touch nothing."""
    admin = await _admin(api)
    data = api.ctx.settings.data_dir
    etc_jcs_existed = ETC_JCS.exists()
    async with api.ctx.db.write() as conn:
        await accounts.create_space(
            conn, admin, "etc", {"type": "Local", "path": "/etc"}, None, "jcs"
        )
        await accounts.create_space(
            conn, admin, "data", {"type": "Local", "path": str(data)}, None, "jcs"
        )
        await accounts.create_space(
            conn, admin, "nul", {"type": "Local", "path": "/tmp/a\x00b"}, None, "jcs"
        )
    before = _snapshot(data)
    report = await check_health(api.ctx.db, api.ctx.pool)
    errors = {r.space.name: r.error or "" for r in report.results}
    assert "outside the directories allowed" in errors["etc"]
    assert "data dir" in errors["data"]
    assert "NUL" in errors["nul"]
    gc = await collect_garbage(api.ctx.db, api.ctx.store, api.ctx.settings.gc_delay)
    assert gc.temp_files == 0
    from jointcloud.core.fsck import fsck

    checked = await fsck(api.ctx)
    assert {"etc", "data", "nul"} <= set(checked.unreachable_spaces)
    assert ETC_JCS.exists() == etc_jcs_existed
    assert _snapshot(data) == before
    assert not (data / "jcs").exists()


async def test_gc_sweeps_only_its_own_temp_files_in_the_block_area(api: Api) -> None:
    [sid] = await api.add_spaces(1)
    root = api.spaces[sid]
    pkg = await api.package("p")
    await api.upload_one(pkg, "a", b"content")
    blocks = root / "jcs" / "blocks"
    old = time.time() - 86400
    ours = blocks / "ab" / ".jcs-tmp-0123456789abcdef"
    lookalike = blocks / "ab" / ".jcs-tmp-notours"
    user_tmp = root / "mine" / ".jcs-tmp-0123456789abcdef"  # the user's own tree
    user_wal = root / "mine" / "meta.db-wal"
    for p in (ours, lookalike, user_tmp, user_wal):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    report = await api.gc()
    assert report.temp_files == 1
    assert not ours.exists()
    assert lookalike.exists() and user_tmp.exists() and user_wal.exists()
