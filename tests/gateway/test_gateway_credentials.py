"""Keys, grants, credentials and share links through the facade: offline
restriction, the satellite and auth-service round trips over real HTTP, the
restrictions enforced by the S3 endpoint, and the seed's share URL."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest
from gw_support import PASSPHRASE, Backend, Gw, Jcs, unique

from jointcloud.core import copy_checksum
from jointcloud.keys.caveats import APIKey, CaveatPath, Permission
from jointcloud.keys.grant import parse_grant

FORMATS = ["json", "xml"]


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def seed_restrict_body(api_key: str) -> bytes:
    """The seed's own request body of /createRestrictKey, with our key."""
    return b"""{
\t"buckets": ["buc1", "buc2"],
\t"api_key": "%s",
\t"allow_download": true,
\t"allow_delete": true,
\t"allow_list": true,
\t"allow_upload": true
}""" % api_key.encode()


async def test_create_restrict_key_seed_body(gw: httpx.AsyncClient, jcs: Jcs, fmt: str) -> None:
    call = Gw(gw, fmt == "xml", None)
    answer = await call.ok(
        "/createRestrictKey",
        content=seed_restrict_body(jcs.api_key),
        headers={"Content-Type": "application/json"},
    )
    assert answer.msg == "success"
    key = APIKey.parse(answer.data)
    (caveat,) = key.caveats()
    assert caveat.allowed == {Permission.READ, Permission.WRITE, Permission.LIST, Permission.DELETE}
    assert caveat.paths == (CaveatPath("buc1"), CaveatPath("buc2"))
    assert key.allowed_buckets() == {"buc1", "buc2"}
    # as ``curl -d`` sends it, labelled a urlencoded form: read as the JSON it
    # is, not as a form with one field named by the whole body (it answered
    # "missing required parameter buckets"; found by the seed-003 review)
    answer = await call.ok(
        "/createRestrictKey",
        content=seed_restrict_body(jcs.api_key),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert APIKey.parse(answer.data).allowed_buckets() == {"buc1", "buc2"}


async def test_create_restrict_key_form_window_and_defaults(
    gw: httpx.AsyncClient, jcs: Jcs
) -> None:
    call = Gw(gw, False, None)
    # a urlencoded form: booleans as 1/0 and true/false, times in ms
    answer = await call.ok(
        "/createRestrictKey",
        data={
            "buckets": "photos",
            "api_key": jcs.api_key,
            "allow_download": "1",
            "allow_list": "true",
            "allow_upload": "0",
            "not_before": "1700000000000",
            "not_after": "1900000000123",
        },
    )
    (caveat,) = APIKey.parse(answer.data).caveats()
    assert caveat.allowed == {Permission.READ, Permission.LIST}
    assert caveat.not_before == datetime.fromtimestamp(1700000000, UTC)
    assert caveat.not_after == datetime.fromtimestamp(1900000000.123, UTC)
    # the query string and a multipart form are read alike
    answer = await call.ok(
        "/createRestrictKey",
        params={"api_key": jcs.api_key, "allow_delete": "true"},
        files={"buckets": (None, '["a", "b"]')},
    )
    assert APIKey.parse(answer.data).allowed_buckets() == {"a", "b"}

    # nothing allowed (every allow_* defaults to false): refused, saying why
    answer = await call("/createRestrictKey", json={"buckets": ["b"], "api_key": jcs.api_key})
    assert answer.code == -1 and "empty permission set" in answer.msg
    for body, named in [
        ({"buckets": ["b"], "allow_list": True}, "api_key"),
        ({"api_key": jcs.api_key, "allow_list": True}, "buckets"),
        ({"buckets": ["b"], "api_key": jcs.api_key, "allow_list": "maybe"}, "allow_list"),
        (
            {"buckets": ["b"], "api_key": jcs.api_key, "allow_list": 1, "not_after": "x"},
            "not_after",
        ),
        ({"buckets": ["b"], "api_key": "not a key", "allow_list": True}, "api_key"),
    ]:
        answer = await call("/createRestrictKey", json=body)
        assert answer.code == -1 and named in answer.msg, (body, answer.msg)


async def test_grant_and_credentials(gw: httpx.AsyncClient, jcs: Jcs, fmt: str) -> None:
    call = Gw(gw, fmt == "xml", None)
    restricted = (
        await call.ok(
            "/createRestrictKey",
            json={"buckets": ["buc1"], "api_key": jcs.api_key, "allow_download": True},
        )
    ).data
    answer = await call.ok(
        "/createAccessGrant",
        data={
            "satellite_node_url": jcs.main_url,
            "restrict_key": restricted,
            "password": PASSPHRASE,
            "project_id": jcs.project_uuid,
        },
    )
    assert answer.msg == "success"
    grant = parse_grant(answer.data)
    assert grant.api_key.serialize() == restricted
    assert grant.root_key is not None
    # the grant names the satellite as the satellite says its own address
    assert grant.satellite_address == jcs.ctx.settings.satellite_url()

    made = await call.ok(
        "/createCredentials",
        json={"access_grant": answer.data, "auth_service": jcs.main_url},
    )
    assert made.msg == "success"
    assert set(made.data) == {"access_key_id", "secret_key", "endpoint"}
    resolved = await jcs.ctx.access.resolve(made.data["access_key_id"])
    assert resolved.secret_key == made.data["secret_key"]
    assert not resolved.public
    if fmt == "xml":
        text = made.response.text
        assert "<AccessKeyId>" in text and "<SecretKey>" in text and "<Endpoint>" in text

    # the auth service's URL may name /v1/access itself
    again = await call.ok(
        "/createCredentials",
        json={"access_grant": answer.data, "auth_service": jcs.main_url + "/v1/access"},
    )
    assert again.data["access_key_id"] != made.data["access_key_id"]


async def test_a_key_that_may_only_upload_makes_a_grant(gw: httpx.AsyncClient, jcs: Jcs) -> None:
    # The satellite answers project info to any key of the project, as the
    # published one does (found by review: a write-only key was refused).
    call = Gw(gw, False, None)
    restricted = (
        await call.ok(
            "/createRestrictKey",
            json={"buckets": ["buc1"], "api_key": jcs.api_key, "allow_upload": True},
        )
    ).data
    body = {"satellite_node_url": jcs.main_url, "restrict_key": restricted, "password": PASSPHRASE}
    answer = await call.ok("/createAccessGrant", json=body)
    assert parse_grant(answer.data).api_key.serialize() == restricted


async def test_grant_failures(gw: httpx.AsyncClient, jcs: Jcs) -> None:
    call = Gw(gw, False, None)
    base = {
        "satellite_node_url": jcs.main_url,
        "restrict_key": jcs.api_key,
        "password": PASSPHRASE,
        "project_id": jcs.project_uuid,
    }
    # project_id may also be the numeric bucketID of the v1 API, or be left out
    await call.ok("/createAccessGrant", json={**base, "project_id": str(jcs.bucket_id)})
    await call.ok("/createAccessGrant", json={k: v for k, v in base.items() if k != "project_id"})
    other = "00000000-0000-4000-8000-000000000000"
    answer = await call("/createAccessGrant", json={**base, "project_id": other})
    assert answer.code == -1 and "project_id" in answer.msg and jcs.project_uuid in answer.msg
    for name in ("satellite_node_url", "restrict_key", "password"):
        answer = await call("/createAccessGrant", json={k: v for k, v in base.items() if k != name})
        assert answer.code == -1 and name in answer.msg
    # a key the satellite does not know
    forged = APIKey.parse(jcs.api_key)
    unknown = forged.serialize()[:-6] + (
        "111111" if not forged.serialize().endswith("1") else "222222"
    )
    answer = await call("/createAccessGrant", json={**base, "restrict_key": unknown})
    assert answer.code == -1
    # the satellite unreachable
    answer = await call(
        "/createAccessGrant", json={**base, "satellite_node_url": "http://127.0.0.1:9"}
    )
    assert answer.code == -1 and "satellite" in answer.msg

    # a wrong password makes a grant (only the satellite could tell), which
    # the auth service then refuses, saying so
    wrong = await call.ok("/createAccessGrant", json={**base, "password": "not the passphrase"})
    answer = await call(
        "/createCredentials", json={"access_grant": wrong.data, "auth_service": jcs.main_url}
    )
    assert answer.code == -1 and "wrong passphrase for project gwproj" in answer.msg
    answer = await call(
        "/createCredentials", json={"access_grant": "garbage", "auth_service": jcs.main_url}
    )
    assert answer.code == -1 and "access grant" in answer.msg
    answer = await call("/createCredentials", json={"access_grant": wrong.data})
    assert answer.code == -1 and "auth_service" in answer.msg


async def test_restrictions_are_enforced(gw: httpx.AsyncClient, jcs: Jcs) -> None:
    """A key limited to one bucket and to downloads, through createRestrictKey
    → createAccessGrant → createCredentials, cannot upload, list or delete."""
    owner = Gw(gw, False, jcs.backend.headers)
    allowed, other = unique("allowed"), unique("other")
    for bucket in (allowed, other):
        await owner.ok("/createBucket", data={"bucket": bucket})
        await owner.ok(
            "/uploadObject", data={"bucket": bucket, "key": "a.txt"}, files={"file": b"hello"}
        )

    limited = await restricted_caller(gw, jcs, [allowed], allow_download=True)

    got = await limited.raw("/downloadObject", json={"bucket": allowed, "key": "a.txt"})
    assert got.status_code == 200 and got.content == b"hello"
    refusals = [
        ("/uploadObject", {"data": {"bucket": allowed, "key": "b.txt"}, "files": {"file": b"x"}}),
        ("/listObjects", {"json": {"bucket": allowed}}),
        ("/deleteObject", {"json": {"bucket": allowed, "key": "a.txt"}, "method": "DELETE"}),
        ("/downloadObject", {"json": {"bucket": other, "key": "a.txt"}}),
        ("/createBucket", {"json": {"bucket": unique("new")}}),
    ]
    for path, kwargs in refusals:
        method = str(kwargs.pop("method", "POST"))
        answer = await limited(path, method, **kwargs)
        assert answer.code == -1, path
        assert answer.msg.startswith("operation error S3: "), answer.msg
        assert "StatusCode: 403" in answer.msg and "api error AccessDenied: " in answer.msg
    # still there: the refusals changed nothing
    got = await limited.raw("/downloadObject", json={"bucket": allowed, "key": "a.txt"})
    assert got.content == b"hello"
    listing = await owner.ok("/listObjects", json={"bucket": allowed})
    assert [o["key"] for o in listing.data] == ["a.txt"]


async def test_share_url(gw: httpx.AsyncClient, jcs: Jcs, fmt: str) -> None:
    call = Gw(gw, fmt == "xml", None)
    bucket, key = unique("share"), "dir/a b.txt"
    body = {
        "bucket": bucket,
        "key": key,
        "satellite_node_url": jcs.main_url,
        "api_key": jcs.api_key,
        "password": PASSPHRASE,
        "project_id": jcs.project_uuid,
        "auth_service": jcs.main_url,
        "base_url": "https://share.example.net/",
        "not_after": str(int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)),
    }
    answer = await call.ok("/shareUrl", json=body)
    assert answer.msg == "success"
    prefix = "https://share.example.net/"
    assert answer.data.startswith(prefix)
    access_key_id, path = answer.data[len(prefix) :].split("/")
    assert path == quote(f"{bucket}/{key}", safe="") == f"{bucket}%2Fdir%2Fa%20b.txt"
    resolved = await jcs.ctx.access.resolve(access_key_id)
    assert resolved.public
    caveats = [c for c in parse_grant(resolved.grant).api_key.caveats() if c.paths]
    assert caveats[-1].paths == (CaveatPath(bucket, key),)
    assert caveats[-1].allowed == {Permission.READ, Permission.LIST}
    assert caveats[-1].not_after == datetime(2100, 1, 1, tzinfo=UTC)

    # the seed's example shape: <base_url>/<access key id>/<bucket>%2F<key>
    answer = await call.ok("/shareUrl", json={**body, "bucket": "buc1", "key": "a.txt"})
    assert answer.data.startswith("https://share.example.net/")
    assert answer.data.endswith("/buc1%2Fa.txt")
    if fmt == "xml":
        assert "<data>https://share.example.net/" in answer.response.text

    answer = await call("/shareUrl", json={k: v for k, v in body.items() if k != "base_url"})
    assert answer.code == -1 and "base_url" in answer.msg
    answer = await call("/shareUrl", json={**body, "password": "wrong"})
    assert answer.code == -1 and "wrong passphrase" in answer.msg


async def test_no_auth_headers_needed_only_where_the_seed_says(gw: httpx.AsyncClient) -> None:
    call = Gw(gw, False, None)
    answer = await call("/listBuckets")
    assert answer.code == -1
    assert answer.msg == "missing request header(s): AccessKeyId, SecretKey, Endpoint"
    answer = await call("/listBuckets", headers={"AccessKeyId": "a", "SecretKey": "b"})
    assert answer.msg == "missing request header(s): Endpoint"
    xml = Gw(gw, True, None)
    answer = await xml("/createBucket", data={"bucket": "x"})
    assert answer.code == -1 and "AccessKeyId" in answer.msg
    assert json.dumps(answer.msg)  # plain text


async def test_a_move_by_a_key_that_may_not_delete_says_the_copy_was_made(
    gw: httpx.AsyncClient, jcs: Jcs
) -> None:
    """S3 has no move: the facade copies, then deletes the source. A key
    that may write but not delete got "forbids delete operations" with the
    copy already made; the answer now says the object was copied."""
    owner = Gw(gw, False, jcs.backend.headers)
    bucket = unique("mv")
    await owner.ok("/createBucket", data={"bucket": bucket})
    await owner.ok("/uploadObject", data={"bucket": bucket, "key": "src"}, files={"file": b"x"})
    allow = {"allow_download": True, "allow_upload": True, "allow_list": True}
    limited = await restricted_caller(gw, jcs, [bucket], **allow)
    move = {
        "source_bucket": bucket,
        "source_key": "src",
        "destination_bucket": bucket,
        "destination_key": "dst",
    }
    answer = await limited("/moveObject", json=move)
    assert answer.code == -1
    assert answer.msg.startswith(
        f"the object was copied to {bucket}/dst, but the source {bucket}/src was not deleted: "
        "operation error S3: DeleteObject"
    ), answer.msg
    listed = await owner.ok("/listObjects", json={"bucket": bucket}, many=True)
    assert sorted(o["key"] for o in listed.data) == ["dst", "src"]


async def test_a_copy_over_the_copy_limit_is_made_in_parts(
    gw: httpx.AsyncClient, jcs: Jcs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3's CopyObject copies at most 5 GiB (as AWS); /copyObject and
    /moveObject copy a larger object in parts (UploadPartCopy), as boto3's
    managed copy does, instead of failing. The limit is lowered here."""
    owner = Gw(gw, False, jcs.backend.headers)
    bucket = unique("big")
    await owner.ok("/createBucket", data={"bucket": bucket})
    data = os.urandom(9 * 1024 * 1024)  # over boto3's 8 MiB threshold: copied in parts
    await owner.ok("/uploadObject", data={"bucket": bucket, "key": "src"}, files={"file": data})
    monkeypatch.setattr(copy_checksum, "MAX_READ_FOR_COPY", 1024 * 1024)
    copy = {"source_bucket": bucket, "source_key": "src", "destination_bucket": bucket}
    await owner.ok("/copyObject", json={**copy, "destination_key": "copied"})
    await owner.ok("/moveObject", json={**copy, "destination_key": "moved"})
    for key in ("copied", "moved"):
        got = await owner.raw("/downloadObject", json={"bucket": bucket, "key": key})
        assert got.status_code == 200 and got.content == data, key
    listed = await owner.ok("/listObjects", json={"bucket": bucket}, many=True)
    assert sorted(o["key"] for o in listed.data) == ["copied", "moved"]


async def restricted_caller(
    gw: httpx.AsyncClient, jcs: Jcs, buckets: list[str], **allow: bool
) -> Gw:
    """A caller of the facade with S3 credentials of the project key
    restricted to ``buckets`` and ``allow``, made as the seed makes them:
    createRestrictKey → createAccessGrant → createCredentials."""
    free = Gw(gw, False, None)
    restriction = {"buckets": buckets, "api_key": jcs.api_key, **allow}
    key = (await free.ok("/createRestrictKey", json=restriction)).data
    grant = (
        await free.ok(
            "/createAccessGrant",
            json={
                "satellite_node_url": jcs.main_url,
                "restrict_key": key,
                "password": PASSPHRASE,
                "project_id": jcs.project_uuid,
            },
        )
    ).data
    body = {"access_grant": grant, "auth_service": jcs.main_url}
    made = (await free.ok("/createCredentials", json=body)).data
    return Gw(
        gw, False, Backend("jcs", jcs.s3_url, made["access_key_id"], made["secret_key"]).headers
    )
