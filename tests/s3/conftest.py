"""Fixtures of the S3 endpoint's functional tests: the S3 app of a test's
context served by uvicorn on a loopback port inside the test's event loop,
with credentials of one project from the auth service."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from s3_support import PASSPHRASE, S3

from jointcloud.api.s3.app import create_app
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.keys.grant import new_grant


@pytest.fixture
async def s3(ctx: Context) -> AsyncIterator[S3]:
    admin = await ctx.accounts.user_named("admin")
    owner = Principal.user(admin.user_id)
    project = await ctx.buckets.create(owner, "s3proj")
    _, key = await ctx.project_keys.create(owner, project.bucket_id, "s3")
    grant = new_grant(ctx.settings.satellite_url(), key, PASSPHRASE, project.project_id)
    text = grant.serialize()
    made = await ctx.access.register(text)
    # A socket already listening: requests queue in its backlog until the
    # server task takes them, so nothing has to wait for the server to start.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(ctx), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield S3(
            ctx,
            f"http://127.0.0.1:{port}",
            made.access_key_id,
            made.secret_key,
            project.bucket_id,
            text,
        )
    finally:
        server.should_exit = True
        await task
        sock.close()
