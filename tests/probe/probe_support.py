"""Fault-test helpers: real ``jcs serve`` processes with a chosen environment
and database, ``jcs admin`` run as a subprocess, raw HTTP calls, and a look
at where the blocks of an object are stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from e2e_support import JCS, JcsServer, clean_env, free_port

__all__ = ["JCS", "JcsServer", "clean_env", "free_port"]

# Jobs of a probe server run only when a test asks (``jcs admin <job> --once``),
# not on their own timers in the middle of an assertion.
QUIET_JOBS = {
    f"JCS_{name}_INTERVAL_SECONDS": "100000"
    for name in ("GC", "REPAIR", "SCRUB", "HEALTH", "DRAIN", "RECODE")
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def full_hash(data: bytes) -> str:
    return "Full" + sha(data).upper()


def comp_hash(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.sha256(p).digest() for p in parts)
    return "Comp" + hashlib.sha256(joined).hexdigest().upper()


@dataclass
class ProbeServer(JcsServer):
    """A ``jcs serve`` with extra environment and an optional database URL."""

    env: dict[str, str] = field(default_factory=dict)
    database_url: str | None = None

    def process_env(self) -> dict[str, str]:
        return {**clean_env(), **QUIET_JOBS, **self.env}

    def command(self) -> list[str]:
        args = super().command()
        return [*args, "--database-url", self.database_url] if self.database_url else args

    def admin(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``jcs admin ARGS`` against this server's data dir and database."""
        return run_admin(
            self.data_dir, *args, database_url=self.database_url, env={**self.env, **(env or {})}
        )

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.endpoint, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )


def admin_command(data_dir: Path, *args: str, database_url: str | None = None) -> list[str]:
    cmd = [str(JCS), "admin", *args, "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    return cmd


def run_admin(
    data_dir: Path,
    *args: str,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        admin_command(data_dir, *args, database_url=database_url),
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean_env(), **QUIET_JOBS, **(env or {})},
        check=False,
    )


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, (r.request.url, r.status_code, r.text)
    body = r.json()
    assert body["code"] == "OK", body
    return body["data"]


def make_package(api: httpx.Client, name: str, redundancy: dict[str, Any] | None = None) -> int:
    bucket = ok(api.post("/v1/bucket/create", json={"name": f"b-{name}-{secrets.token_hex(3)}"}))
    body: dict[str, Any] = {"bucketID": bucket["bucket"]["bucketID"], "name": name}
    if redundancy is not None:
        body["redundancy"] = redundancy
    return int(ok(api.post("/v1/package/create", json=body))["package"]["packageID"])


def add_local_space(api: httpx.Client, name: str, path: Path) -> int:
    data = ok(
        api.post(
            "/v1/userSpace/create",
            json={"name": name, "storage": {"type": "Local", "path": str(path)}},
        )
    )
    return int(data["userSpace"]["userSpaceID"])


def upload(api: httpx.Client, package_id: int, path: str, content: bytes) -> dict[str, Any]:
    r = api.post(
        "/v1/object/upload",
        files={
            "info": (None, json.dumps({"packageID": package_id})),
            "files": (path, content, "application/octet-stream"),
        },
    )
    uploaded: dict[str, Any] = ok(r)["uploadeds"][0]
    return uploaded


def download(api: httpx.Client, object_id: int, **params: Any) -> bytes:
    r = api.get("/v1/object/download", params={"objectID": object_id, **params})
    assert r.status_code == 200, (object_id, r.status_code, r.text)
    return r.content


@dataclass(frozen=True)
class StoredBlock:
    layout_id: int
    index: int
    space_id: int
    key: str
    path: Path | None  # the file, for Local spaces


def blocks_of(db_url: str, object_ids: list[int]) -> dict[int, list[StoredBlock]]:
    """Where every block of those objects is, straight from the metadata."""

    async def query() -> dict[int, list[StoredBlock]]:
        engine = create_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT op.object_id, b.layout_id, b.idx, b.user_space_id, b.key, "
                        "us.storage, us.root_path FROM object_parts op "
                        "JOIN blocks b ON b.layout_id = op.layout_id "
                        "JOIN user_spaces us ON us.id = b.user_space_id "
                        "ORDER BY op.object_id, op.seq, b.idx"
                    )
                )
                out: dict[int, list[StoredBlock]] = {i: [] for i in object_ids}
                for r in rows:
                    if r.object_id not in out:
                        continue
                    storage = json.loads(r.storage)
                    path = None
                    if storage.get("type") == "Local":
                        path = Path(storage["path"]) / r.root_path / r.key
                    out[r.object_id].append(
                        StoredBlock(r.layout_id, r.idx, r.user_space_id, r.key, path)
                    )
                return out
        finally:
            await engine.dispose()

    return asyncio.run(query())


def sql(db_url: str, statement: str, **params: Any) -> list[Any]:
    """Rows of one read-only query against the metadata database."""

    async def query() -> list[Any]:
        engine = create_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(statement), params)).all())
        finally:
            await engine.dispose()

    return asyncio.run(query())


def flip_byte(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at % len(raw)] ^= 0x5A
    path.write_bytes(bytes(raw))


def fsck_summary(stdout: str) -> str:
    return next(
        line for line in stdout.splitlines() if line.startswith("fsck: ") and "checked" in line
    )
