"""Small objects through ``jcs serve`` against the framework's ceiling, old tree vs new.

    .venv/bin/python bench/small_objects.py                       # this tree, SQLite + PostgreSQL
    .venv/bin/python bench/small_objects.py --old-rev HEAD~20     # ... and an older commit
    .venv/bin/python bench/small_objects.py --old-src /path/to/old/checkout   # (or its src/)
    .venv/bin/python bench/small_objects.py --quick --old-rev HEAD~1 --no-postgres
    options: --variants new-sqlite,old-sqlite  --json out.json  --small-count 2000 ...

Measures in one run, on this machine, with one hand-written keep-alive HTTP
client (bench/rawhttp.py) for everything:

- the ceiling: a bare ASGI app on the same server stack (bench/bare_asgi.py):
  4 KiB multipart POSTs/s and 4 KiB GETs/s over 16 connections (at least
  5,000 requests), 1 MiB POST and GET MiB/s over 4 connections (at least 200);
- for each server variant, a real ``jcs serve`` process with a fresh data
  dir and a fresh metadata database, default redundancy (the first-start
  local space): 4 KiB uploads/s and downloads/s (16 clients,
  ``--small-count`` distinct objects), 1 MiB uploads and downloads MiB/s
  (4 clients, ``--mib-count`` objects), one ``POST /v1/object/upload``
  carrying 1,000 files of 4 KiB (seconds, median of ``--rounds``, fresh
  paths each round), and ``GET /v1/object/listByPath`` of a package holding
  exactly 1,000 objects (listings/s, 4 clients, ``--list-seconds``).

``--pg-workers N`` adds ``new-pgw``: this tree on PostgreSQL with
``jcs serve --workers N``; ``--sqlite-workers N`` adds ``new-sqlitew``, the
same on SQLite.

Variants: ``new-sqlite`` and ``new-pg`` (this tree's src/), ``old-sqlite``
and ``old-pg`` (the tree of ``--old-src`` or ``--old-rev``, run by the same
interpreter with its src/ first on PYTHONPATH). PostgreSQL is a throwaway
server started like the test suite's (tests/support/postgres.py: initdb in a
temp dir, loopback port) with PostgreSQL's durable defaults (fsync and
synchronous commit on), one fresh database per variant. The variants
take turns: each runs one group of phases (4 KiB, 1 MiB, the batch
upload, each listing) and waits for the others, their order reversed at
each turn, every server staying up until its last phase; so the machine's
drift during a run weighs on old and new alike.

Every answer is checked: statuses, one object per single upload and 1,000
per batch, every 4 KiB download byte for byte, every 1 MiB download's size
and a sample of them byte for byte, a sample of each batch read back, each
listing's object count (the first one parsed in full). For every timed phase
the CPU of this process (the client), of the server's process tree and of
PostgreSQL's is printed in cores, with "other" (the rest of the machine's
busy CPU: a sign of outside noise). Prints each figure, its ratio to the
ceiling, the issue's targets (PASS/MISS for this tree) and new/old ratios.
A PASS/MISS is a result (exit 0); a variant that could not be measured
(server did not start, a check failed) is reported and the exit status is 1.

Run time is mostly the server's: the 2,000 4 KiB uploads at tens per second
take most of it (about six minutes for all four variants on a busy 2-core
machine); ``--quick`` takes about a minute and a half.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from rawhttp import Conn, multipart_parts
from small_files import form_body
from v1_api import Job, free_port, many, serve_command, wait_listening, wait_ready

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
SMALL = 4096
BOUNDARY = "jcsbenchboundary"  # the one rawhttp.multipart_parts and small_files.form_body use
FORM = f"multipart/form-data; boundary={BOUNDARY}"
BARE_MIN_SMALL, BARE_MIN_MIB = 5000, 200  # requests in each phase of the ceiling, at least
# ... and seconds: a phase of the ceiling that ends sooner is run again, longer
# (its 1 MiB GETs took 0.08-0.13 s and read 2,481-7,457 MiB/s from run to run).
BARE_MIN_SECONDS = 1.0
ALL_VARIANTS = ("new-sqlite", "new-sqlitew", "new-pg", "new-pgw", "old-sqlite", "old-pg")

# figure -> (label, unit, bare figure it is compared with or None)
FIGURES = {
    "small_up": ("4 KiB uploads, 16 clients", "obj/s", "small_up"),
    "small_down": ("4 KiB downloads, 16 clients", "obj/s", "small_down"),
    "mib_up": ("1 MiB uploads, 4 clients", "MiB/s", "mib_up"),
    "mib_down": ("1 MiB downloads, 4 clients", "MiB/s", "mib_down"),
    "multi": ("one upload of 1,000 x 4 KiB", "s", None),
    "list": ("list 1,000 objects, 4 clients", "lists/s", None),
    "list_folders": ("list 1,000 folders of 3, 4 clients", "lists/s", None),
}
BARE = {
    "small_up": ("4 KiB POST, 16 conns", "req/s"),
    "small_down": ("4 KiB GET, 16 conns", "req/s"),
    "mib_up": ("1 MiB POST, 4 conns", "MiB/s"),
    "mib_down": ("1 MiB GET, 4 conns", "MiB/s"),
}
# figure -> (kind, threshold, text): "ratio" to the bare figure, or an absolute bound
TARGETS = {
    "small_up": ("ratio", 0.20, ">= 0.20 x bare"),
    "small_down": ("ratio", 0.40, ">= 0.40 x bare"),
    "mib_up": ("ratio", 0.40, ">= 0.40 x bare"),
    "mib_down": ("ratio", 0.40, ">= 0.40 x bare"),
    "multi": ("below", 1.0, "< 1 s"),
    "list": ("atleast", 200.0, ">= 200/s"),
    "list_folders": ("none", 0.0, "(no target)"),
}


# --- CPU accounting -------------------------------------------------------


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of a process and its descendants (reaped ones included)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


@dataclass
class Phase:
    """Wall time and CPU seconds of one timed phase (or several added up)."""

    wall: float = 0.0
    client: float = 0.0
    server: float = 0.0
    db: float = 0.0
    busy: float = 0.0

    def __add__(self, o: Phase) -> Phase:
        return Phase(
            self.wall + o.wall,
            self.client + o.client,
            self.server + o.server,
            self.db + o.db,
            self.busy + o.busy,
        )

    def cores(self) -> dict[str, float]:
        w = self.wall or 1e-9
        other = max(0.0, self.busy - self.client - self.server - self.db)
        return {
            "client_cores": self.client / w,
            "server_cores": self.server / w,
            "db_cores": self.db / w,
            "other_cores": other / w,
        }


class Meter:
    def __init__(self, server_pid: int, db_pid: int | None = None) -> None:
        self.server_pid, self.db_pid = server_pid, db_pid

    @contextlib.contextmanager
    def phase(self) -> Iterator[Phase]:
        # Untimed: the page cache's dirty data of what ran before (another
        # variant's data dir) is written back now, not during this phase.
        os.sync()
        ph = Phase()
        c0, s0, d0, b0 = (
            self_cpu(),
            tree_cpu(self.server_pid),
            tree_cpu(self.db_pid),
            machine_busy(),
        )
        t0 = time.perf_counter()
        yield ph
        ph.wall = time.perf_counter() - t0
        ph.client = self_cpu() - c0
        ph.server = tree_cpu(self.server_pid) - s0
        ph.db = tree_cpu(self.db_pid) - d0
        ph.busy = machine_busy() - b0


def figure(value: float, unit: str, ph: Phase, **extra: Any) -> dict[str, Any]:
    return {"value": value, "unit": unit, "wall_s": ph.wall, **ph.cores(), **extra}


# --- processes ------------------------------------------------------------


def stop_proc(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load_pg_support() -> Any:
    """tests/support/postgres.py, loaded by path (tests/ is not a package)."""
    path = ROOT / "tests" / "support" / "postgres.py"
    spec = importlib.util.spec_from_file_location("jcs_bench_pg_support", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def postmaster_pid(pg: Any) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((Path(pg.data) / "postmaster.pid").read_text().split()[0])
    return None


def start_jcs(
    src: Path, work: Path, data: Path, port: int, db_url: str | None, log: Path, workers: int = 1
) -> subprocess.Popen[bytes]:
    """``.venv/bin/jcs serve`` with ``src`` first on PYTHONPATH (so the same
    launcher runs this tree or an older one); ``workers`` > 1: that many
    processes (``--workers``, this tree only)."""
    env = dict(
        os.environ,
        **({"JCS_WORKERS": str(workers)} if workers > 1 else {}),
        JCS_GC_INTERVAL_SECONDS="3600",
        JCS_LOCAL_ROOTS=str(work),
        PYTHONPATH=os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p),
    )
    with log.open("wb") as f:
        return subprocess.Popen(
            serve_command(data, port, db_url), env=env, stdout=f, stderr=subprocess.STDOUT
        )


def old_tree(args: argparse.Namespace, tmp_root: Path) -> tuple[Path | None, str, Path | None]:
    """(src dir of the old tree, its label, a temp dir to remove at the end)."""
    if args.old_src:
        d = Path(args.old_src).resolve()
        for cand in (d, d / "src"):
            if (cand / "jointcloud" / "cli" / "main.py").is_file():
                return cand, f"--old-src {cand}", None
        raise SystemExit(f"--old-src {d}: no jointcloud/cli/main.py in it or in its src/")
    if args.old_rev:
        repo = Path(args.repo).resolve()
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", f"{args.old_rev}^{{commit}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        tmp = Path(tempfile.mkdtemp(prefix="jcs-bench-old-", dir=tmp_root))
        archive = subprocess.Popen(
            ["git", "-C", str(repo), "archive", sha, "src"], stdout=subprocess.PIPE
        )
        try:
            subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout, check=True)
        finally:
            assert archive.stdout
            archive.stdout.close()
            archive.wait()
        if archive.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SystemExit(f"git archive {sha} src failed")
        return tmp / "src", f"{args.old_rev} ({sha[:10]})", tmp
    return None, "", None


# --- the measurements -----------------------------------------------------


class Data:
    """Bodies prepared before any timing: distinct random content everywhere."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.n_small, self.n_mib = args.small_count, args.mib_count
        blob = os.urandom(SMALL * self.n_small)
        self.small = [blob[i * SMALL : (i + 1) * SMALL] for i in range(self.n_small)]
        self.mib = work / "mib.bin"
        with self.mib.open("wb") as f:
            for _ in range(self.n_mib):
                f.write(os.urandom(MiB))
        self.mib_fd = os.open(self.mib, os.O_RDONLY)

    def small_body(self, package_id: int, i: int) -> bytes:
        pre, post = multipart_parts(json.dumps({"packageID": package_id}), f"s/{i:05d}")
        return pre + self.small[i] + post

    def mib_bytes(self, i: int) -> bytes:
        return os.pread(self.mib_fd, MiB, i * MiB)

    def close(self) -> None:
        os.close(self.mib_fd)


async def within(aw: Awaitable[Any], args: argparse.Namespace, what: str) -> Any:
    try:
        return await asyncio.wait_for(aw, args.phase_timeout)
    except TimeoutError:
        raise RuntimeError(f"{what}: no end after {args.phase_timeout} s") from None


async def measure_bare(data: Data, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = free_port()
    log = work / "bare.log"
    with log.open("wb") as f:
        bare = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "bare_asgi.py"), str(port)],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/?n=0", bare)
        meter = Meter(bare.pid)
        res: dict[str, Any] = {}
        bodies = [data.small_body(1, i) for i in range(data.n_small)]
        hdrs = {"Content-Type": FORM}
        pre, post = multipart_parts("{}", "mib.bin")
        expect_small = str(len(bodies[0])).encode()
        expect_mib = str(len(pre) + MiB + len(post)).encode()

        async def small_up(conn: Conn, i: int) -> None:
            r = await conn.request("POST", "/", hdrs, bodies[i % len(bodies)], keep_body=True)
            assert r.status == 200 and r.body == expect_small, (r.status, r.body)

        async def small_down(conn: Conn, i: int) -> None:
            r = await conn.request("GET", f"/?n={SMALL}")
            assert r.status == 200 and r.size == SMALL, (r.status, r.size)

        async def mib_up(conn: Conn, i: int) -> None:
            r = await conn.request(
                "POST",
                "/",
                hdrs,
                pre,
                body_file=(data.mib_fd, i % data.n_mib * MiB, MiB),
                tail=post,
                keep_body=True,
            )
            assert r.status == 200 and r.body == expect_mib, (r.status, r.body)

        async def mib_down(conn: Conn, i: int) -> None:
            r = await conn.request("GET", f"/?n={MiB}")
            assert r.status == 200 and r.size == MiB, (r.status, r.size)

        # At least BARE_MIN_SMALL / BARE_MIN_MIB requests (bodies reused in
        # turn): the ceiling is fast, and a phase of a tenth of a second is noise.
        n_small = max(data.n_small, BARE_MIN_SMALL)
        n_mib = max(data.n_mib, BARE_MIN_MIB)
        for name, fn, n, conns, unit in (
            ("small_up", small_up, n_small, 16, "req/s"),
            ("small_down", small_down, n_small, 16, "req/s"),
            ("mib_up", mib_up, n_mib, 4, "MiB/s"),
            ("mib_down", mib_down, n_mib, 4, "MiB/s"),
        ):
            while True:
                with meter.phase() as ph:
                    await within(many(n, conns, Job(port, fn)), args, f"bare {name}")
                if ph.wall >= BARE_MIN_SECONDS or args.quick:
                    break
                n = int(n * 1.2 * BARE_MIN_SECONDS / ph.wall) + 1
            res[name] = figure(n / ph.wall, unit, ph, count=n)
            print(f"  bare {name}: {n / ph.wall:.0f} {unit}", flush=True)
        return res
    finally:
        stop_proc(bare)


async def object_phases(
    name: str,
    port: int,
    auth: dict[str, str],
    package: Callable[[str], int],
    data: Data,
    args: argparse.Namespace,
    meter: Meter,
    res: dict[str, Any],
) -> AsyncIterator[None]:
    """4 KiB objects (16 clients), then 1 MiB objects (4 clients), each
    uploaded into a package of their own (``package``), then downloaded and
    checked; figures into ``res``, a pause (``yield``) after each group.
    Any server that speaks these two v1 routes can be measured with it."""
    up_hdrs = {**auth, "Content-Type": FORM}

    # 4 KiB objects, 16 clients
    pkg = package("small")
    bodies = [data.small_body(pkg, i) for i in range(data.n_small)]
    sids = [0] * data.n_small

    async def small_up(conn: Conn, i: int) -> None:
        r = await conn.request("POST", "/v1/object/upload", up_hdrs, bodies[i], keep_body=True)
        assert r.status == 200, (r.status, r.body[:300])
        ups = json.loads(r.body)["data"]["uploadeds"]
        assert len(ups) == 1 and ups[0]["path"] == f"s/{i:05d}", ups
        sids[i] = ups[0]["objectID"]

    async def small_down(conn: Conn, i: int) -> None:
        r = await conn.request(
            "GET", f"/v1/object/download?objectID={sids[i]}", auth, keep_body=True
        )
        assert r.status == 200 and r.size == SMALL, (r.status, r.size, r.body[:300])
        assert r.body == data.small[i], f"object {sids[i]}: other bytes read back"

    n = data.n_small
    with meter.phase() as ph:
        await within(many(n, 16, Job(port, small_up)), args, "4 KiB uploads")
    res["small_up"] = figure(n / ph.wall, "obj/s", ph, count=n)
    assert len(set(sids)) == n, "object IDs not distinct"
    with meter.phase() as ph:
        await within(many(n, 16, Job(port, small_down)), args, "4 KiB downloads")
    res["small_down"] = figure(n / ph.wall, "obj/s", ph, count=n, bytes_checked=n)
    print(
        f"  {name}: 4 KiB up {res['small_up']['value']:.0f}/s, "
        f"down {res['small_down']['value']:.0f}/s",
        flush=True,
    )
    yield

    # 1 MiB objects, 4 clients
    pkg = package("mib")
    mids = [0] * data.n_mib
    checked = set(range(0, data.n_mib, max(1, data.n_mib // 8)))

    async def mib_up(conn: Conn, i: int) -> None:
        pre, post = multipart_parts(json.dumps({"packageID": pkg}), f"m/{i:04d}")
        r = await conn.request(
            "POST",
            "/v1/object/upload",
            up_hdrs,
            pre,
            body_file=(data.mib_fd, i * MiB, MiB),
            tail=post,
            keep_body=True,
        )
        assert r.status == 200, (r.status, r.body[:300])
        ups = json.loads(r.body)["data"]["uploadeds"]
        assert len(ups) == 1 and ups[0]["path"] == f"m/{i:04d}", ups
        mids[i] = ups[0]["objectID"]

    async def mib_down(conn: Conn, i: int) -> None:
        keep = i in checked
        r = await conn.request(
            "GET", f"/v1/object/download?objectID={mids[i]}", auth, keep_body=keep
        )
        assert r.status == 200 and r.size == MiB, (r.status, r.size)
        if keep:
            assert r.body == data.mib_bytes(i), f"object {mids[i]}: other bytes read back"

    n = data.n_mib
    with meter.phase() as ph:
        await within(many(n, 4, Job(port, mib_up)), args, "1 MiB uploads")
    res["mib_up"] = figure(n / ph.wall, "MiB/s", ph, count=n)
    with meter.phase() as ph:
        await within(many(n, 4, Job(port, mib_down)), args, "1 MiB downloads")
    res["mib_down"] = figure(n / ph.wall, "MiB/s", ph, count=n, bytes_checked=len(checked))
    print(
        f"  {name}: 1 MiB up {res['mib_up']['value']:.0f} MiB/s, "
        f"down {res['mib_down']['value']:.0f} MiB/s",
        flush=True,
    )
    yield


async def measure_jcs(
    name: str,
    src: Path,
    db_url: str | None,
    db_pid: int | None,
    data: Data,
    args: argparse.Namespace,
    work: Path,
    res: dict[str, Any],
) -> AsyncIterator[None]:
    """The phases against one variant, its figures into ``res``; it pauses
    (``yield``) after each group of phases so that the variants take turns
    (``run``): a machine that slows down or speeds up during the run then
    weighs on every variant alike, not on whichever ran last."""
    vdir = work / name
    vdir.mkdir()
    port = free_port()
    log = vdir / "server.log"
    workers = {"new-pgw": args.pg_workers, "new-sqlitew": args.sqlite_workers}.get(name, 1)
    server = start_jcs(src, work, vdir / "data", port, db_url, log, workers)
    try:
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", server)
            wait_listening(server.pid, port, workers)
        except RuntimeError as e:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{e}; server log ends:\n{tail}") from None
        key = (vdir / "data" / "root.key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}
        up_hdrs = {**auth, "Content-Type": FORM}
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=600)
        meter = Meter(server.pid, db_pid)
        rnd = random.Random(7)

        def ok(r: httpx.Response) -> Any:
            assert r.status_code == 200, (r.status_code, r.text[:300])
            return r.json()["data"]

        bucket = ok(api.post("/v1/bucket/create", json={"name": "bench"}))["bucket"]["bucketID"]

        def package(pname: str) -> int:
            body = {"bucketID": bucket, "name": pname}
            return int(ok(api.post("/v1/package/create", json=body))["package"]["packageID"])

        async for _ in object_phases(name, port, auth, package, data, args, meter, res):
            yield

        # one upload of many files
        async def batch(pkg: int, prefix: str) -> tuple[Phase, list[dict[str, Any]]]:
            nf = args.multi_files
            files = [(f"{prefix}f{i:04d}", os.urandom(SMALL)) for i in range(nf)]
            body = form_body(pkg, files)
            conn = Conn("127.0.0.1", port)
            try:
                with meter.phase() as ph:
                    r = await within(
                        conn.request("POST", "/v1/object/upload", up_hdrs, body, keep_body=True),
                        args,
                        "batch upload",
                    )
            finally:
                conn.close()
            assert r.status == 200, (r.status, r.body[:300])
            ups = json.loads(r.body)["data"]["uploadeds"]
            assert len(ups) == nf, f"{len(ups)} objects answered, not {nf}"
            assert [u["path"] for u in ups] == [p for p, _ in files], "paths answered differ"
            for i in rnd.sample(range(nf), min(5, nf)):
                got = api.get("/v1/object/download", params={"objectID": ups[i]["objectID"]})
                assert got.status_code == 200 and got.content == files[i][1], (i, got.status_code)
            return ph, ups

        pkg = package("multi")
        phases, times = [], []
        for r in range(args.rounds):
            ph, _ = await batch(pkg, f"r{r}/")
            phases.append(ph)
            times.append(ph.wall)
        total = sum(phases, Phase())
        res["multi"] = figure(
            statistics.median(times), "s", total, rounds=[round(t, 4) for t in times]
        )
        print(f"  {name}: {args.multi_files} files in one upload: {times} s", flush=True)
        yield

        def put_files(pkg: int, files: list[tuple[str, bytes]]) -> None:
            """``files`` into ``pkg``, 1,000 to an upload (untimed set-up)."""
            for start in range(0, len(files), 1000):
                part = files[start : start + 1000]
                r = httpx.post(
                    f"http://127.0.0.1:{port}/v1/object/upload",
                    headers=up_hdrs,
                    content=form_body(pkg, part),
                    timeout=600,
                )
                assert r.status_code == 200 and len(r.json()["data"]["uploadeds"]) == len(part)

        # listing a package of exactly 1,000 objects
        pkg = package("list")
        nl = args.list_objects
        files = [(f"d/f{i:04d}", os.urandom(64)) for i in range(nl)]
        put_files(pkg, files)
        target = f"/v1/object/listByPath?packageID={pkg}&path=d/&isPrefix=true&maxKeys={nl}"
        first = ok(api.get(target))
        assert [o["path"] for o in first["objects"]] == [p for p, _ in files], "listing differs"

        async def listings(target: str, check: Callable[[bytes], None]) -> tuple[int, Phase]:
            """4 clients listing ``target`` for --list-seconds: how many, the phase."""
            listed = 0

            async def lister(deadline: float) -> None:
                nonlocal listed
                conn = Conn("127.0.0.1", port)
                try:
                    while time.perf_counter() < deadline:
                        r = await conn.request("GET", target, auth, keep_body=True)
                        assert r.status == 200, (r.status, r.body[:300])
                        check(r.body)
                        listed += 1
                finally:
                    conn.close()

            with meter.phase() as ph:
                end = time.perf_counter() + args.list_seconds
                await within(asyncio.gather(*(lister(end) for _ in range(4))), args, "listing")
            return listed, ph

        def all_objects(body: bytes) -> None:
            got = body.count(b'"objectID"')
            assert got == nl, f"a listing held {got} objects, not {nl}"

        listed, ph = await listings(target, all_objects)
        res["list"] = figure(listed / ph.wall, "lists/s", ph, count=listed, objects=nl)
        print(f"  {name}: listing {nl} objects: {res['list']['value']:.0f}/s", flush=True)
        yield

        # listing 1,000 folders of 3 objects each, one level (a delimiter):
        # each folder is one common prefix, the objects under it are passed
        pkg = package("folders")
        tree = [(f"f{i:04d}/{j}", b"x") for i in range(1000) for j in range(3)]
        put_files(pkg, tree)
        target = (
            f"/v1/object/listByPath?packageID={pkg}&path=&isPrefix=true"
            "&noRecursive=true&maxKeys=1000"
        )
        first = ok(api.get(target))
        assert first["commonPrefixes"] == [f"f{i:04d}/" for i in range(1000)], "folders differ"

        def all_folders(body: bytes) -> None:
            got = json.loads(body)["data"]["commonPrefixes"]
            assert len(got) == 1000, f"a listing held {len(got)} folders, not 1000"

        listed, ph = await listings(target, all_folders)
        res["list_folders"] = figure(listed / ph.wall, "lists/s", ph, count=listed)
        print(f"  {name}: listing 1,000 folders: {res['list_folders']['value']:.1f}/s", flush=True)
        api.close()
    finally:
        stop_proc(server)


async def take_turns(
    runs: dict[str, AsyncIterator[None]], ended: Callable[[str, Exception | None], None]
) -> None:
    """Every run one group of phases at a time (to its next ``yield``), in
    turns, the order reversed at each turn, until each has ended (``ended``:
    its name, and what it failed with, if it did)."""
    turn = 0
    while runs:
        for v in list(runs) if turn % 2 == 0 else list(reversed(runs)):
            error: Exception | None = None
            try:
                await anext(runs[v])
                continue
            except StopAsyncIteration:
                pass
            except Exception as e:
                traceback.print_exc()
                error = e
            del runs[v]
            ended(v, error)
        turn += 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp_root = Path(args.tmp) if args.tmp else None
    work = Path(tempfile.mkdtemp(prefix="jcs-bench-smallobj-", dir=tmp_root))
    out: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "loadavg_at_start": os.getloadavg(),
        "args": vars(args),
        "variants": {},
    }
    pg: Any = None
    old_tmp: Path | None = None
    data: Data | None = None
    try:
        old_src, old_label, old_tmp = old_tree(args, tmp_root or Path(tempfile.gettempdir()))
        wanted = args.variants.split(",") if args.variants else list(ALL_VARIANTS)
        for v in wanted:
            if v not in ALL_VARIANTS:
                raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(ALL_VARIANTS)}")
        if old_src is None:
            if args.variants and any(v.startswith("old-") for v in wanted):
                raise SystemExit("old-* variants need --old-src or --old-rev")
            wanted = [v for v in wanted if not v.startswith("old-")]
        if args.pg_workers < 2:
            wanted = [v for v in wanted if v != "new-pgw"]
        if args.sqlite_workers < 2:
            wanted = [v for v in wanted if v != "new-sqlitew"]
        if args.no_postgres:
            wanted = [v for v in wanted if not v.endswith(("-pg", "-pgw"))]
        srcs = {"new": ROOT / "src", "old": old_src}
        labels = {"new": f"this tree ({ROOT / 'src'})", "old": f"old tree {old_label}"}
        out["trees"] = {k: str(v) for k, v in srcs.items() if v}
        out["old"] = old_label
        print(
            f"{out['machine']}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"variants: {', '.join(wanted)}; work dir {work}",
            flush=True,
        )
        if any(v.endswith(("-pg", "-pgw")) for v in wanted):
            pg_mod = load_pg_support()
            pg = pg_mod.PostgresServer(durable=True)  # commits synced, as in production
            pg.start()
            print(f"PostgreSQL {pg.bindir} on 127.0.0.1:{pg.port}", flush=True)
        data = Data(work, args)
        print("bare ASGI ceiling ...", flush=True)
        out["bare"] = await measure_bare(data, args, work)
        # Every variant's phases, taking turns group by group (the order
        # reversed at each turn): within a run this machine drifted by as
        # much as a fifth, which variants run one after the other took for
        # a difference between trees (docs/benchmarks.md, 2026-12-07).
        runs: dict[str, AsyncIterator[None]] = {}
        db_urls: dict[str, str | None] = {}
        for v in wanted:
            tree, kind = v.split("-")
            db = {"pgw": "pg", "sqlitew": "sqlite"}.get(kind, kind)
            src = srcs[tree]
            assert src is not None
            db_url = pg.new_database() if db == "pg" else None
            db_pid = postmaster_pid(pg) if db == "pg" else None
            desc = f"{labels[tree]}, {'PostgreSQL' if db == 'pg' else 'SQLite'}"
            if kind in ("pgw", "sqlitew"):
                desc += f", --workers {args.pg_workers if kind == 'pgw' else args.sqlite_workers}"
            print(f"{v}: {desc}", flush=True)
            entry: dict[str, Any] = {"label": desc, "src": str(src), "db": db, "figures": {}}
            out["variants"][v] = entry
            runs[v] = measure_jcs(v, src, db_url, db_pid, data, args, work, entry["figures"])
            db_urls[v] = db_url

        def ended(v: str, error: Exception | None) -> None:
            if error is not None:
                entry = out["variants"][v]
                entry["error"] = f"{type(error).__name__}: {error}"
                print(f"  {v} FAILED: {entry['error']}", flush=True)
            if db_urls[v]:
                with contextlib.suppress(Exception):
                    pg.drop_database(db_urls[v])

        await take_turns(runs, ended)
        out["loadavg_at_end"] = os.getloadavg()
    finally:
        if data is not None:
            data.close()
        if pg is not None:
            pg.stop()
        if old_tmp is not None:
            shutil.rmtree(old_tmp, ignore_errors=True)
        if args.keep_work:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return out


# --- the report -----------------------------------------------------------


def verdict(key: str, value: float, bare: dict[str, Any]) -> tuple[float | None, bool]:
    kind, want, _ = TARGETS[key]
    if kind == "ratio":
        ratio = value / bare[FIGURES[key][2]]["value"]
        return ratio, ratio >= want
    if kind == "below":
        return None, value < want
    if kind == "none":
        return None, True
    return None, value >= want


def cores_cols(f: dict[str, Any], with_db: bool) -> str:
    db = f"{f['db_cores']:>6.2f}" if with_db else f"{'-':>6}"
    return (
        f"{f['client_cores']:>7.2f}{f['server_cores']:>7.2f}{db}"
        f"{f['other_cores']:>7.2f}{f['wall_s']:>7.2f}"
    )


def fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.0f}"


def report(r: dict[str, Any]) -> bool:
    """Prints the tables; True when every target of every new-tree variant passed."""
    bare = r["bare"]
    cpu_head = f"{'client':>7}{'server':>7}{'db':>6}{'other':>7}{'wall s':>7}"
    print(f"\n{r['machine']}; CPU columns are cores (CPU seconds / wall seconds) over the phase")
    print(
        "\n== bare ASGI ceiling (bench/bare_asgi.py: uvicorn + httptools + uvloop)\n"
        f"  {'figure':<32}{'value':>9} {'unit':<8}{'':<30}{cpu_head}"
    )
    for key, (label, unit) in BARE.items():
        f = bare[key]
        print(f"  {label:<32}{fmt(f['value']):>9} {unit:<8}{'':<30}{cores_cols(f, False)}")
    all_pass = True
    max_client = max(f["client_cores"] for f in bare.values())
    for v, entry in r["variants"].items():
        print(f"\n== {v}: {entry['label']}")
        if "error" in entry:
            print(f"  FAILED: {entry['error']}")
            if v.startswith("new-"):
                all_pass = False
            continue
        print(f"  {'figure':<32}{'value':>9} {'unit':<8}{'vs bare':>8}  {'target':<20}{cpu_head}")
        for key, (label, unit, _) in FIGURES.items():
            f = entry["figures"][key]
            ratio, passed = verdict(key, f["value"], bare)
            mark = ""
            if v.startswith("new-"):
                mark = "PASS" if passed else "MISS"
                all_pass &= passed
            rtxt = "-" if ratio is None else f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.3f}"
            tgt = f"{TARGETS[key][2]} {mark}".strip()
            print(
                f"  {label:<32}{fmt(f['value']):>9} {unit:<8}{rtxt:>8}  {tgt:<20}"
                f"{cores_cols(f, entry['db'] == 'pg')}"
            )
            max_client = max(max_client, f["client_cores"])
    ok = {v: e["figures"] for v, e in r["variants"].items() if "error" not in e}
    print("\n== summary (new/old: speed ratio, > 1 is faster; for seconds, old s / new s)")
    cols = list(ok)
    pairs = [db for db in ("sqlite", "pg") if f"new-{db}" in ok and f"old-{db}" in ok]
    head = f"  {'figure':<32}{'bare':>9}" + "".join(f"{c:>12}" for c in cols)
    head += "".join(f"{'new/old ' + db:>15}" for db in pairs)
    print(head)
    for key, (label, unit, bkey) in FIGURES.items():
        line = f"  {label:<32}{fmt(bare[bkey]['value']) if bkey else '-':>9}"
        line += "".join(f"{fmt(ok[c][key]['value']):>12}" for c in cols)
        for db in pairs:
            new, old = ok[f"new-{db}"][key]["value"], ok[f"old-{db}"][key]["value"]
            speed = old / new if unit == "s" else new / old
            line += f"{speed:>15.2f}"
        print(line)
    print(
        f"\nclient CPU at most {max_client:.2f} cores in any phase (of {os.cpu_count()}); "
        f"load average {' '.join(f'{x:.2f}' for x in r['loadavg_at_start'])} at start, "
        f"{' '.join(f'{x:.2f}' for x in r.get('loadavg_at_end', ()))} at end"
    )
    news = [v for v in r["variants"] if v.startswith("new-")]
    if news:
        print(f"targets for this tree ({', '.join(news)}): {'all PASS' if all_pass else 'MISS'}")
    return all_pass


def stop_on_sigterm() -> None:
    """SIGTERM ends the bench through its ``finally`` blocks, so that they
    stop every process it started."""

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-src", default=None, help="an older checkout (or its src/) to compare")
    ap.add_argument("--old-rev", default=None, help="a git revision of --repo to compare")
    ap.add_argument("--repo", default=str(ROOT), help="repository for --old-rev")
    ap.add_argument(
        "--variants", default=None, help=f"comma separated of {','.join(ALL_VARIANTS)} (all)"
    )
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL variants")
    ap.add_argument(
        "--pg-workers",
        type=int,
        default=1,
        help="N > 1 adds new-pgw: this tree on PostgreSQL with jcs serve --workers N",
    )
    ap.add_argument(
        "--sqlite-workers",
        type=int,
        default=1,
        help="N > 1 adds new-sqlitew: this tree on SQLite with jcs serve --workers N",
    )
    ap.add_argument("--quick", action="store_true", help="smaller counts: a smoke run")
    ap.add_argument("--small-count", type=int, default=None, help="4 KiB objects (2000)")
    ap.add_argument("--mib-count", type=int, default=None, help="1 MiB objects (200)")
    ap.add_argument("--multi-files", type=int, default=1000, help="files in the one upload")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of the one upload (3)")
    ap.add_argument("--list-objects", type=int, default=1000, help="objects listed (1-1000)")
    ap.add_argument("--list-seconds", type=float, default=None, help="listing phase (3)")
    ap.add_argument("--phase-timeout", type=float, default=300, help="seconds per phase at most")
    ap.add_argument("--tmp", default=None, help="parent of the work dir")
    ap.add_argument("--keep-work", action="store_true", help="keep the work dir (server logs)")
    ap.add_argument("--json", default=None, help="also write every figure here")
    args = ap.parse_args()
    quick = {"small_count": 300, "mib_count": 40, "rounds": 1, "list_seconds": 1.0}
    full = {"small_count": 2000, "mib_count": 200, "rounds": 3, "list_seconds": 3.0}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not 1 <= args.list_objects <= 1000:
        ap.error("--list-objects: 1 to 1000 (one page of listByPath)")
    if args.old_src and args.old_rev:
        ap.error("--old-src or --old-rev, not both")
    stop_on_sigterm()
    results = asyncio.run(run(args))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    # A MISS is a result; a variant that could not be measured is a failure.
    sys.exit(1 if any("error" in e for e in results["variants"].values()) else 0)


if __name__ == "__main__":
    main()
