"""Key verification, grant creation and auth-service registration, against
their baselines, in one run.

    .venv/bin/python bench/keys.py [--seconds 2] [--database-url URL]

Measures, in one process on this machine (SQLite in a temporary data dir
unless ``--database-url``):

- project-key verifications per second, uncached
  (``ProjectKeyService.verify``: parse, key row, sealed secret, HMAC chain,
  revoked-tails query) and cached (``ProjectKeyService.principal`` on the
  same text), for an unrestricted key and a restricted one; baselines: a
  bare ``hmac.new(...).digest()`` chain of the same length and the
  ``sha256`` + dict look-up the cache does at least. Rates are per wall
  second and per CPU second (the database thread included): "per core".
- grant creation (``keys.grant.new_grant``: Argon2id, 64 MiB, 8 lanes),
  median of a few runs, against the bare ``argon2`` call it wraps;
- the auth-service registration round trip (``POST /v1/access`` in process
  through ``httpx.ASGITransport`` over ``api.host.main_app``), against a bare
  ASGI app answering the same request through the same transport;
- ``GET /v1/bucket/listAll`` requests per second through the whole v1 stack
  with a user key, a project key and a restricted project key (cached, then
  with the caches off), the bare ASGI app being the ceiling.

Prints ratios and the issue's targets (≥ 20,000 cached verifications/s per
core; a grant in < 0.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from argon2.low_level import Type, hash_secret_raw

from jointcloud.api.host import Metrics, main_app
from jointcloud.api.jcs.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.core.projectkeys import parse_key
from jointcloud.keys.caveats import APIKey, CaveatPath, KeyCaveat
from jointcloud.keys.grant import new_grant
from jointcloud.keys.kdf import ARGON2_MEMORY_KIB, ARGON2_THREADS, ARGON2_TIME, project_salt

TOKEN = "bench-operator-token-0123456789"
PASSPHRASE = "correct horse battery staple"


def cpu_seconds() -> float:
    return time.process_time()  # every thread of this process (the DB's too)


def rate_sync(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(calls per wall second, calls per CPU second) of ``fn`` for ~``seconds``."""
    n, batch = 0, 256
    c0, t0 = cpu_seconds(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(batch):
            fn()
        n += batch
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return n / wall, n / max(cpu, 1e-9)


async def rate_async(fn: Callable[[], Awaitable[object]], seconds: float) -> tuple[float, float]:
    n, batch = 0, 64
    c0, t0 = cpu_seconds(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(batch):
            await fn()
        n += batch
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return n / wall, n / max(cpu, 1e-9)


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ceiling: reads the body, answers a small JSON object."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    body = b'{"code":"OK","message":"","data":{"buckets":[]}}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client(app: Any, key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://jcs.bench",
        headers=headers,
        timeout=60,
    )


def chain(secret: bytes, links: list[bytes]) -> bytes:
    """The baseline: a bare HMAC-SHA256 chain, as a macaroon's."""
    tail = secret
    for link in links:
        tail = hmac.new(tail, link, hashlib.sha256).digest()
    return tail


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="jcs-bench-keys-", dir=args.tmp))
    r: dict[str, Any] = {"machine": f"{os.cpu_count()} cores"}
    settings = Settings(
        data_dir=work / "data",
        database_url=args.database_url,
        local_roots=(work,),
        auth_token=TOKEN,
    )
    ctx = await Context.open(settings)
    try:
        user_key = await ctx.bootstrap()
        assert user_key is not None
        async with client(create_app(ctx, background=False), user_key) as api:

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                resp = await api.post(path, json=body)
                assert resp.status_code == 200, resp.text
                return dict(resp.json()["data"])

            bucket = (await post("/v1/bucket/create", {"name": "bench"}))["bucket"]
            bid, project = bucket["bucketID"], bucket["projectID"]
            await post("/v1/package/create", {"bucketID": bid, "name": "photos"})
            for i in range(20):  # a few more keys and revocations in the tables
                made = await post("/v1/apiKey/create", {"bucketID": bid, "name": f"k{i}"})
                other = APIKey.parse(made["apiKey"]["key"])
                await post(
                    "/v1/apiKey/revoke",
                    {"key": other.restrict(KeyCaveat.allowing({"read"})).serialize()},
                )
            key = (await post("/v1/apiKey/create", {"bucketID": bid, "name": "bench"}))["apiKey"][
                "key"
            ]
        restricted = (
            APIKey.parse(key)
            .restrict(KeyCaveat.allowing({"read", "list"}))
            .restrict(KeyCaveat.allowing(paths=[CaveatPath("photos", "2024/")]))
            .serialize()
        )
        svc = ctx.project_keys
        secret = os.urandom(32)
        print(f"data in {work}; measuring verifications ...", flush=True)

        # --- (a) verifications per second ------------------------------------
        for label, text in (("key", key), ("restricted", restricted)):
            parsed = APIKey.parse(text)
            links = [parsed.head, *parsed.macaroon.caveats]
            digest_cache = {hashlib.sha256(text.encode()).digest(): object()}
            row: dict[str, Any] = {"chain_links": len(links)}
            row["baseline_hmac"] = rate_sync(lambda links=links: chain(secret, links), args.seconds)
            row["baseline_dict"] = rate_sync(
                lambda t=text, d=digest_cache: d.get(hashlib.sha256(t.encode()).digest()),
                args.seconds,
            )
            row["parse"] = rate_sync(lambda t=text: parse_key(t), args.seconds)

            async def uncached(t: str = text) -> None:
                await svc.verify(parse_key(t))

            async def cached(t: str = text) -> None:
                await svc.principal(t)

            row["uncached"] = await rate_async(uncached, args.seconds)
            svc.forget()
            await svc.principal(text)
            row["cached"] = await rate_async(cached, args.seconds)
            r[label] = row
            print(label, {k: v for k, v in row.items()}, flush=True)
        ctx.accounts._cache.clear()
        await ctx.accounts.principal(user_key)

        async def user_cached() -> None:
            await ctx.accounts.principal(user_key)

        r["user_key_cached"] = await rate_async(user_cached, args.seconds)

        # --- (b) grant creation and registration ------------------------------
        print("measuring grants ...", flush=True)
        satellite = settings.satellite_url()
        salt = project_salt(project)
        argon: list[float] = []
        grants: list[float] = []
        for _ in range(args.grants):
            t0 = time.perf_counter()
            hash_secret_raw(
                secret=PASSPHRASE.encode(),
                salt=salt,
                time_cost=ARGON2_TIME,
                memory_cost=ARGON2_MEMORY_KIB,
                parallelism=ARGON2_THREADS,
                hash_len=32,
                type=Type.ID,
            )
            argon.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            grant = new_grant(satellite, key, PASSPHRASE, project)
            grants.append(time.perf_counter() - t0)
        r["argon2_s"] = statistics.median(argon)
        r["grant_s"] = statistics.median(grants)
        r["grant_max_s"] = max(grants)
        grant_text = grant.serialize()
        body = json.dumps({"access_grant": grant_text}).encode()
        headers = {"Content-Type": "application/json"}

        async def round_trips(c: httpx.AsyncClient, path: str, n: int) -> list[float]:
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                resp = await c.post(path, content=body, headers=headers)
                times.append(time.perf_counter() - t0)
                assert resp.status_code == 200, resp.text
            return times

        async with client(bare_app) as bare:
            await round_trips(bare, "/v1/access", 20)
            r["bare_post_s"] = statistics.median(await round_trips(bare, "/v1/access", 500))
        app = main_app(ctx, Metrics(), ("api",))
        async with client(app) as main:
            first = await round_trips(main, "/v1/access", 1)  # fixes the verifier
            r["register_first_s"] = first[0]
            times = await round_trips(main, "/v1/access", args.registrations)
            r["register_s"] = statistics.median(times)
            judged = []
            for _ in range(args.registrations):  # the checks alone, no record written
                t0 = time.perf_counter()
                await ctx.access.grant_principal(grant)
                judged.append(time.perf_counter() - t0)
            r["judge_s"] = statistics.median(judged)
            made = (await main.post("/v1/access", content=body, headers=headers)).json()
            assert set(made) == {"access_key_id", "secret_key", "endpoint"}

        # --- (c) the whole v1 stack -------------------------------------------
        print("measuring GET /v1/bucket/listAll ...", flush=True)

        async def listall(c: httpx.AsyncClient, want: int) -> tuple[float, float]:
            async def one() -> None:
                resp = await c.get("/v1/bucket/listAll")
                assert resp.status_code == 200, resp.text
                assert len(resp.json()["data"]["buckets"]) == want

            await one()
            return await rate_async(one, args.seconds)

        async with client(bare_app) as bare:
            r["http_bare"] = await listall(bare, 0)
        v1 = create_app(ctx, background=False)
        for caches in ("cached", "uncached"):
            if caches == "uncached":
                ctx.accounts.cache_seconds = 0
                svc.cache_seconds = 0
            for label, text in (("user", user_key), ("key", key), ("restricted", restricted)):
                async with client(v1, text) as c:
                    r[f"http_{label}_{caches}"] = await listall(c, 1)
        ctx.accounts.cache_seconds = svc.cache_seconds = 2.0
    finally:
        await ctx.close()
        shutil.rmtree(work, ignore_errors=True)
    return r


def report(r: dict[str, Any]) -> None:
    print(f"\nmachine: {r['machine']}")
    print(f"\n{'project-key verification':<44}{'/s (wall)':>12}{'/s per core':>13}{'vs HMAC':>9}")
    for label, title in (("key", "unrestricted key"), ("restricted", "restricted key")):
        row = r[label]
        base = row["baseline_hmac"][1]
        print(f"-- {title}: HMAC chain of {row['chain_links']} links")
        for name, what in (
            ("baseline_hmac", "bare hmac chain (baseline)"),
            ("baseline_dict", "sha256 + dict look-up (baseline)"),
            ("parse", "parse_key (base58check + protobuf)"),
            ("uncached", "verify, uncached (parse+DB+HMAC+revoked)"),
            ("cached", "principal, cached"),
        ):
            wall, core = row[name]
            print(f"{what:<44}{wall:>12,.0f}{core:>13,.0f}{core / base:>9.3f}")
        print(
            f"{'cached vs sha256 + dict look-up':<44}"
            f"{row['cached'][1] / row['baseline_dict'][1]:>34.3f}"
        )
    wall, core = r["user_key_cached"]
    print(f"{'user key (jcs_…), cached':<44}{wall:>12,.0f}{core:>13,.0f}")

    print("\ngrant creation (median):")
    print(f"  bare argon2id (64 MiB, t=1, p=8)   {r['argon2_s'] * 1000:8.0f} ms")
    print(
        f"  keys.grant.new_grant               {r['grant_s'] * 1000:8.0f} ms"
        f"  ({r['grant_s'] / r['argon2_s']:.2f} x argon2; slowest {r['grant_max_s'] * 1000:.0f} ms)"
    )
    print("auth-service registration, POST /v1/access in process (median):")
    print(f"  bare ASGI app, same request         {r['bare_post_s'] * 1000:8.2f} ms")
    print(f"  first grant of the project          {r['register_first_s'] * 1000:8.2f} ms")
    print(
        f"  further grants                      {r['register_s'] * 1000:8.2f} ms"
        f"  ({r['register_s'] / r['bare_post_s']:.1f} x bare; {1 / r['register_s']:,.0f}/s)"
    )
    print(f"  of which judging the grant          {r['judge_s'] * 1000:8.2f} ms (AccessService)")

    print(
        f"\n{'GET /v1/bucket/listAll, in process':<44}{'req/s':>12}{'per core':>13}{'vs bare':>9}"
    )
    bare = r["http_bare"][0]
    print(f"{'bare ASGI app (ceiling)':<44}{bare:>12,.0f}{r['http_bare'][1]:>13,.0f}{1:>9.3f}")
    for caches in ("cached", "uncached"):
        for label, what in (
            ("user", "user key"),
            ("key", "project key"),
            ("restricted", "restricted project key"),
        ):
            wall, core = r[f"http_{label}_{caches}"]
            name = f"{what}, {caches}"
            print(f"{name:<44}{wall:>12,.0f}{core:>13,.0f}{wall / bare:>9.3f}")

    cached = min(r["key"]["cached"][1], r["restricted"]["cached"][1])
    targets = [
        ("cached verifications/s per core >= 20,000", f"{cached:,.0f}", cached >= 20_000),
        ("grant creation < 0.5 s", f"{r['grant_s']:.3f} s", r["grant_s"] < 0.5),
    ]
    print("\ntargets:")
    for name, value, ok in targets:
        print(f"  {name:<44} {value:>10}  {'PASS' if ok else 'MISS'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each rate measurement")
    ap.add_argument("--grants", type=int, default=5, help="grant creations to take the median of")
    ap.add_argument("--registrations", type=int, default=200)
    ap.add_argument("--tmp", default=None)
    ap.add_argument(
        "--database-url", default=None, help="metadata DB (default: SQLite in the data dir)"
    )
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    results = asyncio.run(run(args))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
