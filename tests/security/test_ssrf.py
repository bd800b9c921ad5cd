"""Server-side request forgery through user-space endpoints (issue 8, item 2).

A server that allows no internal endpoints (the default) refuses, at create
and at test, an S3 endpoint on loopback, on a closed loopback port alike (no
port-scan oracle) and on the cloud metadata address; the health job does not
contact such an endpoint either. Where the operator does allow it, a failing
backend's error names the step and the HTTP status, never the remote text.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from jointcloud.api.jcs.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.core.health import check_health
from jointcloud.errors import BadArgument, SpaceError
from jointcloud.spaces.opendal_space import OpenDALSpace
from jointcloud.spaces.registry import open_space
from jointcloud.spaces.rules import SpaceRules

CANARY = "SSRF-CANARY-7c1e9f3a-internal-only"
ACCESS_KEY = "AKIDSSRFTEST0001"
SECRET_KEY = "ssrf-test-secret-key-0001"


class CanaryServer:
    """An internal HTTP service on loopback: every request is counted and
    answered with ``status`` and a body (and a header) holding ``CANARY``."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.status = 500
        self.body = (
            f"<Error><Code>NoSuchBucket</Code><Message>{CANARY}</Message>"
            f"<Detail>{CANARY}</Detail></Error>"
        ).encode()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                owner.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(owner.body)))
                self.send_header("X-Internal-Secret", CANARY)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(owner.body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = answer

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def canary() -> Iterator[CanaryServer]:
    server = CanaryServer()
    server.start()
    yield server
    server.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def s3_body(endpoint: str, name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "storage": {"type": "S3", "endpoint": endpoint, "bucket": "b", "region": "us-east-1"},
        "credential": {"type": "AK", "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY},
    }
    if name is not None:
        body["name"] = name
    return body


def settings(tmp_path: Path, **kw: Any) -> Settings:
    """The server's defaults: no internal endpoint allowed unless ``kw`` says so."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}",
        **kw,
    )


@asynccontextmanager
async def server(s: Settings) -> AsyncIterator[tuple[Context, httpx.AsyncClient]]:
    ctx = await Context.open(s)
    try:
        await ctx.bootstrap()
        key = (s.data_dir / "root.key").read_text().strip()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(ctx, background=False)),
            base_url="http://jcs.test",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ) as client:
            yield ctx, client
    finally:
        await ctx.close()


def error(r: httpx.Response, code: str, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == code and body["data"] is None, body
    assert CANARY not in r.text and SECRET_KEY not in r.text, r.text
    return str(body["message"])


def refusal(r: httpx.Response, url: str, rule: str) -> str:
    msg = error(r, "BadArgument", 400)
    assert msg.startswith(f"storage.endpoint {url!r} resolves to "), msg
    assert rule in msg and "--allow-private-endpoints" in msg, msg
    return msg


async def test_loopback_endpoint_is_refused_at_test_and_create(
    tmp_path: Path, canary: CanaryServer
) -> None:
    async with server(settings(tmp_path)) as (_, client):
        for route, name in (("/v1/userSpace/test", None), ("/v1/userSpace/create", "internal")):
            r = await client.post(route, json=s3_body(canary.url, name))
            refusal(r, canary.url, "a loopback address")
        listed = (await client.get("/v1/userSpace/list")).json()["data"]["userSpaces"]
        assert [s["name"] for s in listed] == ["local"]
    assert canary.requests == []


async def test_closed_port_gets_the_same_refusal(tmp_path: Path, canary: CanaryServer) -> None:
    closed = f"http://127.0.0.1:{closed_port()}"
    async with server(settings(tmp_path)) as (_, client):
        r = await client.post("/v1/userSpace/test", json=s3_body(canary.url))
        open_msg = refusal(r, canary.url, "loopback")
        r = await client.post("/v1/userSpace/test", json=s3_body(closed))
        closed_msg = refusal(r, closed, "loopback")
    # No port-scan oracle: only the URL differs.
    assert open_msg.replace(canary.url, "URL") == closed_msg.replace(closed, "URL")
    assert canary.requests == []


@pytest.mark.parametrize(
    ("endpoint", "rule"),
    [
        ("http://169.254.169.254/", "a link-local address"),
        ("http://[fd00:ec2::254]/", "a private address"),
        ("http://10.0.0.1:9000", "a private address"),
        ("http://localhost:9000", "a loopback address"),
        ("http://[::ffff:127.0.0.1]:9000", "a loopback address"),
    ],
)
async def test_internal_endpoints_are_refused(tmp_path: Path, endpoint: str, rule: str) -> None:
    async with server(settings(tmp_path)) as (_, client):
        for route, name in (("/v1/userSpace/test", None), ("/v1/userSpace/create", "meta")):
            refusal(await client.post(route, json=s3_body(endpoint, name)), endpoint, rule)


async def test_azure_endpoint_is_checked_too(tmp_path: Path) -> None:
    storage = {
        "type": "AzureBlob",
        "accountName": "acct",
        "container": "c",
        "endpoint": "http://169.254.169.254",
    }
    async with server(settings(tmp_path)) as (_, client):
        r = await client.post("/v1/userSpace/create", json={"name": "az", "storage": storage})
        refusal(r, "http://169.254.169.254", "link-local")


async def test_bad_endpoint_urls_are_refused(tmp_path: Path) -> None:
    async with server(settings(tmp_path)) as (_, client):
        for url, why in (
            ("http://user:pw@8.8.8.8/", "user name or password"),
            ("ftp://8.8.8.8/", "http:// or https://"),
            ("http://127.0.0.1:9000\\@8.8.8.8", "backslash"),
        ):
            msg = error(
                await client.post("/v1/userSpace/test", json=s3_body(url)), "BadArgument", 400
            )
            assert msg.startswith("storage.endpoint") and why in msg, msg


async def test_own_listener_is_refused_even_when_private_endpoints_are_allowed(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, allow_private_endpoints=True, listen="127.0.0.1:7890")
    async with server(s) as (_, client):
        msg = error(
            await client.post("/v1/userSpace/test", json=s3_body("http://localhost:7890")),
            "BadArgument",
            400,
        )
        assert "listener of this server" in msg, msg


async def test_allowed_endpoint_errors_name_step_and_status_not_the_body(
    tmp_path: Path, canary: CanaryServer
) -> None:
    async with server(settings(tmp_path, endpoint_allow=("127.0.0.1",))) as (_, client):
        r = await client.post("/v1/userSpace/test", json=s3_body(canary.url))
        msg = error(r, "OperationFailed", 503)
        assert "step 'connect'" in msg and "HTTP status 500" in msg, msg
        assert canary.requests, "the allowed endpoint was contacted"

        canary.status = 403
        r = await client.post("/v1/userSpace/test", json=s3_body(canary.url))
        msg = error(r, "OperationFailed", 503)
        assert "step 'auth'" in msg and "HTTP status 403" in msg, msg

        # A saved space, tested by ID: the same.
        r = await client.post("/v1/userSpace/create", json=s3_body(canary.url, "allowed"))
        assert r.status_code == 200, r.text
        sid = r.json()["data"]["userSpace"]["userSpaceID"]
        canary.status = 500
        r = await client.post("/v1/userSpace/test", json={"userSpaceID": sid})
        msg = error(r, "OperationFailed", 503)
        assert "HTTP status 500" in msg, msg


@pytest.mark.parametrize("status", [200, 301, 403, 404, 500])
@pytest.mark.parametrize(
    "body",
    [
        f"<Error><Code>NoSuchBucket</Code><Message>{CANARY}</Message></Error>",
        f"<Error><Code>{CANARY}</Code><Message>{CANARY}</Message></Error>",
        f"plain text {CANARY}\n\nContext:\n   response: Parts {{ status: 999, {CANARY} }}",
    ],
)
@pytest.mark.parametrize("scheme", ["s3", "azblob"])
async def test_backend_errors_never_carry_remote_text(
    canary: CanaryServer, status: int, body: str, scheme: str
) -> None:
    canary.status = status
    canary.body = body.encode()
    if scheme == "s3":
        space = OpenDALSpace(
            "s3",
            "/root",
            endpoint=canary.url,
            bucket="b",
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            disable_config_load=True,
            disable_ec2_metadata=True,
        )
    else:
        space = OpenDALSpace(
            "azblob",
            "/root",
            endpoint=canary.url,
            container="c",
            account_name="acct",
            account_key="c3NyZi10ZXN0LWFjY291bnQta2V5LTAwMDE=",
        )
    failures = 0
    for op in (
        lambda: space.stat("k"),
        lambda: space.read("k"),
        lambda: space.read("k", 1, 5),
        lambda: space.put("k", b"data"),
        lambda: space.delete("k"),
    ):
        try:
            await op()
        except SpaceError as exc:
            failures += 1
            text = "".join(traceback.format_exception(exc)) + repr(exc)
            assert CANARY not in text and SECRET_KEY not in text, text
            if status >= 300 and "not found" not in str(exc):
                assert f"HTTP status {status}" in str(exc), str(exc)
            assert "status 999" not in str(exc)
    assert canary.requests
    assert failures or status == 200


async def test_health_job_does_not_contact_a_refused_endpoint(
    tmp_path: Path, canary: CanaryServer
) -> None:
    # Saved while the operator allowed loopback (and reachable then)...
    async with server(settings(tmp_path, endpoint_allow=("127.0.0.1",))) as (_, client):
        r = await client.post("/v1/userSpace/create", json=s3_body(canary.url, "was-allowed"))
        assert r.status_code == 200, r.text
        sid = r.json()["data"]["userSpace"]["userSpaceID"]
        await client.post("/v1/userSpace/test", json={"userSpaceID": sid})
        assert canary.requests
    # ... then the server restarts without the allowance.
    canary.requests.clear()
    async with server(settings(tmp_path)) as (ctx, client):
        space = (await client.get("/v1/userSpace/get", params={"userSpaceID": sid})).json()
        assert space["data"]["userSpace"]["state"] == "Unavailable"  # failed its test above
        r = await client.post("/v1/userSpace/update", json={"userSpaceID": sid, "state": "Normal"})
        assert r.status_code == 200, r.text

        report = await check_health(ctx.db, ctx.pool, limit_s=10)
        by_id = {r.space.user_space_id: r for r in report.results}
        result = by_id[sid]
        assert result.state == "Unavailable"
        assert result.error is not None
        assert "storage.endpoint" in result.error and "a loopback address" in result.error
        assert CANARY not in result.error
        assert all(r.ok for i, r in by_id.items() if i != sid)  # the local space is fine

        # A test by ID is refused the same way, without contacting it either.
        r = await client.post("/v1/userSpace/test", json={"userSpaceID": sid})
        msg = error(r, "OperationFailed", 503)
        assert "step 'connect'" in msg and "a loopback address" in msg, msg
        space = (await client.get("/v1/userSpace/get", params={"userSpaceID": sid})).json()
        assert space["data"]["userSpace"]["state"] == "Unavailable"
    assert canary.requests == []


def gcs_files(canary: CanaryServer, secret: Path) -> dict[str, dict[str, Any]]:
    """Google credential files that make their reader fetch and post:
    ``secret``'s text, or an internal URL's answer, to ``canary``."""
    token = {"token_url": f"{canary.url}/token", "audience": "//iam.googleapis.com/x"}
    text = {"type": "text"}
    return {
        "file": {
            "type": "external_account",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "credential_source": {"file": str(secret), "format": text},
            **token,
        },
        "url": {
            "type": "external_account",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "credential_source": {
                "url": f"{canary.url}/computeMetadata",
                "headers": {"Metadata-Flavor": "Google"},
                "format": text,
            },
            **token,
        },
        "impersonated": {
            "type": "impersonated_service_account",
            "service_account_impersonation_url": f"{canary.url}/sa:generateAccessToken",
            "source_credentials": {"client_id": "a", "client_secret": "b", "refresh_token": "c"},
        },
        "authorized_user": {
            "type": "authorized_user",
            "client_id": "a",
            "client_secret": "b",
            "refresh_token": "c",
        },
    }


@pytest.mark.parametrize("kind", ["file", "url", "impersonated", "authorized_user"])
async def test_gcs_credentials_that_fetch_or_read_are_refused(
    tmp_path: Path, canary: CanaryServer, kind: str
) -> None:
    """Found by review: a GCS space's credential JSON of another kind than a
    service-account key made the server read any file (``root.key``) or fetch
    any URL and post it to a URL the user chose, past every path and endpoint
    check. Refused at create and test, and at open for a row stored before."""
    async with server(settings(tmp_path)) as (ctx, client):
        secret = ctx.settings.data_dir / "root.key"
        cred = {"type": "GCSServiceAccount", "json": gcs_files(canary, secret)[kind]}
        storage = {"type": "GCS", "bucket": "b"}
        for route, name in (("/v1/userSpace/test", None), ("/v1/userSpace/create", "g")):
            body: dict[str, Any] = {"storage": storage, "credential": cred}
            if name is not None:
                body["name"] = name
            msg = error(await client.post(route, json=body), "BadArgument", 400)
            assert msg.startswith("credential.json must be a service-account key"), msg
            assert secret.read_text().strip() not in msg
        listed = (await client.get("/v1/userSpace/list")).json()["data"]["userSpaces"]
        assert [s["name"] for s in listed] == ["local"]
        # A row written before this check is refused when opened.
        with pytest.raises(BadArgument, match="service-account key"):
            open_space(storage, cred, "jcs", rules=ctx.pool.rules)
    assert canary.requests == []


def test_gcs_service_account_key_is_passed_on_without_other_fields() -> None:
    """What reaches the Google signer is the key and the e-mail, nothing the
    signer might one day read a URL or a file from."""
    key = {
        "type": "service_account",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
        "client_email": "a@p.iam.gserviceaccount.com",
        "token_uri": "http://169.254.169.254/token",
        "universe_domain": "attacker.example",
    }
    space = open_space(
        {"type": "GCS", "bucket": "b"},
        {"type": "GCSServiceAccount", "json": key},
        "jcs",
        rules=SpaceRules(),
    )
    assert isinstance(space, OpenDALSpace)
    (sent,) = space._secrets  # the one secret option: the credential
    assert json.loads(base64.b64decode(sent)) == {
        k: key[k] for k in ("type", "private_key", "client_email")
    }
