"""How fast issue 10's 4 KiB and 1 MiB objects can be in Python on this machine: a floor.

    .venv/bin/python bench/floor_v1.py [--small-count N] [--mib-count N] [--quick]

Issue 10 asks ``jcs serve`` for shares of a bare ASGI app's rate on the
same stack: 4 KiB uploads at 0.20 of its 4 KiB POSTs, 4 KiB downloads at
0.40 of its GETs, 1 MiB objects at 0.40 both ways. This bench measures how
close to that a server of this stack can get when it does nothing that can
be skipped. The ``floor`` serves the two v1 routes that
``bench/small_objects.py`` drives, ``POST /v1/object/upload`` (a multipart
form: an ``info`` part, then one file) and ``GET /v1/object/download``,
and does only the work that a durable, encrypted object needs:

- a bearer key, compared in constant time with the one it knows;
- the form's parts found with ``bytes.find`` in the whole body;
- the file's SHA-256 (the v1 ``fileHash``), and AES-256-GCM with a fresh
  nonce;
- up to 4 KiB, the sealed bytes in the object's row (inline, as ours);
  above, in a block file of their own (written, ``fdatasync``ed), the
  hashing, sealing, writing and sync in a worker thread;
- one SQLite row per object (WAL, ``synchronous=FULL``). The rows of one
  turn of the loop are committed together in a thread, after one sync of
  the blocks' directory if the group holds a block file. Each upload is
  answered only after its commit's sync. With ``--syncfs`` the block
  files are not synced one by one: one ``syncfs`` of their file system
  before each commit makes them and their names durable at once;
- a download is one ``SELECT`` by id on the loop, and a block's read and
  opening in a worker thread.

It keeps no buckets or packages, paths, versions or redundancy, no
listings, logs, metrics or error envelopes.

Measured in one run with ``bench/small_objects.py``'s client and phases:
first the bare app, then the floor as one process, the floor as two (each
with a socket of its own on the port, ``SO_REUSEPORT``, as ``jcs serve
--workers``), and ``jcs serve`` (this tree, SQLite, one process) taking
turns, phase group by phase group, in an order reversed at each turn.
Prints each figure, its ratio to the bare app, and issue 10's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import floors

TOKEN = "floor-bench-key"
SYNCFS = os.environ.get("FLOOR_SYNCFS") == "1"
LIBC = ctypes.CDLL(None, use_errno=True)  # for syncfs, which os does not offer
INLINE = 4096
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (id INTEGER PRIMARY KEY, package INTEGER, path TEXT,"
    " size INTEGER, sha256 TEXT, nonce BLOB, data BLOB, block TEXT, mtime REAL)"
)
ROW = (
    "INSERT INTO objects (package, path, size, sha256, nonce, data, block, mtime)"
    " VALUES (?,?,?,?,?,?,?,?)"
)


# ----------------------------------------------------------------------------
# The floor server
# ----------------------------------------------------------------------------


class Floor:
    """One process's state: its database, cipher and blocks' directory."""

    def __init__(self, data_dir: Path) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.aes = AESGCM(floors.KEY)
        self.blocks = data_dir / "blocks"
        self.blocks.mkdir(parents=True, exist_ok=True)
        self.rows = floors.GroupCommit(str(data_dir / "floor.db"), SCHEMA, self._sync_blocks)

    def _sync_blocks(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        """The new block files' names are durable before their rows are."""
        if any(row[6] is not None for _, row in batch):
            fd = os.open(self.blocks, os.O_RDONLY)
            try:
                if SYNCFS:  # the blocks' data and names with one call
                    if LIBC.syncfs(fd) != 0:
                        raise OSError(ctypes.get_errno(), "syncfs")
                else:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def seal(self, content: bytes) -> tuple[str, bytes, bytes]:
        nonce = os.urandom(12)
        return hashlib.sha256(content).hexdigest(), nonce, self.aes.encrypt(nonce, content, None)

    def store_block(self, content: bytes) -> tuple[str, bytes, str]:
        """In a worker thread: hash, seal, write and sync a block file."""
        digest, nonce, sealed = self.seal(content)
        name = os.urandom(16).hex()
        fd = os.open(self.blocks / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(sealed)
            while view:
                view = view[os.write(fd, view) :]
            if not SYNCFS:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        return digest, nonce, name

    def load_block(self, name: str, nonce: bytes) -> bytes:
        return self.aes.decrypt(nonce, (self.blocks / name).read_bytes(), None)


def form_parts(body: bytes, content_type: bytes) -> list[tuple[bytes, bytes]]:
    """(headers, content) of each part of a ``multipart/form-data`` body."""
    boundary = b"--" + content_type.partition(b"boundary=")[2].strip(b'"')
    parts = []
    at = body.index(boundary) + len(boundary)
    while body[at : at + 2] == b"\r\n":
        head_end = body.index(b"\r\n\r\n", at)
        end = body.index(b"\r\n" + boundary, head_end)
        parts.append((body[at + 2 : head_end], body[head_end + 4 : end]))
        at = end + 2 + len(boundary)
    return parts


async def _upload(floor: Floor, receive: floors.Receive, content_type: bytes) -> bytes:
    (_, info), (head, content) = form_parts(await floors.read_body(receive), content_type)
    package = int(json.loads(info)["packageID"])
    path = head.partition(b'filename="')[2].partition(b'"')[0].decode()
    if len(content) <= INLINE:
        digest, nonce, sealed = floor.seal(content)
        row = (package, path, len(content), digest, nonce, sealed, None, time.time())
    else:
        loop = asyncio.get_running_loop()
        digest, nonce, block = await loop.run_in_executor(None, floor.store_block, content)
        row = (package, path, len(content), digest, nonce, None, block, time.time())
    object_id = await floor.rows.write(ROW, row)
    return json.dumps({"uploadeds": [{"objectID": object_id, "path": path}]}).encode()


async def handle(
    floor: Floor, scope: dict[str, Any], receive: floors.Receive, send: floors.Send
) -> None:
    """The two v1 routes, nothing else."""
    headers = dict(scope["headers"])
    if not hmac.compare_digest(headers.get(b"authorization", b""), b"Bearer " + TOKEN.encode()):
        return await floors.answer(send, 401, [], b"unauthorized")
    if scope["method"] == "POST" and scope["path"] == "/v1/object/upload":
        data = await _upload(floor, receive, headers[b"content-type"])
        body = b'{"code":"OK","message":"","data":' + data + b"}"
        kind = (b"content-type", b"application/json")
        return await floors.answer(send, 200, [kind, (b"content-length", b"%d" % len(body))], body)
    object_id = int(scope["query_string"].partition(b"objectID=")[2])
    row = floor.rows.db.execute(
        "SELECT size, nonce, data, block FROM objects WHERE id=?", (object_id,)
    ).fetchone()
    if row is None:
        return await floors.answer(send, 404, [], b"no such object")
    size, nonce, sealed, block = row
    if block is None:
        content = floor.aes.decrypt(nonce, sealed, None)
    else:
        loop = asyncio.get_running_loop()
        content = await loop.run_in_executor(None, floor.load_block, block, nonce)
    kind = (b"content-type", b"application/octet-stream")
    await floors.answer(send, 200, [kind, (b"content-length", b"%d" % size)], content)


app = floors.asgi(lambda: Floor(Path(os.environ["FLOOR_DIR"])), handle)


# ----------------------------------------------------------------------------
# The bench
# ----------------------------------------------------------------------------


async def measure_floor(
    name: str, workers: int, data: Any, args: argparse.Namespace, work: Path, res: dict[str, Any]
) -> AsyncIterator[None]:
    import small_objects as so

    vdir = work / name.replace(" ", "")
    vdir.mkdir()
    port = so.free_port()
    env = {"FLOOR_DIR": str(vdir), "FLOOR_SYNCFS": "1" if args.syncfs else "0"}
    proc = floors.start(__file__, port, workers, env, (vdir / "floor.log").open("wb"))
    try:
        packages = iter(range(1, 100))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        meter = so.Meter(proc.pid)
        phases = so.object_phases(
            name, port, auth, lambda _: next(packages), data, args, meter, res
        )
        async for _ in phases:
            yield
    finally:
        so.stop_proc(proc)


async def measure_ours(
    data: Any, args: argparse.Namespace, work: Path, res: dict[str, Any]
) -> AsyncIterator[None]:
    """``jcs serve`` (this tree, SQLite): the same two groups of phases, then stopped."""
    import small_objects as so

    phases = so.measure_jcs("ours", so.ROOT / "src", None, None, data, args, work, res)
    try:
        for _ in range(2):  # 4 KiB, then 1 MiB; the batch and listings are not this bench's
            await anext(phases)
            yield
    finally:
        await phases.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import small_objects as so

    work = Path(tempfile.mkdtemp(prefix="jcs-bench-floor-v1-"))
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "figures": {}, "errors": {}}
    data = so.Data(work, args)
    try:
        print("bare ASGI ceiling ...", flush=True)
        out["bare"] = await so.measure_bare(data, args, work)
        runs: dict[str, AsyncIterator[None]] = {}
        for name, workers in (("floor", 1), ("floor x2", 2)):
            res = out["figures"][name] = {}
            runs[name] = measure_floor(name, workers, data, args, work, res)
        runs["ours"] = measure_ours(data, args, work, out["figures"].setdefault("ours", {}))

        def ended(name: str, error: Exception | None) -> None:
            if error is not None:
                out["errors"][name] = f"{type(error).__name__}: {error}"
                print(f"  {name} FAILED: {out['errors'][name]}", flush=True)

        await so.take_turns(runs, ended)
    finally:
        data.close()
        shutil.rmtree(work, ignore_errors=True)
    return out


def report(out: dict[str, Any]) -> None:
    import small_objects as so

    keys = ("small_up", "small_down", "mib_up", "mib_down")
    names = [n for n in out["figures"] if n not in out["errors"]]
    print(f"\n{out['machine']}; each figure, then its ratio to the bare app's")
    print(f"  {'figure':<30}{'bare':>9}" + "".join(f"{n:>18}" for n in names) + "   target")
    for key in keys:
        label, unit, bare_key = so.FIGURES[key]
        bare = out["bare"][bare_key]["value"]
        line = f"  {label + ', ' + unit:<30}{bare:>9.0f}"
        for n in names:
            value = out["figures"][n][key]["value"]
            line += f"{value:>10.0f} ({value / bare:.2f})"
        print(line + f"   {so.TARGETS[key][2]}")
    cores = [
        f[key]["client_cores"]
        for f in (out["bare"], *out["figures"].values())
        for key in keys
        if key in f
    ]
    print(f"client CPU at most {max(cores):.2f} cores in any phase (of {os.cpu_count()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small-count", type=int, default=6000, help="4 KiB objects")
    ap.add_argument("--mib-count", type=int, default=400, help="1 MiB objects")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 300 and 40")
    ap.add_argument("--phase-timeout", type=float, default=300, help="seconds per phase at most")
    ap.add_argument("--syncfs", action="store_true", help="the floor: one syncfs a commit")
    ap.add_argument("--json", default=None, help="also write every figure here")
    args = floors.parse_or_serve(ap, app, __file__)
    if args is None:
        return
    if args.quick:
        args.small_count, args.mib_count = 300, 40
    args.pg_workers = args.sqlite_workers = 1  # what small_objects.measure_jcs reads
    import small_objects

    small_objects.stop_on_sigterm()
    out = asyncio.run(run(args))
    report(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
