"""``meta.backup.snapshot``: the copy is whole, only its owner's, never
over an existing file, and a failure is a named error, not a traceback."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from jointcloud.errors import BadArgument
from jointcloud.meta import backup
from jointcloud.meta.backup import snapshot


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "meta.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    conn.commit()
    conn.close()
    return path


def rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        conn.close()


def test_the_copy_is_whole_private_and_leaves_nothing_beside_it(
    database: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    old = os.umask(0o022)  # VACUUM INTO alone would make it readable by all
    try:
        made = snapshot(database, out / "b.db")
    finally:
        os.umask(old)
    assert rows(made.path) == 1000 and made.size == made.path.stat().st_size
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["b.db"]  # no temp dir, no journal


def test_an_existing_file_or_link_is_never_overwritten(database: Path, tmp_path: Path) -> None:
    (tmp_path / "there.db").write_bytes(b"mine")
    (tmp_path / "link.db").symlink_to(tmp_path / "nowhere")
    for name in ("there.db", "link.db"):
        with pytest.raises(BadArgument, match="already exists"):
            snapshot(database, tmp_path / name)
    assert (tmp_path / "there.db").read_bytes() == b"mine"
    assert not (tmp_path / "nowhere").exists()


def test_a_file_system_without_hard_links_gets_the_copy_renamed(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vfat, exFAT and some network mounts refuse link(2) (EPERM)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(backup.os, "link", refuse)
    made = snapshot(database, tmp_path / "b.db")
    assert rows(made.path) == 1000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".jcs-backup-")] == []


def test_a_write_failure_is_named_and_leaves_nothing(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(backup.os, "link", broken)
    with pytest.raises(BadArgument, match=r"cannot write the backup to .*Input/output error"):
        snapshot(database, tmp_path / "b.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.db", "meta.db-shm", "meta.db-wal"]


def test_a_missing_database_or_directory_is_named(database: Path, tmp_path: Path) -> None:
    with pytest.raises(BadArgument, match="no metadata database"):
        snapshot(tmp_path / "none.db", tmp_path / "b.db")
    with pytest.raises(BadArgument, match="is not a directory"):
        snapshot(database, tmp_path / "no" / "b.db")


def test_a_directory_that_cannot_be_synced(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some network mounts refuse to sync a directory (EINVAL): the backup,
    whole and synced under its name, is not called failed. A disk failing
    (EIO) is reported, saying the backup exists but may not be durable."""

    def refused(path: Path) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(backup, "fsync_dir", refused)
    assert rows(snapshot(database, tmp_path / "a.db").path) == 1000

    def failing(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(backup, "fsync_dir", failing)
    with pytest.raises(BadArgument, match="was written, but its directory could not be synced"):
        snapshot(database, tmp_path / "b.db")
    assert rows(tmp_path / "b.db") == 1000
