"""``jcs space drain`` and ``jcs package|bucket set-redundancy`` against a real
server whose background jobs do the work (drain and recode are woken at once),
on a server of its own so that moved blocks stay out of the shared one."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from e2e_support import JCS, Cli, api_client, clean_env, make_package, running_server


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_drain_and_set_redundancy_through_the_cli(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv") as server, api_client(server) as api:
        work = tmp_path / "cwd"
        work.mkdir()
        cli = Cli(server.endpoint, server.key, work)
        for name in ("d2", "d3", "d4"):
            cli("space", "add", name, "--type", "Local", "--path", str(tmp_path / name))
        ids = {
            s["name"]: s["userSpaceID"]
            for s in api.get("/v1/userSpace/list").json()["data"]["userSpaces"]
        }
        pkg = make_package(api, "dr", "p", {"type": "rep", "repCount": 2})
        body = os.urandom(300_000)
        r = api.post(
            "/v1/object/upload",
            files={
                "info": (None, f'{{"packageID": {pkg}, "affinity": {ids["d2"]}}}'),
                "files": ("f.bin", body),
            },
        )
        assert r.status_code == 200, r.text
        object_id = r.json()["data"]["uploadeds"][0]["objectID"]
        assert any((tmp_path / "d2").rglob("blocks/*/*"))

        out = cli("space", "drain", "d2")
        assert "user space d2" in out and "is Draining" in out
        row = next(line for line in cli("space", "ls").splitlines() if " d2 " in line)
        assert "Draining" in row

        def removed() -> bool:
            return cli.run("space", "rm", "d2").returncode == 0

        wait_for(removed, "the drained space to be removable")
        assert not any((tmp_path / "d2").rglob("blocks/*/*"))
        assert api.get("/v1/object/download", params={"objectID": object_id}).content == body

        def redundancy() -> object:
            got = api.post("/v1/object/listByIDs", json={"objectIDs": [object_id]})
            return got.json()["data"]["object"][0]["redundancy"]

        out = cli("package", "set-redundancy", "dr/p", "ec:2,3")
        assert "package dr/p: redundancy ec(2,3)" in out and "re-encoded in the background" in out
        wait_for(lambda: redundancy() == {"type": "ec", "k": 2, "n": 3, "chunkSize": 1048576}, "ec")
        assert "ec(2,3)" in cli("package", "ls", "dr")
        assert api.get("/v1/object/download", params={"objectID": object_id}).content == body

        out = cli("bucket", "set-redundancy", "dr", "rep:3")
        assert "bucket dr: redundancy rep(3)" in out
        out = cli("package", "set-redundancy", "dr/p", "inherit")
        assert "package dr/p: redundancy inherited" in out
        wait_for(lambda: redundancy() == {"type": "rep", "repCount": 3}, "rep(3)")
        assert api.get("/v1/object/download", params={"objectID": object_id}).content == body

        proc = subprocess.run(
            [str(JCS), "admin", "jobs", "--data-dir", str(server.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
        )
        assert proc.returncode == 0, proc.stderr
        names = {line.split("│")[1].strip() for line in proc.stdout.splitlines() if "│" in line}
        assert {"health", "drain", "recode"} <= names
