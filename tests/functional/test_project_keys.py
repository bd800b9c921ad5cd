"""Project API keys (macaroons) on the v1 API: created once, listed without
their text, usable as Bearer within their project and caveats (the refusal
names the caveat), restricted offline, revoked one derived key at a time,
deleted with everything derived from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from jcs_helpers import Api

from jointcloud.api.jcs.app import create_app
from jointcloud.context import Context
from jointcloud.keys.caveats import APIKey, CaveatPath, KeyCaveat


def _client(ctx: Context, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx, background=False)),
        base_url="http://jcs.test",
        headers={"Authorization": f"Bearer {key}"},
    )


def restrict(key: str, **caveat: object) -> str:
    return APIKey.parse(key).restrict(KeyCaveat.allowing(**caveat)).serialize()  # type: ignore[arg-type]


async def _project(api: Api) -> tuple[int, int, int, str]:
    bucket = await api.bucket("proj")
    photos = await api.package("photos", bucket_id=bucket)
    docs = await api.package("docs", bucket_id=bucket)
    await api.upload(photos, [("2024/a.jpg", b"A" * 10), ("2025/b.jpg", b"B" * 20)])
    await api.upload(docs, [("cv.txt", b"cv")])
    made = (await api.post("/v1/apiKey/create", {"bucketID": bucket, "name": "ci"}))["apiKey"]
    return bucket, photos, docs, made["key"]


async def test_create_list_and_use_within_the_project(api: Api, ctx: Context) -> None:
    bucket, photos, _, key = await _project(api)
    other = await api.bucket("elsewhere")
    listed = (await api.get("/v1/apiKey/list", bucketID=bucket))["apiKeys"]
    assert [(k["name"], k["bucketID"]) for k in listed] == [("ci", bucket)]
    assert "key" not in listed[0] and key not in str(listed)
    async with _client(ctx, key) as c:
        buckets = (await c.get("/v1/bucket/listAll")).json()["data"]["buckets"]
        assert [b["bucketID"] for b in buckets] == [bucket]  # only its project
        r = await c.get("/v1/package/listBucketPackages", params={"bucketID": bucket})
        assert r.status_code == 200 and len(r.json()["data"]["packages"]) == 2
        # Another project is not found (refusing would confirm it exists).
        r = await c.get("/v1/package/listBucketPackages", params={"bucketID": other})
        assert r.status_code == 404 and r.json()["message"] == f"bucket {other} not found"
        # Account-level operations need an account key.
        r = await c.post("/v1/bucket/create", json={"name": "more"})
        assert r.status_code == 403 and r.json()["code"] == "Forbidden"
        r = await c.post("/v1/apiKey/create", json={"bucketID": bucket, "name": "x"})
        assert r.status_code == 403
        objs = await c.get("/v1/object/getPackageObjects", params={"packageID": photos})
        assert len(objs.json()["data"]["objects"]) == 2


async def test_a_restricted_key_is_held_to_its_caveats(api: Api, ctx: Context) -> None:
    _, photos, docs, key = await _project(api)
    narrow = restrict(key, allow={"read", "list"}, paths=[CaveatPath("photos", "2024/")])
    async with _client(ctx, narrow) as c:
        objs = (await c.get("/v1/object/getPackageObjects", params={"packageID": photos})).json()
        assert [o["path"] for o in objs["data"]["objects"]] == ["2024/a.jpg"]
        # By id, a package outside the key's reach is not found: no name said.
        r = await c.get("/v1/object/getPackageObjects", params={"packageID": docs})
        assert r.status_code == 404 and r.json()["message"] == f"package {docs} not found"
        body = {"packageID": photos, "path": "2024/new.jpg"}
        r = await c.post("/v1/object/newMultipartUpload", json=body)
        assert r.status_code == 403 and "write" in r.json()["message"], r.text


async def test_time_windows(api: Api, ctx: Context) -> None:
    bucket, _, _, key = await _project(api)
    now = datetime.now(UTC)
    expired = restrict(key, not_after=now - timedelta(minutes=1))
    future = restrict(key, not_before=now + timedelta(hours=1))
    for text, word in ((expired, "expired"), (future, "not valid before")):
        async with _client(ctx, text) as c:
            r = await c.get("/v1/package/listBucketPackages", params={"bucketID": bucket})
            assert r.status_code == 403 and word in r.json()["message"], r.text


async def test_revoke_a_derived_key_and_its_descendants_only(api: Api, ctx: Context) -> None:
    bucket, _, _, key = await _project(api)
    child = restrict(key, allow={"read", "list"})
    grandchild = restrict(child, paths=[CaveatPath("photos")])
    sibling = restrict(key, allow={"read", "list"})  # same caveat, its own nonce
    await api.post("/v1/apiKey/revoke", {"key": child})
    for text, works in ((key, True), (child, False), (grandchild, False), (sibling, True)):
        async with _client(ctx, text) as c:
            r = await c.get("/v1/package/listBucketPackages", params={"bucketID": bucket})
            assert (r.status_code == 200) is works, (text[:10], r.text)
            if not works:
                assert r.status_code == 401 and "revoked" in r.json()["message"]


async def test_delete_stops_the_key_and_everything_derived(api: Api, ctx: Context) -> None:
    bucket, _, _, key = await _project(api)
    child = restrict(key, allow={"read"})
    key_id = (await api.get("/v1/apiKey/list", bucketID=bucket))["apiKeys"][0]["apiKeyID"]
    await api.post("/v1/apiKey/delete", {"apiKeyID": key_id})
    for text in (key, child):
        async with _client(ctx, text) as c:
            r = await c.get("/v1/bucket/listAll")
            assert r.status_code == 401 and "unknown API key" in r.json()["message"]
    await api.fail("POST", "/v1/apiKey/delete", "DataNotFound", 404, json={"apiKeyID": key_id})


async def test_a_disabled_users_project_keys_stop(api: Api, ctx: Context) -> None:
    _, user_key = await ctx.add_user("erin")
    async with _client(ctx, user_key) as erin:
        bid = (await erin.post("/v1/bucket/create", json={"name": "b"})).json()["data"]
        bucket = bid["bucket"]["bucketID"]
        made = await erin.post("/v1/apiKey/create", json={"bucketID": bucket, "name": "k"})
        key = made.json()["data"]["apiKey"]["key"]
    await ctx.accounts.set_disabled("erin", True)
    async with _client(ctx, key) as c:
        r = await c.get("/v1/bucket/listAll")
        assert r.status_code == 401 and "disabled" in r.json()["message"]


async def test_bad_keys_are_named(api: Api, ctx: Context) -> None:
    _, _, _, key = await _project(api)
    tampered = key[:-3] + ("1" if key[-3] != "1" else "2") + key[-2:]
    cases = {
        "jc$%not-base58": "base58",
        tampered: "checksum",
        restrict(key)[:20]: "",
    }
    for text, word in cases.items():
        async with _client(ctx, text) as c:
            r = await c.get("/v1/bucket/listAll")
            assert r.status_code == 401, r.text
            assert r.json()["message"].startswith("invalid API key"), r.text
            assert word in r.json()["message"], r.text
    # The admin cannot revoke what is not a key; nor another user's key.
    msg = await api.fail("POST", "/v1/apiKey/revoke", "BadArgument", 400, json={"key": "@@"})
    assert "base58" in msg
    # Another user's key is not theirs to revoke.
    _, frank_key = await ctx.add_user("frank")
    async with _client(ctx, frank_key) as frank:
        r = await frank.post("/v1/apiKey/revoke", json={"key": key})
        assert r.status_code == 404
