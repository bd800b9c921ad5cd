"""``jcs admin``: jobs run once from the command line against the data dir of
a running server, with the server still serving."""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e_support import JCS, JcsServer, api_client, clean_env, make_package, running_server


def admin(server: JcsServer, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(JCS), "admin", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(), **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def block_files(server: JcsServer) -> list[Path]:
    return [p for p in (server.data_dir / "spaces").rglob("*") if p.is_file()]


def test_gc_once_removes_overwritten_blocks_and_jobs_lists_it(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv") as server, api_client(server) as api:
        pkg = make_package(api, "adm", "p")
        # Above the inline threshold (4 KiB): each version is a block file.
        for content in (b"first version" * 400, b"second version" * 400):
            r = api.post(
                "/v1/object/upload",
                files={"info": (None, f'{{"packageID": {pkg}}}'), "files": ("a.txt", content)},
            )
            assert r.status_code == 200, r.text
        object_id = r.json()["data"]["uploadeds"][0]["objectID"]
        assert len(block_files(server)) == 2  # the old version waits for GC

        text = admin(server, "gc", "--once", env={"JCS_GC_DELAY_SECONDS": "0"})
        assert "gc: removed 1 blocks of 1 unreferenced layouts" in text
        assert len(block_files(server)) == 1
        got = api.get("/v1/object/download", params={"objectID": object_id})
        assert got.content == b"second version" * 400

        listing = admin(server, "jobs")
        row = next(line for line in listing.splitlines() if " gc " in f" {line} ")
        assert "idle" in row and "removed 1 blocks" in row

        # the default delay protects in-flight readers: nothing more to remove now
        assert "removed 0 blocks" in admin(server, "gc", "--once")


def test_bad_setting_is_named_without_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(JCS), "admin", "jobs", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(), "JCS_GC_DELAY_SECONDS": "soon"},
    )
    assert proc.returncode == 1
    assert "JCS_GC_DELAY_SECONDS" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()
