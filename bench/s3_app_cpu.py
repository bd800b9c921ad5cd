"""CPU per request of the S3 app itself, called in-process: no HTTP server,
no sockets, no client in the way.

    .venv/bin/python bench/s3_app_cpu.py [--count N] [--rounds R] [--profile FILE]
    PYTHONPATH=<older checkout>/src .venv/bin/python bench/s3_app_cpu.py   # that tree's app

A fresh context (SQLite file, the default local space) in a temporary
directory; credentials made as a user's are (project key → access grant →
the auth service). Requests are signed by botocore beforehand (the lean
client of ``bench/s3.py``), parsed into ASGI scopes, and handed to the app
of ``jcs serve``'s S3 listener (``create_app``: the observability middleware
included) by 16 concurrent tasks on uvloop, as 16 clients would send them.
Printed per round: process CPU per request (every thread: the commit's
sync thread and the encoding pool too) and requests per second, for 4 KiB
PUTs of new keys, then GETs of them.

What ``bench/s3.py`` measures over loopback minus this is the HTTP server's
and the kernel's share. ``--profile FILE`` writes a cProfile of one more
round of ``--op`` (get or put) for ``pstats``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from jointcloud.api.s3.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.keys.grant import new_grant
from jointcloud.logs import configure_logging
from s3 import BUCKET, Lean, _body

CLIENTS = 16
SIZE = 4096


def scope_of(head: bytes) -> dict[str, Any]:
    """The ASGI scope uvicorn would make of a request head."""
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ")
    path, _, query = target.partition(b"?")
    headers = []
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", b"0"))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.decode(),
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 7891),
    }


async def call(app: Any, head: bytes, body: bytes) -> int:
    """One request through the app; its status."""
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never hangs up here
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_of(head), receive, send)
    return status


async def run_all(app: Any, requests: list[tuple[bytes, bytes]]) -> None:
    async def client(mine: list[tuple[bytes, bytes]]) -> None:
        for head, body in mine:
            status = await call(app, head, body)
            if status != 200:
                raise RuntimeError(f"{head.split(b' ', 2)[:2]!r}: status {status}")

    await asyncio.gather(*(client(requests[i::CLIENTS]) for i in range(CLIENTS)))


async def main(args: argparse.Namespace) -> None:
    try:
        configure_logging("info", final=True)
    except TypeError:  # a tree from before 2026-12-04 (PYTHONPATH=<old>/src)
        configure_logging("info")
    work = Path(tempfile.mkdtemp(prefix="jcs-s3cpu-"))
    ctx = await Context.open(
        Settings(data_dir=work / "data", database_url=f"sqlite+aiosqlite:///{work}/jcs.db")
    )
    try:
        await ctx.bootstrap()
        admin = await ctx.accounts.user_named("admin")
        owner = Principal.user(admin.user_id)
        project = await ctx.buckets.create(owner, "bench")
        _, key = await ctx.project_keys.create(owner, project.bucket_id, "bench")
        grant = new_grant(ctx.settings.satellite_url(), key, "bench", project.project_id)
        made = await ctx.access.register(grant.serialize())
        app = create_app(ctx)
        lean = Lean("http://127.0.0.1:7891", made.access_key_id, made.secret_key)
        if await call(app, lean.sign("PUT", f"/{BUCKET}"), b"") != 200:
            raise RuntimeError("CreateBucket failed")
        body = _body(SIZE)
        for r in range(args.rounds):
            keys = [f"r{r}/k{i:06d}" for i in range(args.count)]
            puts = [(lean.sign("PUT", f"/{BUCKET}/{k}", body), body) for k in keys]
            gets = [(lean.sign("GET", f"/{BUCKET}/{k}"), b"") for k in keys]
            figures = []
            for name, requests in (("PUT", puts), ("GET", gets)):
                cpu, wall = time.process_time(), time.perf_counter()
                await run_all(app, requests)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                figures.append(
                    f"{name} {1e3 * cpu / args.count:.3f} ms CPU/request, "
                    f"{args.count / wall:,.0f}/s"
                )
            print(f"round {r + 1}: " + "   ".join(figures), flush=True)
        if args.profile:
            keys = [f"p/k{i:06d}" for i in range(args.count)]
            puts = [(lean.sign("PUT", f"/{BUCKET}/{k}", body), body) for k in keys]
            gets = [(lean.sign("GET", f"/{BUCKET}/{k}"), b"") for k in keys]
            if args.op == "get":
                await run_all(app, puts)
            profile = cProfile.Profile()
            profile.enable()
            await run_all(app, gets if args.op == "get" else puts)
            profile.disable()
            profile.dump_stats(args.profile)
            print(f"profile of {args.count} {args.op.upper()}s in {args.profile}")
    finally:
        await ctx.close()


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=5000, help="requests of each kind per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default=None, help="cProfile one more round into FILE")
    ap.add_argument("--op", choices=("get", "put"), default="get", help="what --profile runs")
    args = ap.parse_args()
    os.environ.setdefault("JCS_GC_INTERVAL_SECONDS", "3600")
    uvloop.run(main(args))


if __name__ == "__main__":
    cli()
