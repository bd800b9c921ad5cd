"""Helpers of link sharing's tests (no tests here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime

import httpx
from starlette.types import ASGIApp, Message

from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.core.commands import ObjectAddress, ObjectMeta, PackageRef, PutObject
from jointcloud.core.models import Bucket, ObjectInfo
from jointcloud.keys.caveats import CaveatPath, KeyCaveat
from jointcloud.keys.grant import Grant

PASSPHRASE = "share test passphrase"
READ_LIST = ("read", "list")


async def chunks(data: bytes, piece: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


@dataclass
class World:
    ctx: Context
    owner: Principal
    project: Bucket
    bucket: str  # the package (S3 bucket) "docs"
    key: str  # the project's API key
    grant: Grant  # an unrestricted grant of the project
    client: httpx.AsyncClient

    async def put(
        self, path: str, data: bytes, content_type: str | None = None, bucket: str | None = None
    ) -> ObjectInfo:
        address = ObjectAddress(
            PackageRef.by_name(bucket or self.bucket, self.project.bucket_id), path
        )
        return await self.ctx.objects.put(
            self.owner,
            PutObject(address, chunks(data), meta=ObjectMeta(content_type=content_type)),
        )

    def restricted(
        self,
        allow: Iterable[str] = READ_LIST,
        paths: Iterable[str] | None = None,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Grant:
        """The grant restricted to ``allow`` on ``paths`` of the bucket
        (None: the whole bucket)."""
        places = [CaveatPath(self.bucket, p) for p in (paths if paths is not None else [""])]
        caveat = KeyCaveat.allowing(
            set(allow), paths=places, not_before=not_before, not_after=not_after
        )
        return self.grant.restrict(caveat)

    async def public(self, grant: Grant | None = None, *, public: bool = True) -> str:
        """An access key id registered for ``grant`` (default: read+list
        of the bucket), public unless told."""
        made = await self.ctx.access.register(
            (grant or self.restricted()).serialize(), public=public
        )
        return made.access_key_id


async def sent_to_a_client_that_leaves(app: ASGIApp, path: str, query: str = "") -> int:
    """Body bytes ``app`` hands the server for a GET whose client goes away
    once the first piece of the answer has come: as uvicorn does for a
    closed connection, ``send`` then takes everything without a word, and
    ``receive`` says ``http.disconnect``."""
    gone = asyncio.Event()
    asked = False
    sent = 0

    async def receive() -> Message:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal sent
        if message["type"] == "http.response.body" and message.get("body"):
            sent += len(message["body"])
            gone.set()
            await asyncio.sleep(0)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"share.test")],
        "server": ("share.test", 80),
        "client": ("127.0.0.1", 50000),
    }
    async with asyncio.timeout(60):
        await app(scope, receive, send)
    return sent
