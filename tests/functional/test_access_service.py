"""The auth service on the main listener: grants in, S3 credentials out, in
the published formats; a grant is refused — saying why — for another
satellite, another passphrase, after expiry or revocation."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from jcs_helpers import Api
from sqlalchemy import update

from jointcloud.api.host import Metrics, main_app
from jointcloud.api.jcs.app import create_app
from jointcloud.context import Context
from jointcloud.core.gc import EXPIRED_CREDENTIALS_KEPT, collect_garbage
from jointcloud.errors import AccessDenied, Unauthorized, UnknownAccessKey
from jointcloud.keys.caveats import APIKey, CaveatPath, KeyCaveat
from jointcloud.keys.credentials import (
    ACCESS_KEY_ID_LENGTH,
    SECRET_KEY_LENGTH,
    new_access_key_id,
)
from jointcloud.keys.grant import new_grant, parse_grant
from jointcloud.meta import tables as t
from support.asgi import http_scope

TOKEN = "operator-token-0123456789"


@pytest.fixture
async def main(ctx: Context) -> httpx.AsyncClient:
    ctx.settings = dataclasses.replace(ctx.settings, auth_token=TOKEN)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=main_app(ctx, Metrics(), ("api",))),
        base_url="http://jcs.test",
    )


async def _key(api: Api, name: str = "proj") -> tuple[str, str]:
    bucket = await api.bucket(name)
    await api.package("photos", bucket_id=bucket)
    key = (await api.post("/v1/apiKey/create", {"bucketID": bucket, "name": "k"}))["apiKey"]["key"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(api.ctx)),
        base_url="http://jcs.test",
        headers={"Authorization": f"Bearer {key}"},
    ) as c:
        info = (await c.get("/v1/project/info")).json()["data"]
    assert info["bucketID"] == bucket and info["name"] == name
    return key, info["projectID"]


async def _grant(api: Api, passphrase: str = "correct horse", name: str = "proj") -> str:
    key, project = await _key(api, name)
    return new_grant(api.ctx.settings.satellite_url(), key, passphrase, project).serialize()


async def test_register_and_resolve(api: Api, main: httpx.AsyncClient, ctx: Context) -> None:
    grant = await _grant(api)
    r = await main.post("/v1/access", json={"access_grant": grant})
    assert r.status_code == 200, r.text
    made = r.json()
    assert set(made) == {"access_key_id", "secret_key", "endpoint"}
    assert len(made["access_key_id"]) == ACCESS_KEY_ID_LENGTH
    assert len(made["secret_key"]) == SECRET_KEY_LENGTH
    assert made["endpoint"] == "http://127.0.0.1:7891"
    assert r.headers["access-control-allow-origin"] == "*"
    # Other services resolve it with the operator token only.
    path = f"/v1/access/{made['access_key_id']}"
    assert (await main.get(path)).status_code == 401
    r = await main.get(path, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert r.status_code == 401
    r = await main.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert r.json() == {"access_grant": grant, "secret_key": made["secret_key"], "public": False}
    # The table alone reveals nothing: no id, secret or grant in clear.
    async with ctx.db.read() as conn:
        from sqlalchemy import text

        rows = (await conn.execute(text("SELECT * FROM auth_records"))).all()
    dump = repr(rows).encode()
    for secret in (made["access_key_id"], made["secret_key"], grant):
        assert secret.encode() not in dump
    resolved = await ctx.access.resolve(made["access_key_id"])
    assert resolved.principal.project_id is not None and resolved.public is False


async def test_closed_without_an_operator_token(api: Api, ctx: Context) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, auth_token=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=main_app(ctx, Metrics(), ("api",))),
        base_url="http://jcs.test",
    ) as c:
        r = await c.get("/v1/access/jwaohtj3dhixxfpzhwj522x7z3pb")
        assert r.status_code == 403 and "--auth-token" in r.text


async def test_wrong_passphrase_is_refused_by_name(api: Api, main: httpx.AsyncClient) -> None:
    key, project = await _key(api)
    satellite = api.ctx.settings.satellite_url()
    first = new_grant(satellite, key, "one passphrase", project).serialize()
    assert (await main.post("/v1/access", json={"access_grant": first})).status_code == 200
    other = new_grant(satellite, key, "another passphrase", project).serialize()
    r = await main.post("/v1/access", json={"access_grant": other})
    assert r.status_code == 403 and r.text.strip() == "wrong passphrase for project proj"
    # The same passphrase again is fine (and restricted grants of it too).
    narrowed = parse_grant(first).restrict(KeyCaveat.allowing({"read"})).serialize()
    assert (await main.post("/v1/access", json={"access_grant": narrowed})).status_code == 200


async def test_refusals_say_why(api: Api, main: httpx.AsyncClient, ctx: Context) -> None:
    key, project = await _key(api)
    # nested deeper than the JSON parser recurses (was a dropped connection)
    deep = b'{"access_grant":' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = await main.post("/v1/access", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON object" in r.text
    elsewhere = new_grant("sat.example.com:7777", key, "p", project).serialize()
    r = await main.post("/v1/access", json={"access_grant": elsewhere})
    assert r.status_code == 403 and "sat.example.com:7777" in r.text
    # Accepted with or without the scheme.
    bare = ctx.settings.satellite_url().removeprefix("http://")
    grant = new_grant(bare, key, "p", project)
    assert (
        await main.post("/v1/access", json={"access_grant": grant.serialize()})
    ).status_code == 200
    past = grant.restrict(KeyCaveat(not_after=datetime.now(UTC) - timedelta(seconds=5)))
    r = await main.post("/v1/access", json={"access_grant": past.serialize()})
    assert r.status_code == 401 and "expired" in r.text
    # Statuses as edge's newAccess gives them (pkg/auth/httpauth/resources.go):
    # 400 for a grant that is no grant; 422 for what its JSON decoder refuses
    # (a field of the wrong type, not an object); 413 past the size limit.
    for body, status, word in (
        ({"access_grant": "not a grant!"}, 400, "base58"),
        ({}, 400, "access grant"),
        ({"access_grant": None}, 400, "access grant"),
        ({"access_grant": 7}, 422, "access_grant"),
        ({"access_grant": grant.serialize(), "public": "yes"}, 422, "public"),
        ([1], 422, "JSON object"),
    ):
        r = await main.post("/v1/access", json=body)
        assert r.status_code == status and word in r.text, (body, r.text)
    # null is Go's zero value: a record that is not public
    r = await main.post("/v1/access", json={"access_grant": grant.serialize(), "public": None})
    assert r.status_code == 200
    r = await main.post("/v1/access", content=b"[1,2")
    assert r.status_code == 422 and "JSON" in r.text
    r = await main.post("/v1/access", content=b"x" * (70 * 1024))
    assert r.status_code == 413 and "larger" in r.text
    # A malformed id is a bad request (edge: FromBase32 fails, 400); a
    # well-formed one that names no record is unauthorized (NotFound, 401).
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for bad in ("not-an-id", "a" * 28, "j" + "1" * 27):
        r = await main.get(f"/v1/access/{bad}", headers=auth)
        assert r.status_code == 400 and "invalid access key id" in r.text, bad
    r = await main.get(f"/v1/access/{new_access_key_id()}", headers=auth)
    assert r.status_code == 401 and "unknown access key id" in r.text


async def test_credentials_follow_their_key(
    api: Api, main: httpx.AsyncClient, ctx: Context
) -> None:
    grant = parse_grant(await _grant(api))
    child = grant.restrict(KeyCaveat.allowing({"read", "list"}, paths=[CaveatPath("photos")]))
    made = (await main.post("/v1/access", json={"access_grant": child.serialize()})).json()
    resolved = await ctx.access.resolve(made["access_key_id"])
    assert resolved.principal.caveats[-1].paths[0].package == "photos"
    # Revoking the grant's key stops the credentials (here at once; elsewhere within the bound).
    await api.post("/v1/apiKey/revoke", {"key": child.api_key.serialize()})
    ctx.access.forget()
    with pytest.raises(Unauthorized, match="revoked"):
        await ctx.access.resolve(made["access_key_id"])
    r = await main.get(
        f"/v1/access/{made['access_key_id']}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 401 and "revoked" in r.text
    # The parent's credentials still work.
    parent = (await main.post("/v1/access", json={"access_grant": grant.serialize()})).json()
    assert (await ctx.access.resolve(parent["access_key_id"])).principal.caveats == ()


async def test_a_burst_of_checks_judges_the_key_once(
    api: Api, main: httpx.AsyncClient, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixteen requests with one access key id arriving as its cache entry
    expires (here: a cold cache) re-judge the grant once, not sixteen times;
    every one of them is answered."""
    grant = await _grant(api)
    made = (await main.post("/v1/access", json={"access_grant": grant})).json()
    judged = 0
    judge = ctx.access.grant_principal

    async def counted(g: object) -> object:
        nonlocal judged
        judged += 1
        return await judge(g)  # type: ignore[arg-type]

    monkeypatch.setattr(ctx.access, "grant_principal", counted)
    ctx.access.forget()
    burst = await asyncio.gather(*(ctx.access.resolve(made["access_key_id"]) for _ in range(16)))
    assert judged == 1
    assert {r.access_key_id for r in burst} == {made["access_key_id"]}
    assert all(r.principal == burst[0].principal for r in burst)


async def test_gc_removes_expired_credentials(
    api: Api, main: httpx.AsyncClient, ctx: Context
) -> None:
    grant = parse_grant(await _grant(api))
    soon = grant.restrict(KeyCaveat(not_after=datetime.now(UTC) + timedelta(hours=1)))
    made = (await main.post("/v1/access", json={"access_grant": soon.serialize()})).json()
    kept = (await main.post("/v1/access", json={"access_grant": grant.serialize()})).json()

    async def expired_for(age: timedelta) -> None:
        # the record's time is moved, not waited for
        async with ctx.db.write() as conn:
            await conn.execute(
                update(t.auth_records)
                .where(t.auth_records.c.expires_at.is_not(None))
                .values(expires_at=datetime.now(UTC) - age)
            )
        ctx.access.forget()

    # Just expired, and for days: the id says it expired (a share link
    # answers "Expired", not "unknown link").
    for age in (timedelta(seconds=1), EXPIRED_CREDENTIALS_KEPT - timedelta(minutes=1)):
        await expired_for(age)
        assert (await collect_garbage(ctx.db, ctx.store, timedelta(0))).credentials == 0
        with pytest.raises(Unauthorized, match="expired"):
            await ctx.access.resolve(made["access_key_id"])
    await expired_for(EXPIRED_CREDENTIALS_KEPT + timedelta(seconds=1))
    report = await collect_garbage(ctx.db, ctx.store, timedelta(0))
    assert report.credentials == 1
    with pytest.raises(UnknownAccessKey, match="unknown access key id"):
        await ctx.access.resolve(made["access_key_id"])
    assert (await ctx.access.resolve(kept["access_key_id"])).expires is None


async def test_a_client_gone_mid_body_is_no_server_error(
    ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by fuzzing: a body cut short by the client's disconnect raised
    out of the handler (a 500 and a traceback in the log)."""
    app = main_app(ctx, Metrics(), ("api",))
    sent: list[dict[str, object]] = []
    incoming = [
        {"type": "http.request", "body": b'{"access_grant": "1', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    headers = [(b"host", b"jcs.test"), (b"content-length", b"100")]
    scope = http_scope("POST", "/v1/access", headers)
    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_the_owner_takes_back_a_passphrase_a_delegate_fixed_first(
    api: Api, main: httpx.AsyncClient, ctx: Context
) -> None:
    key, project = await _key(api)
    satellite = ctx.settings.satellite_url()
    # Given away before the owner made any grant: write-only, under one prefix.
    narrow = (
        APIKey.parse(key)
        .restrict(KeyCaveat.allowing({"write"}, paths=[CaveatPath("photos", "p9/tmp/")]))
        .serialize()
    )
    squat = new_grant(satellite, narrow, "the delegate's own", project).serialize()
    squatted = await main.post("/v1/access", json={"access_grant": squat})
    assert squatted.status_code == 200
    owners = new_grant(satellite, key, "the owner's passphrase", project).serialize()
    refused = await main.post("/v1/access", json={"access_grant": owners})
    assert refused.status_code == 403 and "wrong passphrase for project proj" in refused.text

    async def set_passphrase(caller: str, grant: str) -> httpx.Response:
        return await main.post(
            "/v1/project/passphrase",
            json={"accessGrant": grant},
            headers={"Authorization": f"Bearer {caller}"},
        )

    # Neither the restricted key nor a grant of it may set it.
    for caller, grant in ((narrow, owners), (key, squat), (narrow, squat)):
        r = await set_passphrase(caller, grant)
        assert r.status_code == 403, r.text
        assert "only an unrestricted key of the project may set its passphrase" in r.text
    r = await set_passphrase(key, owners)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["name"] == "proj"

    assert (await main.post("/v1/access", json={"access_grant": owners})).status_code == 200
    refused = await main.post("/v1/access", json={"access_grant": squat})
    assert refused.status_code == 403 and "wrong passphrase" in refused.text
    # The delegate's credentials of the old passphrase stop working.
    with pytest.raises(AccessDenied, match="wrong passphrase"):
        await ctx.access.resolve(squatted.json()["access_key_id"])


async def test_setting_a_passphrase_refuses_what_is_not_a_grant(
    api: Api, main: httpx.AsyncClient
) -> None:
    key, _ = await _key(api)
    for bad in (None, 5, "", "x" * 100_000, "1abc\x00def", "../../etc/passwd", ["a"]):
        r = await main.post(
            "/v1/project/passphrase",
            json={"accessGrant": bad},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 400, (bad if not isinstance(bad, str) else bad[:20], r.text)
        assert r.json()["code"] == "BadArgument"
        assert "access grant" in r.json()["message"]


async def test_a_trailing_slash_is_not_redirected_to_the_host_header(
    api: Api, main: httpx.AsyncClient
) -> None:
    """A path with one slash too many is not a route: it is answered in the
    listener's error format, not with a 307 to a URL built from the
    client's ``Host`` header (found by a fuzzing pass, 2026-12-06:
    ``/v1/bucket/listAll/`` with ``Host: evil.example`` redirected to
    ``http://evil.example/v1/bucket/listAll``, and ``/v1/access/x/`` alike)."""
    key = api.client.headers["Authorization"]
    evil = {"Host": "evil.example", "Authorization": key}
    for method, path in (
        ("GET", "/v1/bucket/listAll/"),
        ("POST", "/v1/bucket/create/"),
        ("GET", "/v1/object/listByPath/"),
    ):
        r = await main.request(method, path, headers=evil)
        assert r.status_code == 404, (path, r.status_code, r.headers)
        assert "location" not in r.headers
        assert r.json()["code"] == "DataNotFound", r.text
    for path in ("/v1/access/", "/v1/access/jwnghhfo354nakxlsndf25gbouda/"):
        r = await main.get(
            path, headers={"Host": "evil.example", "Authorization": f"Bearer {TOKEN}"}
        )
        assert r.status_code == 404, (path, r.status_code, r.headers)
        assert "location" not in r.headers


async def test_two_authorization_headers_are_refused_not_guessed_between(
    api: Api, main: httpx.AsyncClient
) -> None:
    """The v1 API used the first of two ``Authorization`` headers (a valid
    key first: 200; a bogus one first: 401), so a proxy checking the other
    one and this server disagreed on who was asking (fuzzing, 2026-12-06)."""
    key = api.client.headers["Authorization"]
    for pair in ((key, "Bearer bogus"), ("Bearer bogus", key), (key, key)):
        r = await main.get("/v1/bucket/listAll", headers=[("Authorization", v) for v in pair])
        assert r.status_code == 400, (pair, r.text)
        assert r.json()["message"] == "2 Authorization headers: send one", r.text
    token = f"Bearer {TOKEN}"
    r = await main.get(
        "/v1/access/jwnghhfo354nakxlsndf25gbouda",
        headers=[("Authorization", token), ("Authorization", token)],
    )
    assert (r.status_code, r.text) == (401, "unauthorized\n")  # not looked up at all
