"""Which accesses open a share link, and the page (and status) of those that
do not: unknown 404, not public / not valid yet 403, expired / revoked 410;
a list-only access sees names but never bytes; ``handles`` and the legacy
form of the seed's ``/shareUrl``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from share_support import PASSPHRASE, READ_LIST, World

from jointcloud.api.common.observability import HttpMetrics
from jointcloud.api.share.app import create_app, handles
from jointcloud.errors import MetadataUnavailable
from jointcloud.keys.caveats import CaveatPath, KeyCaveat
from jointcloud.keys.credentials import new_access_key_id
from jointcloud.keys.grant import new_grant


def refused(r: object, status: int, words: str) -> None:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"] == "text/html; charset=utf-8"  # type: ignore[attr-defined]
    assert r.headers["x-content-type-options"] == "nosniff"  # type: ignore[attr-defined]
    assert words in r.text, r.text  # type: ignore[attr-defined]


@pytest.mark.pg
async def test_public_access_key_and_whole_grant_open_the_page(world: World) -> None:
    await world.put("a.txt", b"hello")
    # a grant as /shareUrl makes one: derived from a passphrase, read + list of one object
    derived = new_grant(
        world.ctx.settings.satellite_url(), world.key, PASSPHRASE, world.project.project_id
    )
    grant = derived.restrict(KeyCaveat.allowing(READ_LIST, paths=[CaveatPath("docs", "a.txt")]))
    access = await world.public(grant)
    r = await world.client.get(f"/s/{access}/docs/a.txt")
    assert r.status_code == 200
    assert "hello" in r.text
    whole = grant.serialize()
    r = await world.client.get(f"/s/{whole}/docs/a.txt")
    assert r.status_code == 200
    assert "hello" in r.text
    r = await world.client.get(f"/raw/{whole}/docs/a.txt")
    assert r.content == b"hello"


@pytest.mark.pg
async def test_not_public_unknown_and_malformed(world: World) -> None:
    await world.put("a.txt", b"hello")
    private = await world.public(public=False)
    refused(await world.client.get(f"/s/{private}/docs/a.txt"), 403, "not public")
    refused(await world.client.get(f"/raw/{private}/docs/a.txt"), 403, "not public")
    refused(await world.client.get(f"/s/{new_access_key_id()}/docs/a.txt"), 404, "unknown")
    refused(await world.client.get("/s/" + "1" * 120 + "/docs/a.txt"), 404, "not a valid access")
    refused(await world.client.get("/s/nonsense/docs/a.txt"), 404, "unknown")


@pytest.mark.pg
async def test_not_valid_yet(world: World) -> None:
    await world.put("a.txt", b"hello")
    later = datetime.now(UTC) + timedelta(days=1)
    grant = world.restricted(not_before=later)
    access = await world.public(grant)
    refused(await world.client.get(f"/s/{access}/docs/a.txt"), 403, "not valid yet")
    refused(await world.client.get(f"/raw/{access}/docs/a.txt"), 403, "not valid yet")
    refused(await world.client.get(f"/s/{grant.serialize()}/docs/a.txt"), 403, "not valid yet")


@pytest.mark.pg
async def test_expired(world: World) -> None:
    await world.put("a.txt", b"hello")
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    grant = world.restricted(not_after=soon)
    access = await world.public(grant)
    assert (await world.client.get(f"/raw/{access}/docs/a.txt")).content == b"hello"
    await asyncio.sleep((soon - datetime.now(UTC)).total_seconds() + 0.1)
    refused(await world.client.get(f"/s/{access}/docs/a.txt"), 410, "expired")
    refused(await world.client.get(f"/raw/{access}/docs/a.txt"), 410, "expired")
    refused(await world.client.get(f"/s/{grant.serialize()}/docs/a.txt"), 410, "expired")


@pytest.mark.pg
async def test_revoked(world: World) -> None:
    await world.put("a.txt", b"hello")
    grant = world.restricted()
    access = await world.public(grant)
    assert (await world.client.get(f"/raw/{access}/docs/a.txt")).status_code == 200
    await world.ctx.project_keys.revoke(world.owner, grant.api_key.serialize())
    world.ctx.access.forget()  # the per-process cache (revocation reaches it within its bound)
    refused(await world.client.get(f"/s/{access}/docs/a.txt"), 410, "revoked")
    refused(await world.client.get(f"/raw/{access}/docs/a.txt"), 410, "revoked")
    refused(await world.client.get(f"/s/{grant.serialize()}/docs/a.txt"), 410, "revoked")


async def test_wrong_passphrase_is_refused(world: World) -> None:
    await world.put("a.txt", b"hello")
    await world.public()  # fixes the project's passphrase
    other = new_grant(
        world.ctx.settings.satellite_url(), world.key, "another", world.project.project_id
    )
    refused(await world.client.get(f"/s/{other.serialize()}/docs/a.txt"), 403, "wrong passphrase")


async def test_one_object_grant_reaches_that_object_only(world: World) -> None:
    await world.put("a.txt", b"hello")
    await world.put("b.txt", b"secret")
    access = await world.public(world.restricted(paths=["a.txt"]))
    # keys that merely begin with the shared one, written after the link
    await world.put("a.txt.bak", b"secret backup")
    await world.put("a.txt-old/draft", b"secret draft")
    assert (await world.client.get(f"/raw/{access}/docs/a.txt")).status_code == 200
    for other in ("b.txt", "a.txt.bak", "a.txt-old/draft"):
        refused(await world.client.get(f"/raw/{access}/docs/{other}"), 403, "does not reach")
        refused(await world.client.get(f"/s/{access}/docs/{other}"), 403, "does not reach")
    # the listing of the bucket shows the one object only
    r = await world.client.get(f"/s/{access}/docs/")
    assert r.status_code == 200
    assert "a.txt" in r.text
    assert "b.txt" not in r.text and "a.txt.bak" not in r.text and "a.txt-old" not in r.text
    zipped = await world.client.get(f"/raw/{access}/docs/?download-kind=zip")
    assert b"secret" not in zipped.content and b"a.txt.bak" not in zipped.content


@pytest.mark.pg
async def test_list_only_access_sees_names_not_bytes(world: World) -> None:
    await world.put("dir/a.png", b"\x89PNG....")
    access = await world.public(world.restricted(allow=["list"]))
    r = await world.client.get(f"/s/{access}/docs/dir/a.png")
    assert r.status_code == 200
    assert "a.png" in r.text and "8 bytes" in r.text
    assert 'id="download"' not in r.text and "<img" not in r.text
    assert "listing only" in r.text
    refused(await world.client.get(f"/raw/{access}/docs/dir/a.png"), 403, "forbids read")
    r = await world.client.get(f"/s/{access}/docs/dir/")
    assert r.status_code == 200
    assert "a.png" in r.text and "?download" not in r.text and 'id="zip"' not in r.text
    r = await world.client.get(f"/s/{access}/docs/dir/?download-kind=zip")
    assert r.status_code == 403


async def test_read_only_access_cannot_list(world: World) -> None:
    await world.put("dir/a.txt", b"x")
    access = await world.public(world.restricted(allow=["read"]))
    assert (await world.client.get(f"/raw/{access}/docs/dir/a.txt")).content == b"x"
    refused(await world.client.get(f"/s/{access}/docs/dir/"), 403, "does not allow listing")
    refused(
        await world.client.get(f"/s/{access}/docs/dir/?download-kind=zip"),
        403,
        "does not allow listing",
    )


async def test_legacy_form_redirects(world: World) -> None:
    await world.put("a.txt", b"hello")
    access = await world.public()
    r = await world.client.get(f"/{access}/docs%2Fa.txt")
    assert r.status_code == 308  # as edge: http.StatusPermanentRedirect
    assert r.headers["location"] == f"/s/{access}/docs/a.txt"
    r = await world.client.get(f"/{access}/docs%2Fsub%20dir%2Fx%3Fy.txt?z=1")
    assert r.headers["location"] == f"/s/{access}/docs/sub%20dir/x%3Fy.txt?z=1"
    r = await world.client.get(f"/{access}/docs")
    assert r.headers["location"] == f"/s/{access}/docs/"
    r = await world.client.get(f"/{access}/docs%2Fa.txt", follow_redirects=True)
    assert r.status_code == 200 and "hello" in r.text


def test_handles() -> None:
    access = new_access_key_id()
    grant_like = "1" + "A" * 150
    for path in (
        "/s/x",
        "/s",
        "/raw/a/b/c",
        f"/{access}/docs/a.txt",
        f"/{access}",
        f"/{grant_like}/docs/a",
    ):
        assert handles(path), path
    for path in (
        "/",
        "/v1/bucket/list",
        "/createBucket",
        "/shareUrl",
        "/metrics",
        "/healthz",
        "/sx/a",
        "/rawdata",
        "/" + "a" * 28 + "/x",  # 28 characters that are no access key id
    ):
        assert not handles(path), path


@pytest.mark.pg
async def test_an_unreachable_database_is_not_a_bad_link(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database out of reach (meta/outage.py) says 503, try again: the
    link itself may be fine."""
    await world.put("a.txt", b"hello")
    access = await world.public()

    async def unreachable(_: str) -> None:
        raise MetadataUnavailable("the metadata database did not answer within 30 s")

    monkeypatch.setattr(world.ctx.access, "resolve", unreachable)
    for page in ("s", "raw"):
        r = await world.client.get(f"/{page}/{access}/docs/a.txt")
        refused(r, 503, "cannot be opened right now")
        assert "did not answer within 30 s" in r.text


async def test_refused_links_are_counted_as_share_open(world: World) -> None:
    """Refused links were counted with operation "unmatched" (the label of
    paths no route takes), which sharing.md does not list."""
    metrics = HttpMetrics()
    app = create_app(world.ctx, metrics)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://share.test"
    ) as client:
        for _ in range(3):
            refused(await client.get(f"/s/{new_access_key_id()}/docs/a.txt"), 404, "unknown")
    labels = {"protocol": "share", "method": "GET", "status": "404"}
    count = metrics.registry.get_sample_value
    assert count("jcs_http_requests_total", {**labels, "operation": "share.open"}) == 3
    assert count("jcs_http_requests_total", {**labels, "operation": "unmatched"}) is None
