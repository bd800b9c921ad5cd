"""Helpers for the functional tests of the JCS v1 API: envelope-checking
calls, raw multipart bodies, extra Local and S3 user spaces, a look at the
block files those spaces hold on disk, and transfer tasks."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select

from jointcloud.context import Context
from jointcloud.core.gc import GcReport, collect_garbage
from jointcloud.meta import tables as t
from support.s3server import S3Server

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?[+-]\d{2}:\d{2}$")
OBJECT_KEYS = {
    "objectID",
    "packageID",
    "path",
    "size",
    "fileHash",
    "redundancy",
    "createTime",
    "updateTime",
}
MARKER = b"JCS-PLAINTEXT-MARKER"


def text_data(size: int, seed: int = 0) -> bytes:
    """``size`` bytes of recognisable plaintext (every 40 bytes carry MARKER)."""
    line_no = 0
    out = bytearray()
    while len(out) < size:
        out += MARKER + b" %06d line %08d\n" % (seed, line_no)
        line_no += 1
    return bytes(out[:size])


def full_hash(data: bytes) -> str:
    return "Full" + hashlib.sha256(data).hexdigest().upper()


def comp_hash(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.sha256(p).digest() for p in parts)
    return "Comp" + hashlib.sha256(joined).hexdigest().upper()


def assert_time(value: Any) -> datetime:
    """RFC 3339 with the server's own (local) offset."""
    assert isinstance(value, str) and RFC3339.match(value), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == parsed.astimezone().utcoffset(), value
    return parsed


def assert_object(
    o: Any,
    *,
    path: str | None = None,
    data: bytes | None = None,
    package_id: int | None = None,
    redundancy: dict[str, Any] | None = None,
) -> None:
    assert isinstance(o, dict) and set(o) == OBJECT_KEYS, o
    assert isinstance(o["objectID"], int) and isinstance(o["packageID"], int)
    assert isinstance(o["size"], str) and o["size"].isdigit(), o["size"]
    assert isinstance(o["fileHash"], str)
    assert re.fullmatch(r"(Full|Comp)[0-9A-F]{64}", o["fileHash"]), o["fileHash"]
    assert isinstance(o["redundancy"], dict) and "type" in o["redundancy"]
    assert assert_time(o["updateTime"]) >= assert_time(o["createTime"])
    if path is not None:
        assert o["path"] == path
    if data is not None:
        assert o["size"] == str(len(data))
        assert o["fileHash"] == full_hash(data)
    if package_id is not None:
        assert o["packageID"] == package_id
    if redundancy is not None:
        assert o["redundancy"] == redundancy


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A raw multipart/form-data body from (name, filename, bytes) in order.
    ``filename`` is put on the wire as given (callers URL-encode it)."""
    boundary = "jcs-test-" + secrets.token_hex(12)
    body = bytearray()
    for name, filename, content in parts:
        body += f"--{boundary}\r\n".encode()
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        body += disp.encode() + b"\r\n"
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def info_part(info: dict[str, Any] | bytes) -> tuple[str, None, bytes]:
    raw = info if isinstance(info, bytes) else json.dumps(info).encode()
    return ("info", None, raw)


def file_parts(files: list[tuple[str, bytes]]) -> list[tuple[str, str | None, bytes]]:
    return [("files", quote(path, safe=""), content) for path, content in files]


@dataclass
class Api:
    client: httpx.AsyncClient
    ctx: Context
    tmp_path: Path
    spaces: dict[int, Path] = field(default_factory=dict)  # userSpaceID -> Local path

    # --- envelope ---------------------------------------------------------

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return await self.client.request(method, url, **kw)

    async def ok(self, method: str, url: str, **kw: Any) -> Any:
        r = await self.request(method, url, **kw)
        assert r.status_code == 200, (url, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert set(body) == {"code", "message", "data"}, body
        assert body["code"] == "OK" and body["message"] == "", body
        return body["data"]

    async def fail(self, method: str, url: str, code: str, status: int, **kw: Any) -> str:
        r = await self.request(method, url, **kw)
        return expect_error(r, code, status)

    async def post(self, url: str, body: Any) -> Any:
        return await self.ok("POST", url, json=body)

    async def get(self, url: str, **params: Any) -> Any:
        return await self.ok("GET", url, params=params)

    # --- catalog ----------------------------------------------------------

    async def bucket(self, name: str, redundancy: dict[str, Any] | None = None) -> int:
        body: dict[str, Any] = {"name": name}
        if redundancy is not None:
            body["redundancy"] = redundancy
        return int((await self.post("/v1/bucket/create", body))["bucket"]["bucketID"])

    async def package(
        self,
        name: str = "pkg",
        redundancy: dict[str, Any] | None = None,
        bucket_id: int | None = None,
    ) -> int:
        if bucket_id is None:
            bucket_id = await self.bucket("bkt-" + secrets.token_hex(4))
        body: dict[str, Any] = {"bucketID": bucket_id, "name": name}
        if redundancy is not None:
            body["redundancy"] = redundancy
        return int((await self.post("/v1/package/create", body))["package"]["packageID"])

    # --- objects ----------------------------------------------------------

    async def upload_raw(self, parts: list[tuple[str, str | None, bytes]]) -> httpx.Response:
        body, ctype = multipart(parts)
        return await self.client.post(
            "/v1/object/upload", content=body, headers={"Content-Type": ctype}
        )

    async def upload(
        self, package_id: int, files: list[tuple[str, bytes]], **info: Any
    ) -> list[dict[str, Any]]:
        r = await self.upload_raw(
            [info_part({"packageID": package_id, **info}), *file_parts(files)]
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["code"] == "OK" and body["message"] == ""
        uploaded: list[dict[str, Any]] = body["data"]["uploadeds"]
        assert len(uploaded) == len(files)
        for o, (path, content) in zip(uploaded, files, strict=True):
            assert_object(o, path=path, data=content, package_id=package_id)
        return uploaded

    async def upload_one(
        self, package_id: int, path: str, content: bytes, **info: Any
    ) -> dict[str, Any]:
        return (await self.upload(package_id, [(path, content)], **info))[0]

    async def layout_of(self, object_id: int) -> int:
        """The layout of an object of one part."""
        async with self.ctx.db.read() as conn:
            q = select(t.object_parts.c.layout_id).where(t.object_parts.c.object_id == object_id)
            return int((await conn.execute(q)).scalar_one())

    async def download(self, object_id: int, **params: Any) -> bytes:
        r = await self.client.get("/v1/object/download", params={"objectID": object_id, **params})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/octet-stream"
        return r.content

    async def objects(self, package_id: int) -> list[dict[str, Any]]:
        data = await self.get("/v1/object/getPackageObjects", packageID=package_id)
        return list(data["objects"])

    async def upload_part(self, object_id: int, index: int, content: bytes) -> httpx.Response:
        body, ctype = multipart(
            [info_part({"objectID": object_id, "index": index}), ("file", "part", content)]
        )
        return await self.client.post(
            "/v1/object/uploadPart", content=body, headers={"Content-Type": ctype}
        )

    # --- user spaces ------------------------------------------------------

    async def add_spaces(self, count: int) -> list[int]:
        """Create ``count`` more Local user spaces; returns their IDs."""
        ids = []
        for _ in range(count):
            n = len(self.spaces) + 1
            path = self.tmp_path / f"s{n}"
            data = await self.post(
                "/v1/userSpace/create",
                {"name": f"space-{n}", "storage": {"type": "Local", "path": str(path)}},
            )
            sid = int(data["userSpace"]["userSpaceID"])
            self.spaces[sid] = path
            ids.append(sid)
        return ids

    def block_files(self) -> dict[int, list[Path]]:
        """Block files on disk, by user space (every Local space we know of)."""
        out: dict[int, list[Path]] = {}
        for sid, path in self.spaces.items():
            root = path / "jcs" / "blocks"
            out[sid] = sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        return out

    def all_block_files(self) -> list[Path]:
        return [p for files in self.block_files().values() for p in files]

    async def gc(self) -> GcReport:
        """Run garbage collection now, without the usual safety delay."""
        return await collect_garbage(self.ctx.db, self.ctx.store, timedelta(seconds=-1))


async def create_s3_space(api: Api, server: S3Server, name: str | None = None) -> dict[str, Any]:
    """An S3 user space in ``server``'s bucket, rooted at its own name (a random
    ``s3-...`` one unless given): the ``userSpace`` the API answers with."""
    name = name or f"s3-{secrets.token_hex(4)}"
    data = await api.post(
        "/v1/userSpace/create",
        {
            "name": name,
            "storage": server.storage(),
            "credential": server.credential(),
            "rootPath": name,
        },
    )
    return dict(data["userSpace"])


async def s3_space(api: Api, server: S3Server) -> int:
    """A new S3 user space with a random name; its ID."""
    return int((await create_s3_space(api, server))["userSpaceID"])


async def get_task(api: Api, task_id: int) -> dict[str, Any]:
    """A transfer task as ``/v1/spaceSync/getTask`` shows it."""
    return dict((await api.get("/v1/spaceSync/getTask", taskID=task_id))["task"])


def expect_error(r: httpx.Response, code: str, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"code", "message", "data"}, body
    assert body["code"] == code, body
    assert body["data"] is None, body
    assert isinstance(body["message"], str) and body["message"], body
    return str(body["message"])


@dataclass
class Other:
    """A second user: his ID and his own ``Api``."""

    user_id: int
    api: Api


async def snapshot(api: Api) -> dict[str, Any]:
    """Everything the admin can observe: catalog, contents, spaces, files on disk."""
    state: dict[str, Any] = {"buckets": await api.get("/v1/bucket/listAll")}
    for b in state["buckets"]["buckets"]:
        pkgs = await api.get("/v1/package/listBucketPackages", bucketID=b["bucketID"])
        state[f"b{b['bucketID']}"] = pkgs
        for p in pkgs["packages"]:
            objs = await api.objects(p["packageID"])
            state[f"p{p['packageID']}"] = objs
            for o in objs:
                content = await api.download(o["objectID"])
                state[f"o{o['objectID']}"] = hashlib.sha256(content).hexdigest()
    state["spaces"] = await api.get("/v1/userSpace/list")
    state["files"] = sorted(
        (str(f), hashlib.sha256(f.read_bytes()).hexdigest()) for f in api.all_block_files()
    )
    return state
