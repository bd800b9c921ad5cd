"""Calling the facade in a test, in JSON or in XML, and reading the answer
back in JSON terms: an XML answer's element names are checked against the
seed's CamelCase names on the way."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from jointcloud.api import host
from jointcloud.api.gateway.s3client import new_client
from jointcloud.context import Context

PASSPHRASE = "gateway test passphrase"
_names = itertools.count()


def unique(prefix: str = "gw") -> str:
    """A bucket name no other test of this process uses."""
    return f"{prefix}-{next(_names)}"


@dataclass
class Backend:
    """An S3 service the facade is pointed at, with a key pair for it."""

    name: str
    endpoint: str
    access_key_id: str
    secret_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "AccessKeyId": self.access_key_id,
            "SecretKey": self.secret_key,
            "Endpoint": self.endpoint,
        }

    def client(self) -> Any:
        return new_client(self.endpoint, self.access_key_id, self.secret_key)


@dataclass
class Jcs:
    """This server: main listener (satellite, auth service), S3 endpoint, one
    project with an unrestricted project key and credentials."""

    ctx: Context
    main_url: str
    s3_url: str
    api_key: str
    project_uuid: str
    bucket_id: int
    backend: Backend


@dataclass
class Recorder:
    """Every S3 request the facade's clients make: (operation, body size)."""

    calls: list[tuple[str, int | None]] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)

    def factory(self, endpoint: str, access_key_id: str, secret_key: str) -> Any:
        client = new_client(endpoint, access_key_id, secret_key)

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            body = params.get("Body")
            # A spooled body (a file) counts by the length sent with it.
            size = len(body) if isinstance(body, bytes | bytearray) else params.get("ContentLength")
            self.calls.append((model.name, size))

        client.meta.events.register("provide-client-params.s3.*", record)
        self.clients.append(client)
        return client

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]


# The seed's XML element names of each JSON field.
CAMEL = {
    "bucket": "Bucket",
    "created": "Created",
    "key": "Key",
    "size": "Size",
    "kind": "Kind",
    "access_key_id": "AccessKeyId",
    "secret_key": "SecretKey",
    "endpoint": "Endpoint",
    "etag": "ETag",
    "content_length": "ContentLength",
    "last_modified": "LastModified",
    "part_number": "PartNumber",
    "upload_id": "UploadId",
    "initiated": "Initiated",
    "value": "Value",
}
SNAKE = {v: k for k, v in CAMEL.items()}
INTS = {"created", "size", "content_length", "last_modified", "part_number", "initiated"}


@dataclass
class Answer:
    code: int
    msg: str
    data: Any
    response: httpx.Response

    @property
    def ok(self) -> bool:
        return self.code == 0


def _element(el: ET.Element) -> Any:
    children = list(el)
    if not children:
        return el.text or ""
    out: dict[str, Any] = {}
    for child in children:
        assert child.tag in SNAKE, f"<{child.tag}> is not a name the seed uses"
        name = SNAKE[child.tag]
        text = child.text or ""
        out[name] = int(text) if name in INTS else text
    return out


def read(response: httpx.Response, *, xml: bool, many: bool = False) -> Answer:
    assert response.status_code == 200, response.text
    if not xml:
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) <= {"code", "msg", "data"}
        assert isinstance(body["code"], int)
        return Answer(body["code"], body["msg"], body.get("data"), response)
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "map"
    assert {c.tag for c in root} <= {"code", "msg", "data"}
    code = int(root.findtext("code") or "")
    msg = root.findtext("msg") or ""
    items = [_element(d) for d in root.findall("data")]
    data: Any = items if many else (items[0] if items else None)
    return Answer(code, msg, data, response)


class Gw:
    """The facade, in one format, pointed at one S3 service (or none)."""

    def __init__(self, http: httpx.AsyncClient, xml: bool, headers: dict[str, str] | None) -> None:
        self.http = http
        self.xml = xml
        self.headers = headers or {}

    async def raw(self, path: str, method: str = "POST", **kwargs: Any) -> httpx.Response:
        params = dict(kwargs.pop("params", None) or {})
        if self.xml:
            params["data_format"] = "xml"
        headers = {**self.headers, **(kwargs.pop("headers", None) or {})}
        return await self.http.request(method, path, params=params, headers=headers, **kwargs)

    async def __call__(
        self, path: str, method: str = "POST", *, many: bool = False, **kwargs: Any
    ) -> Answer:
        return read(await self.raw(path, method, **kwargs), xml=self.xml, many=many)

    async def ok(self, path: str, method: str = "POST", **kwargs: Any) -> Answer:
        answer = await self(path, method, **kwargs)
        assert answer.code == 0, answer.msg
        return answer


@contextlib.asynccontextmanager
async def main_listener(ctx: Context) -> AsyncIterator[int]:
    """The main listener as ``jcs serve`` builds it (its app, the facade
    among its routes, and its connection protocol, ``api/common/connection.py``)
    served by uvicorn on a loopback port in this event loop; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    listener = host.build_listeners(ctx, ctx.settings, host.Metrics())[0]
    server = uvicorn.Server(host.uvicorn_config(listener))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving
        sock.close()
