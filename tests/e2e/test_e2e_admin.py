"""``jcs admin``: jobs run once from the command line against the data dir of
a running server, with the server still serving."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import threading
from pathlib import Path

from e2e_support import (
    JCS,
    JcsServer,
    admin_now,
    api_client,
    clean_env,
    fetch,
    make_package,
    running_server,
    upload,
)

from support.ports import free_port


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


def test_a_backup_made_while_serving_restores_the_objects_it_saw(tmp_path: Path) -> None:
    """``jcs admin backup`` copies the SQLite metadata while uploads go on;
    restored in place of ``meta.db`` (docs/durability.md), the server reads
    back every object the copy saw, inline and in blocks, the object
    written after it is gone, and fsck --repair deletes its orphan blocks."""
    small, big, later = b"inline bytes", os.urandom(64 * 1024), os.urandom(48 * 1024)
    dest = tmp_path / "meta.backup"
    with running_server(tmp_path / "srv") as server, api_client(server) as api:
        pkg = make_package(api, "bk", "p")
        assert upload(api, pkg, ("small.txt", small), ("big.bin", big)).status_code == 200
        stop = threading.Event()
        failures: list[str] = []

        def writer() -> None:  # traffic while the copy is made
            n = 0
            while not stop.is_set():
                r = upload(api, pkg, (f"busy/{n}", os.urandom(6000)))
                if r.status_code != 200:
                    failures.append(r.text)
                n += 1

        busy = threading.Thread(target=writer)
        busy.start()
        try:
            text = admin(server, "backup", str(dest))
        finally:
            stop.set()
            busy.join()
        assert failures == []
        assert f"backed up the metadata to {dest}" in text and "master.key" in text
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        again = subprocess.run(
            [str(JCS), "admin", "backup", str(dest), "--data-dir", str(server.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
        )
        assert again.returncode == 1 and "already exists" in again.stderr
        assert upload(api, pkg, ("later.bin", later)).status_code == 200
        gone = api.post("/v1/object/deleteByPath", json={"packageID": pkg, "path": "small.txt"})
        assert gone.status_code == 200, gone.text
        before_restore = set(block_files(server))

    # Restore, as docs/durability.md says: the server stopped, the database
    # and its -wal and -shm files replaced by the backup.
    data = server.data_dir
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (data / name).unlink(missing_ok=True)
    shutil.copyfile(dest, data / "meta.db")
    server.start()
    try:
        with api_client(server) as api:
            assert fetch(api, pkg, "small.txt") == small
            assert fetch(api, pkg, "big.bin") == big
            r = api.get("/v1/object/downloadByPath", params={"packageID": pkg, "path": "later.bin"})
            assert r.status_code == 404
        found = admin_now(server, "fsck")
        assert found.returncode == 1 and " 0 missing," in found.stdout, found.stdout
        assert "orphan" in found.stdout
        assert admin_now(server, "fsck", "--repair").returncode == 1  # it found, then mended
        clean = admin_now(server, "fsck")
        assert clean.returncode == 0, clean.stdout
        assert set(block_files(server)) < before_restore
    finally:
        server.stop()


def test_a_server_announces_its_gc_delay_while_it_runs(tmp_path: Path) -> None:
    """What GC of every process on the database waits for (``core/gcholds``):
    the server's own delay, from before its first request until it stops."""

    def announced(server: JcsServer) -> list[tuple[str, float]]:
        db = sqlite3.connect(f"file:{server.data_dir / 'meta.db'}?mode=ro", uri=True)
        try:
            return db.execute("SELECT owner, delay_seconds FROM gc_holds").fetchall()
        finally:
            db.close()

    tmp_path.mkdir(exist_ok=True)
    server = JcsServer(
        data_dir=tmp_path / "data", log_dir=tmp_path, env={"JCS_GC_DELAY_SECONDS": "1234"}
    )
    server.start()
    try:
        [(owner, delay)] = announced(server)
        assert delay == 1234.0 and f":{server.pid}:" in owner
    finally:
        server.stop()
    assert announced(server) == []


def test_a_restore_without_its_master_key_or_database_does_not_start(tmp_path: Path) -> None:
    """Found by review: a backup restored into a new data dir started with
    a new master key (every object then answered 500, and new ones were
    sealed with the wrong key), and a data dir on an empty database started
    a new store (a new root key; fsck then called every block an orphan)."""
    dest = tmp_path / "meta.backup"
    with running_server(tmp_path / "srv") as server, api_client(server) as api:
        pkg = make_package(api, "bk", "p")
        assert upload(api, pkg, ("big.bin", os.urandom(64 * 1024))).status_code == 200
        admin(server, "backup", str(dest))
    old = server.data_dir

    def start(data: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(str(JCS), "serve", "--data-dir", str(data)),
                *("--listen", f"127.0.0.1:{free_port()}"),
                *("--s3-listen", f"127.0.0.1:{free_port()}"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
        )

    fresh = tmp_path / "restored"
    fresh.mkdir(mode=0o700)
    shutil.copyfile(dest, fresh / "meta.db")
    r = start(fresh)
    assert r.returncode == 2 and "master.key is missing" in r.stderr, r.stderr
    assert not (fresh / "master.key").exists() and not (fresh / "root.key").exists()
    (fresh / "master.key").write_bytes(os.urandom(32))
    r = start(fresh)
    assert r.returncode == 2 and "is not the master key" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr

    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (old / name).unlink(missing_ok=True)
    (old / "meta.db").write_bytes(b"")  # an empty file restored by mistake
    root_key = (old / "root.key").read_bytes()
    r = start(old)
    assert r.returncode == 2 and "holds no users" in r.stderr, r.stderr
    assert (old / "root.key").read_bytes() == root_key
