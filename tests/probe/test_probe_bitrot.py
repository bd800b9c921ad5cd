"""Flipped bytes in stored blocks of rep and ec objects, end to end through a
real ``jcs serve`` and ``jcs admin ... --once``: reads stay correct, scrub
reports exactly the damaged blocks, repair fixes them, fsck --deep is clean."""

from __future__ import annotations

import random
import re
from pathlib import Path

from probe_support import (
    ProbeServer,
    add_local_space,
    blocks_of,
    download,
    flip_byte,
    fsck_summary,
    make_package,
    upload,
)

# Scrub's message names each bad block: "layout 3 block 1 (space 2, blocks/..): corrupt"
BAD = re.compile(r"layout (\d+) block (\d+) \(space (\d+), (blocks/\S+)\): (corrupt|missing)")
WIDE = {"COLUMNS": "100000"}  # one line per message, whatever its length


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_flipped_bytes_are_found_by_scrub_and_fixed_by_repair(tmp_path: Path) -> None:
    server = ProbeServer(data_dir=tmp_path / "data", log_dir=tmp_path)
    server.start()
    try:
        _scenario(server, tmp_path)
    finally:
        server.stop()


def _scenario(server: ProbeServer, tmp_path: Path) -> None:
    rng = random.Random(2)
    contents: dict[int, bytes] = {}
    with server.client() as api:
        for n in (2, 3):
            add_local_space(api, f"local-{n}", tmp_path / f"space-{n}")
        rep = make_package(api, "rep", {"type": "rep", "repCount": 2})
        ec = make_package(api, "ec", {"type": "ec", "k": 2, "n": 3, "chunkSize": 16 * 1024})
        for i, pkg in enumerate((rep, rep, ec, ec, ec)):
            content = rng.randbytes(rng.randint(100_000, 300_000))
            contents[int(upload(api, pkg, f"o{i}.bin", content)["objectID"])] = content
    ids = list(contents)
    db = f"sqlite+aiosqlite:///{server.data_dir / 'meta.db'}"
    blocks = blocks_of(db, ids)

    # one byte each: a replica of object 0; a data fragment of object 2, the
    # parity fragment of 3, and a data fragment of 4 past its first segment
    targets = [
        (ids[0], blocks[ids[0]][1], 1000),
        (ids[2], blocks[ids[2]][0], 5),
        (ids[3], blocks[ids[3]][2], 20_000),
        (ids[4], blocks[ids[4]][0], 40_000),
    ]
    for _, block, at in targets:
        assert block.path is not None
        flip_byte(block.path, at)
    damaged = {(b.layout_id, b.index) for _, b, _ in targets}

    # scrub finds exactly those blocks
    scrub = server.admin("scrub", "--once", env=WIDE)
    assert scrub.returncode == 0, scrub.stderr
    found = {
        (int(m[0]), int(m[1]), int(m[2]), m[3], m[4]) for m in BAD.findall(_words(scrub.stdout))
    }
    assert {(f[0], f[1]) for f in found} == damaged, scrub.stdout
    assert all(f[4] == "corrupt" for f in found), scrub.stdout
    assert {(f[0], f[1]): (f[2], f[3]) for f in found} == {
        (b.layout_id, b.index): (b.space_id, b.key) for _, b, _ in targets
    }
    assert f"{len(damaged)} bad ({0} missing, {len(damaged)} corrupt)" in scrub.stdout

    # reads stay correct, whole and ranged
    with server.client() as api:
        for object_id, content in contents.items():
            assert download(api, object_id) == content
            got = download(api, object_id, offset=30_000, length=50_000)
            assert got == content[30_000:80_000]

    # repair fixes them; afterwards every block verifies
    repair = server.admin("repair", "--once", env=WIDE)
    assert repair.returncode == 0, repair.stderr
    assert f"repaired {len(damaged)} blocks in {len(damaged)} layouts" in _words(repair.stdout)
    after = blocks_of(db, ids)
    for object_id, block, _ in targets:
        now = next(b for b in after[object_id] if b.index == block.index)
        assert now.key != block.key  # rebuilt under a new key, the bad copy removed
        assert block.path is not None and not block.path.exists()
    fsck = server.admin("fsck", "--deep")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fsck_summary(fsck.stdout) == (
        f"fsck: {sum(len(b) for b in after.values())} blocks checked, 0 missing, 0 corrupt, "
        "0 orphans, 0 under-replicated"
    )
    again = server.admin("scrub", "--once", env=WIDE)
    assert " 0 bad " in _words(again.stdout), again.stdout
    with server.client() as api:
        for object_id, content in contents.items():
            assert download(api, object_id) == content
