"""SIGKILL of ``jcs serve`` while uploads, overwrites and multipart uploads
are in flight: every acknowledged upload survives with its hash, nothing
unacknowledged shows up half-done, and after GC fsck finds no orphan and no
missing block."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from probe_support import (
    ProbeServer,
    add_local_space,
    comp_hash,
    fsck_summary,
    full_hash,
    make_package,
    ok,
    sha,
    sql,
)

THREADS_PER_KIND = 3
MIN_ACKS = 30  # acknowledged operations before the kill ...
MIN_ACKS_PER_KIND = 4  # ... and of each kind (multipart ones are slower)


@dataclass
class Op:
    """One write a client sent: its content and what became of it."""

    kind: str  # new | over | mp
    package_id: int
    path: str
    parts: list[bytes]
    state: str = "sending"  # sending | acked | rejected | lost (connection cut)

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)

    @property
    def file_hash(self) -> str:
        return comp_hash(self.parts) if self.kind == "mp" else full_hash(self.data)


@dataclass
class Load:
    endpoint: str
    key: str
    packages: list[int]
    stop: threading.Event = field(default_factory=threading.Event)
    ops: list[Op] = field(default_factory=list)
    # Guards ``ops``; notified when an operation is acknowledged or fails.
    lock: threading.Condition = field(default_factory=threading.Condition)
    errors: list[str] = field(default_factory=list)

    def acked(self) -> int:
        with self.lock:
            return sum(o.state == "acked" for o in self.ops)

    def _enough(self) -> bool:
        acked = [o.kind for o in self.ops if o.state == "acked"]
        kinds = ("new", "over", "mp")
        return len(acked) >= MIN_ACKS and all(acked.count(k) >= MIN_ACKS_PER_KIND for k in kinds)

    def wait_enough(self, timeout: float) -> None:
        """Until enough operations of every kind are acknowledged (or one failed)."""
        with self.lock:
            done = self.lock.wait_for(lambda: self._enough() or self.errors, timeout)
            assert not self.errors, self.errors
            assert done, f"only {self.acked()} acks in {timeout} s"

    def settle(self, op: Op, state: str, error: str | None = None) -> None:
        with self.lock:
            op.state = state
            if error is not None:
                self.errors.append(error)
            self.lock.notify_all()

    def record(self, op: Op) -> Op:
        with self.lock:
            self.ops.append(op)
        return op

    def worker(self, kind: str, tid: int) -> None:
        rng = random.Random(tid * 7919 + len(kind))
        with httpx.Client(
            base_url=self.endpoint, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        ) as api:
            i = 0
            while not self.stop.is_set():
                pkg = self.packages[(tid + i) % len(self.packages)]
                path = f"over/{tid}.bin" if kind == "over" else f"{kind}/{tid}/{i}.bin"
                if kind == "mp":
                    parts = [rng.randbytes(rng.randint(40_000, 250_000)) for _ in range(2)]
                else:
                    parts = [rng.randbytes(rng.randint(20_000, 600_000))]
                op = self.record(Op(kind, pkg, path, parts))
                i += 1
                try:
                    self._send(api, op)
                except httpx.TransportError:
                    self.settle(op, "lost")  # the server went away with the request in flight
                    return
                except Exception as exc:  # a bug in the test or the server
                    self.settle(op, "rejected", f"{op.path}: {exc!r}")
                    return

    def _send(self, api: httpx.Client, op: Op) -> None:
        if op.kind != "mp":
            r = api.post(
                "/v1/object/upload",
                files={
                    "info": (None, json.dumps({"packageID": op.package_id})),
                    "files": (op.path, op.data, "application/octet-stream"),
                },
            )
            if r.status_code != 200:
                self.settle(op, "rejected", f"{op.path}: {r.status_code} {r.text}")
                return
            assert r.json()["data"]["uploadeds"][0]["fileHash"] == op.file_hash
            self.settle(op, "acked")
            return
        created = ok(
            api.post(
                "/v1/object/newMultipartUpload",
                json={"packageID": op.package_id, "path": op.path},
            )
        )
        object_id = created["object"]["objectID"]
        for index, part in enumerate(op.parts, start=1):
            r = api.post(
                "/v1/object/uploadPart",
                files={
                    "info": (None, json.dumps({"objectID": object_id, "index": index})),
                    "file": ("part", part, "application/octet-stream"),
                },
            )
            ok(r)
        done = ok(
            api.post(
                "/v1/object/completeMultipartUpload",
                json={"objectID": object_id, "indexes": list(range(1, len(op.parts) + 1))},
            )
        )
        assert done["object"]["fileHash"] == op.file_hash
        self.settle(op, "acked")


def _visible(api: httpx.Client, package_id: int) -> dict[str, dict[str, object]]:
    """Every object listed in a package, by path (all pages)."""
    found: dict[str, dict[str, object]] = {}
    token = None
    while True:
        params: dict[str, object] = {"packageID": package_id, "path": "", "isPrefix": "true"}
        if token:
            params["continuationToken"] = token
        data = ok(api.get("/v1/object/listByPath", params=params))
        for o in data["objects"]:
            found[o["path"]] = o
        token = data.get("nextContinuationToken")
        if not token:
            return found


def test_sigkill_during_uploads_loses_nothing_acknowledged(tmp_path: Path) -> None:
    server = ProbeServer(data_dir=tmp_path / "data", log_dir=tmp_path)
    server.start()
    try:
        with server.client() as api:
            for n in (2, 3):
                add_local_space(api, f"local-{n}", tmp_path / f"space-{n}")
            packages = [
                make_package(api, "ec", {"type": "ec", "k": 2, "n": 3, "chunkSize": 32 * 1024}),
                make_package(api, "rep", {"type": "rep", "repCount": 2}),
            ]
        load = Load(server.endpoint, server.key, packages)
        threads = [
            threading.Thread(target=load.worker, args=(kind, tid), daemon=True)
            for kind in ("new", "over", "mp")
            for tid in range(THREADS_PER_KIND)
        ]
        for t in threads:
            t.start()
        load.wait_enough(60)
        with load.lock:
            in_flight = sum(o.state == "sending" for o in load.ops)
        server.kill()  # SIGKILL by PID, with requests in flight
        load.stop.set()
        for t in threads:
            t.join(30)
        assert not load.errors, load.errors
        assert in_flight >= THREADS_PER_KIND, "the kill should cut requests in flight"
        assert all(o.state in ("acked", "lost") for o in load.ops)

        server.start()
        with server.client() as api:
            visible = {pkg: _visible(api, pkg) for pkg in packages}
            checked = 0
            for pkg in packages:
                ops = [o for o in load.ops if o.package_id == pkg]
                by_path: dict[str, list[Op]] = {}
                for o in ops:
                    by_path.setdefault(o.path, []).append(o)
                # nothing is visible that no client sent
                assert set(visible[pkg]) <= set(by_path), set(visible[pkg]) - set(by_path)
                for path, sent in by_path.items():
                    acked = [o for o in sent if o.state == "acked"]
                    lost = [o for o in sent if o.state == "lost"]
                    obj = visible[pkg].get(path)
                    if obj is None:
                        assert not acked, f"acknowledged {path} is gone"
                        continue
                    # the last acknowledged version, or one cut off in flight
                    # whose commit landed before the kill — complete, never a mix
                    allowed = {o.file_hash: o for o in acked[-1:] + lost}
                    assert obj["fileHash"] in allowed, (path, obj["fileHash"])
                    expect = allowed[str(obj["fileHash"])]
                    r = api.get("/v1/object/download", params={"objectID": obj["objectID"]})
                    assert r.status_code == 200, r.text
                    assert sha(r.content) == sha(expect.data), path
                    checked += 1
            acked_new = sum(o.state == "acked" and o.kind != "over" for o in load.ops)
            assert checked >= acked_new

        # GC with no delay, then fsck: no orphan, no missing block
        env = {"JCS_GC_DELAY_SECONDS": "0"}
        gc = server.admin("gc", "--once", env=env)
        assert gc.returncode == 0, gc.stderr
        fsck = server.admin("fsck", env=env)
        summary = fsck_summary(fsck.stdout)
        assert " 0 missing," in summary and " 0 orphans," in summary, fsck.stdout
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        db = f"sqlite+aiosqlite:///{server.data_dir / 'meta.db'}"
        assert sql(db, "SELECT count(*) FROM layouts WHERE state = 'pending'")[0][0] == 0
        # temporary files of block writers cut off by the kill went with GC too
        leftovers = [p for p in tmp_path.rglob(".jcs-tmp-*") if p.is_file()]
        assert leftovers == [], leftovers
    finally:
        server.stop()
