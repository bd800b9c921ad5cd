"""Server-side request forgery through the gateway facade (seed 003).

The facade calls whatever URL its caller names: the ``Endpoint`` header,
``satellite_node_url`` and ``auth_service``. A server on its defaults refuses
loopback, private, link-local and metadata addresses there exactly as for
user-space endpoints — before connecting (an internal "canary" service sees
no request) — while its own listeners stay callable (the facade's ordinary
use), and the operator's allow-list opens a named address.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from test_ssrf import CanaryServer, canary, closed_port, settings  # noqa: F401

from jointcloud.api.gateway.app import create_app as gateway_app
from jointcloud.api.host import Metrics, main_app
from jointcloud.api.s3.app import create_app as s3_app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.core.authz import Principal

PASSWORD = "gateway ssrf passphrase"
HINT = "--allow-private-endpoints"


@asynccontextmanager
async def facade(s: Settings) -> AsyncIterator[tuple[Context, httpx.AsyncClient]]:
    ctx = await Context.open(s)
    try:
        await ctx.bootstrap()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway_app(ctx)),
            base_url="http://gateway.test",
            timeout=60,
        ) as client:
            yield ctx, client
    finally:
        await ctx.close()


def refused(r: httpx.Response, field: str, rule: str) -> str:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == -1, body
    msg = str(body["msg"])
    assert msg.startswith(field + " "), msg
    assert rule in msg and HINT in msg, msg
    return msg


def s3_headers(endpoint: str) -> dict[str, str]:
    return {"AccessKeyId": "AKIDSSRF", "SecretKey": "not-a-real-secret", "Endpoint": endpoint}


async def test_loopback_targets_are_refused_before_any_connection(
    tmp_path: Path,
    canary: CanaryServer,  # noqa: F811
) -> None:
    async with facade(settings(tmp_path)) as (_, gw):
        r = await gw.get("/listBuckets", headers=s3_headers(canary.url))
        refused(r, "header Endpoint", "a loopback address")
        r = await gw.post("/uploadObject", headers=s3_headers(canary.url), data={"bucket": "b"})
        refused(r, "header Endpoint", "a loopback address")
        form = {"satellite_node_url": canary.url, "restrict_key": "x", "password": PASSWORD}
        r = await gw.post("/createAccessGrant", data=form)
        refused(r, "parameter satellite_node_url", "a loopback address")
        r = await gw.post(
            "/createCredentials", data={"auth_service": canary.url, "access_grant": "x"}
        )
        refused(r, "parameter auth_service", "a loopback address")
    assert canary.requests == []


async def test_a_closed_port_answers_like_an_open_one(
    tmp_path: Path,
    canary: CanaryServer,  # noqa: F811
) -> None:
    closed = f"http://127.0.0.1:{closed_port()}"
    async with facade(settings(tmp_path)) as (_, gw):
        open_msg = refused(
            await gw.get("/listBuckets", headers=s3_headers(canary.url)),
            "header Endpoint",
            "loopback",
        )
        closed_msg = refused(
            await gw.get("/listBuckets", headers=s3_headers(closed)), "header Endpoint", "loopback"
        )
    assert open_msg.replace(canary.url, "URL") == closed_msg.replace(closed, "URL")


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("http://169.254.169.254", "a link-local address"),
        ("169.254.169.254", "a link-local address"),  # bare host: https:// is assumed
        ("http://[fd00:ec2::254]", "a private address"),
        ("http://10.0.0.1:9000", "a private address"),
        ("http://localhost:9000", "a loopback address"),
        ("http://[::ffff:127.0.0.1]:9000", "a loopback address"),
        ("nodeid@127.0.0.1:7777", "a loopback address"),  # a satellite's node-id form
    ],
)
async def test_internal_addresses_are_refused_in_every_field(
    tmp_path: Path, target: str, rule: str
) -> None:
    async with facade(settings(tmp_path)) as (_, gw):
        refused(await gw.get("/listBuckets", headers=s3_headers(target)), "header Endpoint", rule)
        form = {"satellite_node_url": target, "restrict_key": "x", "password": PASSWORD}
        r = await gw.post("/createAccessGrant", json=form)
        refused(r, "parameter satellite_node_url", rule)
        r = await gw.post("/createCredentials", json={"auth_service": target, "access_grant": "g"})
        refused(r, "parameter auth_service", rule)


async def test_the_operator_allow_list_opens_a_named_address(
    tmp_path: Path,
    canary: CanaryServer,  # noqa: F811
) -> None:
    allow = (f"127.0.0.1:{canary.port}",)
    async with facade(settings(tmp_path, endpoint_allow=allow)) as (_, gw):
        r = await gw.get("/listBuckets", headers=s3_headers(canary.url))
        assert r.json()["code"] == -1  # the canary answers 500 to everything
        other = f"http://127.0.0.1:{closed_port()}"
        refused(
            await gw.get("/listBuckets", headers=s3_headers(other)), "header Endpoint", "loopback"
        )
    assert canary.requests, "the allowed address was not called"


class _Listener:
    """This server's own listener: a socket bound before the settings name it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.task: asyncio.Task[None] | None = None
        self.server: uvicorn.Server | None = None

    def serve(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))

    async def close(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
        self.sock.close()


async def test_own_listeners_stay_callable_on_the_defaults(
    tmp_path: Path,
    canary: CanaryServer,  # noqa: F811
) -> None:
    """No allow-list at all: the satellite, auth service and S3 endpoint of
    this very server work through the facade; the canary beside them does not."""
    main, s3 = _Listener(), _Listener()
    s = settings(tmp_path, listen=main.address, s3_listen=s3.address)
    try:
        async with facade(s) as (ctx, gw):
            main.serve(main_app(ctx, Metrics(), ("api",)))
            s3.serve(s3_app(ctx))
            admin = await ctx.accounts.user_named("admin")
            project = await ctx.buckets.create(Principal.user(admin.user_id), "ssrfproj")
            _, key = await ctx.project_keys.create(
                Principal.user(admin.user_id), project.bucket_id, "k"
            )
            form = {
                "satellite_node_url": f"http://{main.address}",
                "restrict_key": key,
                "password": PASSWORD,
            }
            grant = (await gw.post("/createAccessGrant", json=form)).json()
            assert grant["code"] == 0, grant
            body = {"auth_service": f"http://{main.address}", "access_grant": grant["data"]}
            made = (await gw.post("/createCredentials", json=body)).json()
            assert made["code"] == 0, made
            creds = made["data"]
            headers = {
                "AccessKeyId": creds["access_key_id"],
                "SecretKey": creds["secret_key"],
                "Endpoint": f"http://{s3.address}",
            }
            r = (await gw.post("/createBucket", headers=headers, json={"bucket": "own"})).json()
            assert r["code"] == 0, r
            listed = (await gw.get("/listBuckets", headers=headers)).json()
            assert [b["bucket"] for b in listed["data"]] == ["own"], listed
            r = await gw.get("/listBuckets", headers={**headers, "Endpoint": canary.url})
            refused(r, "header Endpoint", "a loopback address")
    finally:
        await asyncio.gather(main.close(), s3.close())
    assert canary.requests == []
