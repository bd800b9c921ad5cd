"""Two ``jcs serve`` processes on ONE PostgreSQL database, both running their
job runners (scrub and repair every second), plus two ``jcs admin repair
--once`` started at the same moment: every damaged block is rebuilt exactly
once (its block row changes once, no other row changes, no rebuild loses a
compare-and-swap), and nothing is lost."""

from __future__ import annotations

import asyncio
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
from probe_support import (
    QUIET_JOBS,
    ProbeServer,
    add_local_space,
    admin_command,
    blocks_of,
    clean_env,
    download,
    flip_byte,
    fsck_summary,
    make_package,
    sql,
    upload,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from support.postgres import PostgresServer

BUSY_JOBS = {
    "JCS_REPAIR_INTERVAL_SECONDS": "1",
    "JCS_SCRUB_INTERVAL_SECONDS": "1",
    "JCS_SCRUB_MBPS": "1000",
}
LIVE_BLOCKS = (
    "SELECT b.layout_id, b.idx, b.user_space_id, b.key FROM blocks b "
    "JOIN layouts l ON l.id = b.layout_id WHERE l.state = 'live'"
)


class Watcher:
    """Samples every live block row every few milliseconds and keeps each
    block's distinct locations in the order they were seen."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[tuple[int, int], list[tuple[int, str]]] = {}
        self.samples = 0
        self._sampled = threading.Condition()  # notified after every sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        engine = create_async_engine(self.url)
        try:
            while not self._stop.is_set():
                async with engine.connect() as conn:
                    rows = (await conn.execute(text(LIVE_BLOCKS))).all()
                for r in rows:
                    history = self.seen.setdefault((r.layout_id, r.idx), [])
                    if not history or history[-1] != (r.user_space_id, r.key):
                        history.append((r.user_space_id, r.key))
                with self._sampled:
                    self.samples += 1
                    self._sampled.notify_all()
                await asyncio.sleep(0.01)  # the sampling period
        finally:
            await engine.dispose()

    def wait_sample(self) -> None:
        """Until one more sample is taken from now on."""
        with self._sampled:
            target = self.samples + 1
            assert self._sampled.wait_for(lambda: self.samples >= target, 30), "no sample"

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def job_runs(url: str) -> dict[str, int]:
    """Passes made so far of the repair and scrub jobs, by any process."""
    rows = sql(url, "SELECT name, runs FROM jobs WHERE name IN ('repair', 'scrub')")
    return {name: int(runs) for name, runs in rows}


def test_two_servers_one_database_repair_once(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.new_database()
    data = tmp_path / "data"
    one = ProbeServer(data_dir=data, log_dir=tmp_path, database_url=url, env=dict(BUSY_JOBS))
    two = ProbeServer(data_dir=data, log_dir=tmp_path, database_url=url, env=dict(BUSY_JOBS))
    one.start()
    try:
        two.start()
        try:
            _scenario(one, two, url, tmp_path)
        finally:
            two.stop()
    finally:
        one.stop()
    for log in one.logs + two.logs:
        assert "changed meanwhile" not in log.read_text(errors="replace")


def _scenario(one: ProbeServer, two: ProbeServer, url: str, tmp_path: Path) -> None:
    rng = random.Random(4)
    contents: dict[int, bytes] = {}
    with one.client() as api:
        for n in (2, 3, 4):
            add_local_space(api, f"local-{n}", tmp_path / f"space-{n}")
        rep = make_package(api, "rep", {"type": "rep", "repCount": 2})
        ec = make_package(api, "ec", {"type": "ec", "k": 2, "n": 3, "chunkSize": 16 * 1024})
        for i in range(8):
            content = rng.randbytes(rng.randint(50_000, 200_000))
            pkg = rep if i % 2 else ec
            contents[int(upload(api, pkg, f"o{i}.bin", content)["objectID"])] = content
    ids = list(contents)
    blocks = blocks_of(url, ids)
    before = {(r.layout_id, r.idx): (r.user_space_id, r.key) for r in sql(url, LIVE_BLOCKS)}

    with Watcher(url) as watcher:
        watcher.wait_sample()
        # damage six objects: delete a block of three, flip a byte in three
        damaged: set[tuple[int, int]] = set()
        for n, object_id in enumerate(ids[:6]):
            victim = blocks[object_id][rng.randrange(len(blocks[object_id]))]
            assert victim.path is not None
            if n % 2:
                victim.path.unlink()
            else:
                flip_byte(victim.path, rng.randrange(victim.path.stat().st_size))
            damaged.add((victim.layout_id, victim.index))

        # reads through both servers (degraded reads queue repairs), then two
        # admin processes race each other and both runners for the repair lease
        with one.client() as a, two.client() as b:
            for i, (object_id, content) in enumerate(contents.items()):
                assert download(a if i % 2 else b, object_id) == content
        racers = [
            subprocess.Popen(
                admin_command(data_dir, "repair", "--once", database_url=url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**clean_env(), **QUIET_JOBS, **BUSY_JOBS},
            )
            for data_dir in (one.data_dir, two.data_dir)
        ]
        outputs = [r.communicate(timeout=120) for r in racers]
        for r, (out, err) in zip(racers, outputs, strict=True):
            assert r.returncode == 0 or "running in another process" in err, (out, err)

        # the runners of both servers scrub and repair until everything is whole
        deadline = time.monotonic() + 90
        while True:
            queued = sql(url, "SELECT count(*) FROM repair_queue")[0][0]
            rows = {(r.layout_id, r.idx): (r.user_space_id, r.key) for r in sql(url, LIVE_BLOCKS)}
            if not queued and all(rows[d] != before[d] for d in damaged):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"not repaired in time: queue {queued}, {damaged}")
            time.sleep(0.2)
        # Two more passes of each job (by either server) must find nothing to
        # do: the watcher sees no further change.
        passes = job_runs(url)
        assert set(passes) == {"repair", "scrub"}, passes
        deadline = time.monotonic() + 60
        while not all(job_runs(url)[j] >= passes[j] + 2 for j in passes):
            assert time.monotonic() < deadline, (passes, job_runs(url))
            time.sleep(0.1)
        watcher.wait_sample()
    history = watcher.seen

    for block, locations in history.items():
        if block in damaged:
            assert len(locations) == 2, (block, locations)  # rebuilt exactly once
            assert locations[0] == before[block]
        else:
            assert locations == [before[block]], (block, locations)  # never touched
    assert set(history) == set(before)

    # nothing lost, nothing left over: every row's file exists and nothing else
    env = {"JCS_GC_DELAY_SECONDS": "0"}
    fsck = one.admin("fsck", "--deep", env=env)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fsck_summary(fsck.stdout) == (
        f"fsck: {len(before)} blocks checked, 0 missing, 0 corrupt, 0 orphans, 0 under-replicated"
    )
    files = [
        p
        for root in (tmp_path / "data" / "spaces", *(tmp_path / f"space-{n}" for n in (2, 3, 4)))
        for p in root.rglob("*")
        if p.is_file() and "/blocks/" in p.as_posix()
    ]
    assert len(files) == len(before)
    runs = sql(url, "SELECT runs FROM jobs WHERE name = 'repair'")[0][0]
    assert runs >= 2
    with one.client() as a, two.client() as b:
        for object_id, content in contents.items():
            assert download(a, object_id) == content
            assert download(b, object_id) == content
