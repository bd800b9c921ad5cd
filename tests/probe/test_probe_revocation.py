"""Revocation reaches every server process: two ``jcs serve`` on one
PostgreSQL database, a key used on both (so both have it cached), deleted
through the core service of a third process; both refuse it within 5 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from probe_support import ProbeServer

from jointcloud.config import Settings
from jointcloud.context import ADMIN, Context
from jointcloud.core.authz import Principal
from support.postgres import PostgresServer

REVOCATION_BOUND = 5.0  # seconds (issue 9: a deleted key stops working within 5 s)


def _status(server: ProbeServer, key: str) -> int:
    r = httpx.get(
        server.endpoint + "/v1/bucket/listAll",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return r.status_code


async def _in_third_process(url: str, data_dir: Path, action: str, key: str = "") -> str:
    ctx = await Context.open(Settings(data_dir=data_dir, database_url=url))
    try:
        admin, _ = await ctx.accounts.ensure_user(ADMIN)
        if action == "new":
            return (await ctx.accounts.new_key(Principal.user(admin.user_id)))[1]
        await ctx.accounts.delete_key(key)
        return key
    finally:
        await ctx.close()


def test_deleted_key_stops_working_on_every_server(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.new_database()
    data = tmp_path / "data"
    one = ProbeServer(data_dir=data, log_dir=tmp_path, database_url=url)
    two = ProbeServer(data_dir=data, log_dir=tmp_path, database_url=url)
    one.start()
    try:
        two.start()
        try:
            key = asyncio.run(_in_third_process(url, data, "new"))
            for server in (one, two):  # works at once everywhere, and is now cached
                for _ in range(2):
                    r = httpx.get(
                        server.endpoint + "/v1/bucket/listAll",
                        headers={"Authorization": f"Bearer {key}"},
                        timeout=10,
                    )
                    # Once seen failing (401) in CI: say why, and what the server logged.
                    assert r.status_code == 200, (r.text, server.output()[-4000:])
            asyncio.run(_in_third_process(url, data, "delete", key))
            deleted = time.monotonic()
            refused: dict[int, float] = {}
            while len(refused) < 2 and time.monotonic() - deleted < REVOCATION_BOUND + 5:
                for server in (one, two):
                    if server.port not in refused and _status(server, key) == 401:
                        refused[server.port] = time.monotonic() - deleted
                time.sleep(0.05)
            assert len(refused) == 2, f"still accepted after {REVOCATION_BOUND + 5} s"
            assert max(refused.values()) <= REVOCATION_BOUND, refused
            # the root key is untouched
            root = (data / "root.key").read_text().strip()
            assert _status(one, root) == 200 and _status(two, root) == 200
        finally:
            two.stop()
    finally:
        one.stop()
