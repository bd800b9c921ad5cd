"""User keys over the API and the operator's user management: a user
manages their own keys; a deleted key or a disabled user stops at once in
this process; a second user sees nothing of the first."""

from __future__ import annotations

import httpx
import pytest
from jcs_helpers import Api

from jointcloud.api.jcs.app import create_app
from jointcloud.context import Context
from jointcloud.errors import BadArgument


def _client(ctx: Context, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx, background=False)),
        base_url="http://jcs.test",
        headers={"Authorization": f"Bearer {key}"},
    )


async def test_user_keys_create_list_delete(api: Api, ctx: Context) -> None:
    made = (await api.post("/v1/userKey/create", {"name": "laptop"}))["userKey"]
    assert made["name"] == "laptop" and made["key"].startswith("jcs_")
    assert made["hint"] == made["key"][:8]
    listed = (await api.get("/v1/userKey/list"))["userKeys"]
    assert [k["name"] for k in listed] == ["", "laptop"]  # the root key, then the new one
    assert all("key" not in k for k in listed)  # the text is shown once only
    assert made["key"] not in str(listed)

    async with _client(ctx, made["key"]) as laptop:
        r = await laptop.get("/v1/bucket/listAll")
        assert r.status_code == 200, r.text
        await api.post("/v1/userKey/delete", {"userKeyID": made["userKeyID"]})
        r = await laptop.get("/v1/bucket/listAll")
        assert r.status_code == 401 and r.json()["code"] == "Unauthorized"
    await api.fail(
        "POST", "/v1/userKey/delete", "DataNotFound", 404, json={"userKeyID": made["userKeyID"]}
    )
    msg = await api.fail("POST", "/v1/userKey/create", "BadArgument", 400, json={"name": "a/b"})
    assert "key name" in msg


async def test_a_user_cannot_delete_another_users_key(api: Api, ctx: Context) -> None:
    _, carol_key = await ctx.add_user("carol")
    mine = (await api.get("/v1/userKey/list"))["userKeys"][0]["userKeyID"]
    async with _client(ctx, carol_key) as carol:
        r = await carol.post("/v1/userKey/delete", json={"userKeyID": mine})
        assert r.status_code == 404 and r.json()["code"] == "DataNotFound"
        theirs = (await carol.get("/v1/userKey/list")).json()["data"]["userKeys"]
        assert mine not in [k["userKeyID"] for k in theirs]
    assert (await api.client.get("/v1/bucket/listAll")).status_code == 200


async def test_added_user_sees_nothing_of_another_and_disable_stops_them(
    api: Api, ctx: Context
) -> None:
    bucket = await api.bucket("admins")
    await api.package("private", bucket_id=bucket)
    user, key = await ctx.add_user("dave")
    async with _client(ctx, key) as dave:
        assert (await dave.get("/v1/bucket/listAll")).json()["data"]["buckets"] == []
        spaces = (await dave.get("/v1/userSpace/list")).json()["data"]["userSpaces"]
        assert [s["name"] for s in spaces] == ["local"]  # his own, not the admin's
        r = await dave.get("/v1/package/listBucketPackages", params={"bucketID": bucket})
        assert r.status_code == 404
        # He can work in his own space.
        made = await dave.post("/v1/bucket/create", json={"name": "daves"})
        assert made.status_code == 200, made.text
        await ctx.accounts.set_disabled("dave", True)
        r = await dave.get("/v1/bucket/listAll")
        assert r.status_code == 401 and r.json()["code"] == "Unauthorized"
        await ctx.accounts.set_disabled("dave", False)
        assert (await dave.get("/v1/bucket/listAll")).status_code == 200
    names = [u.name for u in await ctx.accounts.list_users()]
    assert names == ["admin", "dave"]
    assert user.user_id != (await ctx.accounts.user_named("admin")).user_id


async def test_a_space_made_where_the_next_user_s_would_go_does_not_stop_adding_users(
    api: Api, ctx: Context
) -> None:
    """Any user may make a local space under the data dir. One made where
    the operator's next user's own space used to go (``user-<id>``) made
    adding that user fail half-way; the path is not guessable now."""
    before = [u.name for u in await ctx.accounts.list_users()]
    next_id = max(u.user_id for u in await ctx.accounts.list_users()) + 1
    squat = ctx.settings.data_dir / "spaces" / f"user-{next_id}"
    r = await api.client.post(
        "/v1/userSpace/create",
        json={"name": "squat", "storage": {"type": "Local", "path": str(squat)}},
    )
    assert r.status_code == 200, r.text
    user, key = await ctx.add_user("erin")
    assert user.user_id == next_id
    async with _client(ctx, key) as erin:
        spaces = (await erin.get("/v1/userSpace/list")).json()["data"]["userSpaces"]
        assert [s["name"] for s in spaces] == ["local"]
    assert [u.name for u in await ctx.accounts.list_users()] == [*before, "erin"]


async def test_adding_a_user_that_fails_half_way_leaves_no_user(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the new user's space cannot be made, the user and its first key
    are taken back: the operator sees the error and can add it again."""
    before = await ctx.accounts.list_users()

    async def refused(*args: object, **kwargs: object) -> None:
        raise BadArgument("the space could not be made")

    with monkeypatch.context() as patch:
        patch.setattr(ctx.spaces, "create", refused)
        with pytest.raises(BadArgument):
            await ctx.add_user("frank")
    assert await ctx.accounts.list_users() == before
    user, key = await ctx.add_user("frank")
    async with _client(ctx, key) as frank:
        assert (await frank.get("/v1/userSpace/list")).status_code == 200
    assert user.name == "frank"
