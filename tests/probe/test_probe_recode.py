"""A package's policy changes twice (rep(2) -> ec(3,4) -> rep(3)) while
threads read its objects in a loop over HTTP from a real ``jcs serve``,
whose recode job (woken by the change) and ``jcs admin recode`` re-encode
them: no read fails, every byte is identical, and afterwards every object
has the new policy and fsck is clean."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from probe_support import (
    ProbeServer,
    add_local_space,
    fsck_summary,
    make_package,
    ok,
    sql,
    upload,
)

READERS = 3
EC34 = {"type": "ec", "k": 3, "n": 4, "chunkSize": 16 * 1024}
REP3 = {"type": "rep", "repCount": 3}


@dataclass
class Readers:
    endpoint: str
    key: str
    contents: dict[int, bytes]
    stop: threading.Event = field(default_factory=threading.Event)
    reads: int = 0
    failures: list[str] = field(default_factory=list)
    # Guards the counters; notified after every read.
    changed: threading.Condition = field(default_factory=threading.Condition)

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        ids = list(self.contents)
        with httpx.Client(
            base_url=self.endpoint, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        ) as api:
            while not self.stop.is_set():
                object_id = rng.choice(ids)
                content = self.contents[object_id]
                params: dict[str, Any] = {"objectID": object_id}
                lo, hi = 0, len(content)
                if rng.random() < 0.5:
                    lo = rng.randrange(len(content))
                    hi = rng.randint(lo + 1, len(content))
                    params.update(offset=lo, length=hi - lo)
                try:
                    r = api.get("/v1/object/download", params=params)
                    problem = None
                    if r.status_code != 200:
                        problem = f"{object_id} {params}: {r.status_code} {r.text[:300]}"
                    elif r.content != content[lo:hi]:
                        problem = f"{object_id} {params}: different bytes"
                except httpx.HTTPError as exc:
                    problem = f"{object_id} {params}: {exc!r}"
                with self.changed:
                    self.reads += 1
                    if problem:
                        self.failures.append(problem)
                    self.changed.notify_all()

    def count(self) -> int:
        with self.changed:
            return self.reads

    def wait_for(self, reads: int, timeout: float = 60.0) -> None:
        """Until ``reads`` reads are done in all, or one failed."""
        with self.changed:
            done = self.changed.wait_for(lambda: self.reads >= reads or self.failures, timeout)
            assert done, f"the readers stalled at {self.reads} reads"
            assert not self.failures, self.failures[:5]


def test_policy_change_under_reads(tmp_path: Path) -> None:
    server = ProbeServer(data_dir=tmp_path / "data", log_dir=tmp_path)
    server.start()
    try:
        _scenario(server, tmp_path)
    finally:
        server.stop()


def _scenario(server: ProbeServer, tmp_path: Path) -> None:
    rng = random.Random(5)
    contents: dict[int, bytes] = {}
    with server.client() as api:
        for n in (2, 3, 4):
            add_local_space(api, f"local-{n}", tmp_path / f"space-{n}")
        pkg = make_package(api, "data", {"type": "rep", "repCount": 2})
        for i in range(6):
            content = rng.randbytes(rng.randint(50_000, 1_500_000))
            contents[int(upload(api, pkg, f"o{i}.bin", content)["objectID"])] = content

    readers = Readers(server.endpoint, server.key, contents)
    threads = [
        threading.Thread(target=readers.run, args=(seed,), daemon=True) for seed in range(READERS)
    ]
    for t in threads:
        t.start()
    try:
        for policy in (EC34, REP3):
            readers.wait_for(readers.count() + READERS)  # the readers are at it
            before = readers.count()
            with server.client() as api:
                ok(api.post("/v1/package/update", json={"packageID": pkg, "redundancy": policy}))
            # The update wakes the server's recode job; an operator's run
            # either does the work or finds it done (or running elsewhere).
            recode = server.admin("recode", "--until-done")
            assert recode.returncode == 0 or "running in another process" in recode.stderr, (
                recode.stdout + recode.stderr
            )
            assert "failed" not in recode.stdout, recode.stdout
            deadline = time.monotonic() + 60
            while True:
                with server.client() as api:
                    listed = ok(api.get("/v1/object/getPackageObjects", params={"packageID": pkg}))
                assert {o["objectID"] for o in listed["objects"]} == set(contents)
                if all(o["redundancy"] == policy for o in listed["objects"]):
                    break
                assert time.monotonic() < deadline, listed
                time.sleep(0.1)
            assert readers.count() > before  # reads kept going while it was re-encoded
            readers.wait_for(readers.count() + 20)  # and go on from the new layouts
    finally:
        readers.stop.set()
        for t in threads:
            t.join(30)
    assert not readers.failures, readers.failures[:5]
    assert readers.reads >= 40

    # the old layouts were released, not deleted under the readers; GC takes them
    env = {"JCS_GC_DELAY_SECONDS": "0"}
    assert server.admin("gc", "--once", env=env).returncode == 0
    db = f"sqlite+aiosqlite:///{server.data_dir / 'meta.db'}"
    policies = sql(db, "SELECT policy FROM layouts WHERE state = 'live'")
    assert len(policies) == len(contents)
    assert all('"rep"' in p[0] and '"repCount": 3' in p[0] for p in policies), policies
    fsck = server.admin("fsck", "--deep", env=env)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fsck_summary(fsck.stdout) == (
        f"fsck: {3 * len(contents)} blocks checked, 0 missing, 0 corrupt, 0 orphans, "
        "0 under-replicated"
    )
