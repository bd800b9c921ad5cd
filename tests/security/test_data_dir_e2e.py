"""The data dir against a real ``jcs serve``: what an API user did to lose
acknowledged writes, done again with the server running.

Before the rules, a space on the data dir let an import read ``meta.db*``
(closing those descriptors dropped SQLite's POSIX locks), after which a
``jcs admin gc --once`` believed itself the last user, checkpointed and
deleted ``meta.db-wal``/``-shm`` under the running server: a bucket created
with 200 OK was gone after a restart. Now the space is refused, and the same
sequence keeps every acknowledged write.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from e2e_support import JCS, JcsServer, api_client, clean_env


def _admin(server: JcsServer, *args: str) -> str:
    proc = subprocess.run(
        [str(JCS), "admin", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(), "JCS_GC_DELAY_SECONDS": "0"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _refused(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "BadArgument" and all(w in body["message"] for w in words), body


def test_data_dir_is_out_of_reach_and_gc_keeps_acknowledged_writes(tmp_path: Path) -> None:
    server = JcsServer(data_dir=tmp_path / "data", log_dir=tmp_path)
    server.start()
    try:
        with api_client(server) as api:
            data = str(server.data_dir)
            for path in (data, data + "/spaces", "/"):
                r = api.post(
                    "/v1/userSpace/create",
                    json={"name": "grab", "storage": {"type": "Local", "path": path}},
                )
                _refused(r, "local space path")
            # The default space cannot be pointed at the data dir either.
            [local] = api.get("/v1/userSpace/list").json()["data"]["userSpaces"]
            r = api.post(
                "/v1/userSpace/update",
                json={
                    "userSpaceID": local["userSpaceID"],
                    "storage": {"type": "Local", "path": data},
                },
            )
            _refused(r, "data dir")
            r = api.post(
                "/v1/userSpace/createPackage",
                json={
                    "userSpaceID": local["userSpaceID"],
                    "path": "../..",
                    "bucketID": 1,
                    "name": "stolen",
                },
            )
            assert r.status_code == 400, r.text

            # Acknowledged writes, GC from the command line while serving.
            r = api.post("/v1/bucket/create", json={"name": "kept"})
            assert r.status_code == 200, r.text
            extra = tmp_path / "extra"
            r = api.post(
                "/v1/userSpace/create",
                json={"name": "extra", "storage": {"type": "Local", "path": str(extra)}},
            )
            assert r.status_code == 200, r.text
            extra_id = r.json()["data"]["userSpace"]["userSpaceID"]
            _admin(server, "gc", "--once")
            r = api.post("/v1/bucket/create", json={"name": "after-gc"})
            assert r.status_code == 200, r.text
            r = api.post("/v1/userSpace/delete", json={"userSpaceID": extra_id})
            assert r.status_code == 200, r.text
        server.stop()
        server.start()
        with api_client(server) as api:
            for name in ("kept", "after-gc"):
                r = api.get("/v1/bucket/getByName", params={"name": name})
                assert r.status_code == 200, (name, r.text)
            names = [s["name"] for s in api.get("/v1/userSpace/list").json()["data"]["userSpaces"]]
            assert names == ["local"]
    finally:
        server.stop()
