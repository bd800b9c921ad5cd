"""Fixtures of the gateway facade's tests.

The facade (``api/gateway``) is called in process through
``httpx.ASGITransport``; what it calls runs on loopback as it would in
production: the main listener's app (satellite ``/v1/project/info`` and the
auth service ``/v1/access``) and this server's S3 endpoint, both served by
uvicorn in the test's event loop, and moto's S3 server (a third-party S3
service) in a thread. The facade touches no database itself, so these tests
run on SQLite only.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from moto.server import ThreadedMotoServer

sys.path.insert(0, str(Path(__file__).parent))

from gw_support import PASSPHRASE, Backend, Jcs, Recorder

from jointcloud.api.gateway.app import create_app
from jointcloud.api.gateway.s3client import ClientCache
from jointcloud.api.host import Metrics, main_app
from jointcloud.api.s3.app import create_app as s3_app
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.keys.grant import new_grant


@pytest.fixture
def database_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    """SQLite only: the facade is an HTTP client, the store is tested elsewhere."""
    path = tmp_path / "meta.db"
    shutil.copyfile(migrated_sqlite, path)
    return f"sqlite+aiosqlite:///{path}"


class _Served:
    """An ASGI app served by uvicorn on a loopback port in this event loop."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))

    async def close(self) -> None:
        self.server.should_exit = True
        await self.task
        self.sock.close()


@pytest.fixture
async def jcs(ctx: Context) -> AsyncIterator[Jcs]:
    admin = await ctx.accounts.user_named("admin")
    owner = Principal.user(admin.user_id)
    project = await ctx.buckets.create(owner, "gwproj")
    _, key = await ctx.project_keys.create(owner, project.bucket_id, "gateway")
    grant = new_grant(ctx.settings.satellite_url(), key, PASSPHRASE, project.project_id)
    made = await ctx.access.register(grant.serialize())
    main = _Served(main_app(ctx, Metrics(), ("api",)))
    s3 = _Served(s3_app(ctx))
    try:
        yield Jcs(
            ctx,
            main.url,
            s3.url,
            key,
            str(project.project_id),
            project.bucket_id,
            Backend("jcs", s3.url, made.access_key_id, made.secret_key),
        )
    finally:
        await asyncio.gather(main.close(), s3.close())


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["jcs", "moto"])
def backend(request: pytest.FixtureRequest, moto_url: str) -> Backend:
    if request.param == "moto":
        return Backend("moto", moto_url, "testing", "testing")  # moto takes any keys
    served: Jcs = request.getfixturevalue("jcs")
    return served.backend


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def gw(ctx: Context, recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx, clients=ClientCache(recorder.factory))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test", timeout=60
    ) as client:
        yield client
