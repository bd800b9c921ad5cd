"""Sync tasks against rclone and a plain copy, on the same trees, in one run:

    .venv/bin/python bench/sync.py [--files 2000] [--big-mib 1024] [--diff-files 10000]
                                   [--repeat 1] [--plain-s3 awscli|boto3] [--json PATH]

Quick run: ``--files 200 --big-mib 64 --diff-files 1000``.

Transfer workloads, local->local and local->S3 (a moto server on loopback):
a tree of ``--files`` files of 1 KiB-8 MiB (log-uniform sizes, fixed seed,
nested directories) plus one ``--big-mib`` file, copied by

- ours: a real ``jcs serve`` (own data dir, background jobs other than sync
  parked); a Local space over the source, a Local and an S3 destination space;
  ``POST /v1/spaceSync/createTask`` (trigger once, mode full), then
  ``GET /v1/spaceSync/getTask`` every 0.05 s until succeeded/failed; timed from
  the create call to the final state;
- ``rclone copy`` with default flags (4 transfers) and with ``--transfers 8``
  (remotes from ``RCLONE_CONFIG_*`` env vars, an empty config file);
- a plain copy: ``cp -r`` locally; ``aws s3 cp --recursive`` (AWS CLI, default
  settings: 10 concurrent requests) or, with ``--plain-s3 boto3``, boto3's
  ``upload_file`` in 8 threads, to S3.

Diff workload (local->local): ``--diff-files`` files of 1-64 KiB; a first full
task, then a second task with mode diff over the unchanged tree (ratio
diff/full, target < 0.10); the same for ``rclone copy`` (first, then again).

Method: page cache cannot be dropped, so the whole source tree is read once
before any timed run (every tool starts warm) and the order of the tools is
rotated between workloads and repeats (``--repeat N`` reports the median).
Every timed run ends with ``sync(2)`` (so a tool that leaves dirty pages is not
favoured over one that flushes), starts after one, and the destination is
emptied between tools. After every run the destination must hold exactly the
source's paths with the same sizes (and three sampled files with the same
SHA-256), else the benchmark stops. When the sync-task endpoints fail (e.g.
not implemented yet) the other tools still run, the reason is printed and the
exit status is 2.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.s3server import S3Server  # noqa: E402

JCS = str(ROOT / ".venv/bin/jcs")
KiB, MiB = 1 << 10, 1 << 20
PARKED = {
    f"JCS_{name}_INTERVAL_SECONDS": "1000000"
    for name in ("GC", "HEALTH", "REPAIR", "SCRUB", "DRAIN", "RECODE")
}
POLL = 0.05
SEED = 20250624
Tree = dict[str, int]  # relative path -> size


class BenchError(RuntimeError):
    """A result that must not be reported (wrong destination, tool failed)."""


class JcsUnavailable(RuntimeError):
    """The sync-task part cannot run (endpoint missing or failing, task failed)."""


# ---------------------------------------------------------------- trees


def make_tree(root: Path, n: int, lo: int, hi: int, big: int, seed: int) -> Tree:
    """n files with log-uniform sizes in [lo, hi] in nested directories (fixed
    seed for sizes and layout), plus one file of ``big`` bytes when big > 0.
    Every file starts with its own path, so no two are identical."""
    rng = random.Random(seed)
    pool = os.urandom(hi + 4 * MiB)
    tree: Tree = {}
    for i in range(n):
        size = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        depth = rng.randint(0, 3)
        parts = [f"d{rng.randint(0, 9)}" for _ in range(depth)]
        rel = "/".join([*parts, f"f{i:05d}.bin"])
        head = rel.encode()[:size]
        off = rng.randint(0, len(pool) - size)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.write(head)
            f.write(memoryview(pool)[off : off + size - len(head)])
        tree[rel] = size
    if big:
        rel = "big/huge.bin"
        (root / "big").mkdir(exist_ok=True)
        with (root / rel).open("wb") as f:
            left = big
            while left:
                chunk = os.urandom(min(8 * MiB, left))
                f.write(chunk)
                left -= len(chunk)
        tree[rel] = big
    return tree


def read_all(root: Path) -> None:
    """Bring the tree into the page cache."""
    for p in root.rglob("*"):
        if p.is_file():
            with p.open("rb") as f:
                while f.read(8 * MiB):
                    pass


def local_tree(root: Path) -> Tree:
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()
    }


def sha(data_or_path: bytes | Path) -> str:
    if isinstance(data_or_path, Path):
        data_or_path = data_or_path.read_bytes()
    return hashlib.sha256(data_or_path).hexdigest()


def samples(tree: Tree) -> list[str]:
    """Three files to compare by content: the smallest, a median one, and the
    largest of at most 8 MiB."""
    by_size = sorted((s, p) for p, s in tree.items() if s <= 8 * MiB)
    return sorted({by_size[0][1], by_size[len(by_size) // 2][1], by_size[-1][1]})


def check(name: str, src: Path, want: Tree, got: Tree, fetch: Callable[[str], bytes]) -> None:
    """Fail loudly unless the destination holds exactly the source's files."""
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        wrong = sorted(p for p in set(want) & set(got) if want[p] != got[p])
        raise BenchError(
            f"{name}: destination differs from source: {len(got)} files / "
            f"{sum(got.values())} B, want {len(want)} / {sum(want.values())} B; "
            f"missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)}), "
            f"wrong size {wrong[:5]} ({len(wrong)})"
        )
    for rel in samples(want):
        if sha(fetch(rel)) != sha(src / rel):
            raise BenchError(f"{name}: content of {rel} differs from the source")


def run_cmd(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise BenchError(
            f"{name}: {' '.join(argv)} exited {proc.returncode}\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


# ---------------------------------------------------------------- destinations


class LocalDest:
    kind = "local"

    def __init__(self, root: Path, rel: str) -> None:
        self.space_root = root  # storage.path of the JCS destination space
        self.rel = rel
        self.dir = root / rel

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        os.sync()

    def tree(self) -> Tree:
        return local_tree(self.dir)

    def fetch(self, rel: str) -> bytes:
        return (self.dir / rel).read_bytes()


class S3Dest:
    kind = "s3"

    def __init__(self, s3: S3Server, rel: str) -> None:
        self.s3 = s3
        self.rel = rel
        self.client = s3.client()

    def _keys(self) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.s3.bucket, Prefix=self.rel + "/"
        )
        for page in pages:
            yield from page.get("Contents", [])

    def clear(self) -> None:
        keys = [{"Key": o["Key"]} for o in self._keys()]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.s3.bucket, Delete={"Objects": keys[i : i + 1000], "Quiet": True}
            )
        os.sync()

    def tree(self) -> Tree:
        n = len(self.rel) + 1
        # Directory markers (keys ending in "/") are not files.
        return {o["Key"][n:]: int(o["Size"]) for o in self._keys() if not o["Key"].endswith("/")}

    def fetch(self, rel: str) -> bytes:
        obj = self.client.get_object(Bucket=self.s3.bucket, Key=f"{self.rel}/{rel}")
        return bytes(obj["Body"].read())


Dest = LocalDest | S3Dest


# ---------------------------------------------------------------- tools


class Rclone:
    def __init__(self, work: Path, s3: S3Server | None, transfers: int | None) -> None:
        self.transfers = transfers
        self.name = "rclone" if transfers is None else f"rclone --transfers {transfers}"
        conf = work / "rclone.conf"
        conf.touch()
        # Without AWS_* from the caller: rclone's S3 SDK refuses an AWS_CA_BUNDLE
        # with its own HTTP transport ("LoadCustomCABundleError"); moto is plain HTTP.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update({"RCLONE_CONFIG": str(conf), "RCLONE_CONFIG_LOC_TYPE": "local"})
        if s3 is not None:
            self.env.update(
                {
                    "RCLONE_CONFIG_MOTO_TYPE": "s3",
                    "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
                    "RCLONE_CONFIG_MOTO_ENV_AUTH": "false",
                    "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": s3.access_key,
                    "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": s3.secret_key,
                    "RCLONE_CONFIG_MOTO_REGION": s3.region,
                    "RCLONE_CONFIG_MOTO_ENDPOINT": s3.endpoint,
                    "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
                }
            )

    def run(self, src: Path, dest: Dest) -> None:
        if isinstance(dest, LocalDest):
            target = f"loc:{dest.dir}"
        else:
            target = f"moto:{dest.s3.bucket}/{dest.rel}"
        argv = ["rclone", "copy", f"loc:{src}", target]
        if self.transfers is not None:
            argv += ["--transfers", str(self.transfers)]
        run_cmd(self.name, argv, self.env)


class PlainCopy:
    def __init__(self, work: Path, s3: S3Server | None, plain_s3: str) -> None:
        self.plain_s3 = plain_s3
        self.s3 = s3
        cfg = work / "aws.config"
        cfg.write_text("[default]\ns3 =\n    addressing_style = path\n")
        self.env = dict(os.environ)
        if s3 is not None:
            self.env.update(
                {
                    "AWS_CONFIG_FILE": str(cfg),
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                    "AWS_ACCESS_KEY_ID": s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                    "AWS_DEFAULT_REGION": s3.region,
                }
            )
        self.aws = shutil.which("aws") or "/root/.pyenv/shims/aws"

    def name_for(self, kind: str) -> str:
        if kind == "local":
            return "cp -r"
        return "aws s3 cp --recursive" if self.plain_s3 == "awscli" else "boto3 upload_file x8"

    def run(self, src: Path, dest: Dest) -> None:
        if isinstance(dest, LocalDest):
            dest.dir.parent.mkdir(parents=True, exist_ok=True)
            run_cmd("cp", ["cp", "-r", str(src), str(dest.dir)])
        elif self.plain_s3 == "awscli":
            argv = [self.aws, "s3", "cp", "--recursive", "--only-show-errors"]
            argv += [
                "--endpoint-url",
                dest.s3.endpoint,
                str(src),
                f"s3://{dest.s3.bucket}/{dest.rel}/",
            ]
            run_cmd("aws s3 cp", argv, self.env)
        else:
            client = dest.s3.client()
            files = [p for p in src.rglob("*") if p.is_file()]

            def put(p: Path) -> None:
                key = f"{dest.rel}/{p.relative_to(src).as_posix()}"
                client.upload_file(str(p), dest.s3.bucket, key)

            with ThreadPoolExecutor(8) as ex:
                list(ex.map(put, files))


def parse_time(v: Any) -> float | None:
    """RFC 3339 (any number of fraction digits) -> epoch seconds."""
    if not isinstance(v, str) or not v:
        return None
    v = re.sub(r"(\.\d{6})\d+", r"\1", v.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(v).timestamp()
    except ValueError:
        return None


class Jcs:
    """A ``jcs serve`` process with a source space and destination spaces."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.data = work / "jcs-data"
        self.log = work / "jcs-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api: httpx.Client | None = None
        self.spaces: dict[str, int] = {}
        self.error: str | None = None
        self.profile_dir: Path | None = None

    def start(self) -> None:
        with socket_port() as port:
            pass
        env = {k: v for k, v in os.environ.items() if not k.startswith("JCS_")}
        env.update(PARKED)
        # Its trees live in the work dir and its S3 server on loopback: both
        # allowed explicitly, as an operator would (docs/security.md).
        env.update(JCS_LOCAL_ROOTS=str(self.work), JCS_ENDPOINT_ALLOW="127.0.0.1")
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [
                    JCS,
                    "serve",
                    "--s3-listen",
                    "off",
                    "--data-dir",
                    str(self.data),
                    "--listen",
                    f"127.0.0.1:{port}",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise JcsUnavailable(
                    f"jcs serve exited with {self.proc.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise JcsUnavailable(f"jcs serve did not become healthy:\n{self.tail()}")
            time.sleep(0.05)
        key = (self.data / "root.key").read_text().strip()
        self.api = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        assert self.api is not None
        try:
            r = self.api.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise JcsUnavailable(f"{method} {path}: {e!r}\n{self.tail()}") from e
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code != 200 or not isinstance(body, dict) or body.get("code") != "OK":
            raise JcsUnavailable(f"{method} {path} -> HTTP {r.status_code}: {r.text[:500]}")
        return body["data"]

    def add_space(self, name: str, storage: dict[str, Any], cred: dict[str, Any] | None) -> int:
        body: dict[str, Any] = {"name": f"syncbench-{name}", "storage": storage}
        if cred is not None:
            body["credential"] = cred
        sid = int(self.call("POST", "/v1/userSpace/create", json=body)["userSpace"]["userSpaceID"])
        self.spaces[name] = sid
        return sid

    def sync(
        self, src: str, dest_space: str, dest_path: str, mode: str, label: str
    ) -> dict[str, Any]:
        """Create a once task and follow it to its end; returns timings and the task."""
        body = {
            "srcUserSpaceID": self.spaces["src"],
            "srcPath": src,
            "dests": [{"userSpaceID": self.spaces[dest_space], "path": dest_path}],
            "mode": mode,
            "trigger": {"type": "once"},
        }
        spy = self._profile(label)
        try:
            t0 = time.perf_counter()
            task = self.call("POST", "/v1/spaceSync/createTask", json=body)["task"]
            tid = task["taskID"]
            while task.get("state") not in ("succeeded", "failed", "cancelled"):
                time.sleep(POLL)
                if self.proc is not None and self.proc.poll() is not None:
                    raise BenchError(f"jcs serve died during the task:\n{self.tail()}")
                task = self.call("GET", "/v1/spaceSync/getTask", params={"taskID": tid})["task"]
            dt = time.perf_counter() - t0
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(60)
        if task["state"] != "succeeded":
            raise JcsUnavailable(
                f"sync task {tid} ended {task['state']}: {task.get('lastError')!r}, "
                f"failures {task.get('failures', [])[:5]}, progress {task.get('progress')}"
            )
        created = parse_time(task.get("createTime"))
        started = parse_time(task.get("lastRunTime"))
        finished = parse_time(task.get("lastFinishTime"))
        stages = {}
        if created and started:
            stages["queued_s"] = started - created
        if started and finished:
            stages["run_s"] = finished - started
        return {"seconds": dt, "progress": task.get("progress"), **stages}

    def _profile(self, label: str) -> subprocess.Popen[bytes] | None:
        if self.profile_dir is None or self.proc is None:
            return None
        spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
        out = self.profile_dir / f"{label}.txt"  # collapsed stacks (flamegraph.pl, speedscope)
        p = subprocess.Popen(
            [
                spy,
                "record",
                "-s",
                "-p",
                str(self.proc.pid),
                "-r",
                "50",
                "-f",
                "raw",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return p


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


# ---------------------------------------------------------------- runs


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    os.sync()
    t0 = time.perf_counter()
    extra = fn()
    os.sync()
    return time.perf_counter() - t0, extra


def rate(tree: Tree, seconds: float) -> dict[str, float]:
    return {
        "seconds": seconds,
        "MBps": sum(tree.values()) / 1e6 / seconds,
        "files_per_s": len(tree) / seconds,
    }


def transfer(
    args: argparse.Namespace,
    workload: str,
    src: Path,
    tree: Tree,
    dest: Dest,
    tools: list[tuple[str, Callable[[], Any]]],
    rotate: int,
) -> dict[str, Any]:
    """Each tool ``--repeat`` times, order rotated, destination cleared and
    verified around every run; median seconds per tool."""
    times: dict[str, list[float]] = {name: [] for name, _ in tools}
    extras: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for rep in range(args.repeat):
        k = (rotate + rep) % len(tools)
        for name, fn in tools[k:] + tools[:k]:
            if name in errors:
                continue
            dest.clear()
            if dest.tree():
                raise BenchError(f"{workload}: destination not empty before {name}")
            print(f"  {workload}: {name} ...", end="", flush=True)
            try:
                dt, extra = timed(fn)
            except JcsUnavailable as e:
                errors[name] = str(e)
                print(f" UNAVAILABLE: {str(e).splitlines()[0]}", flush=True)
                continue
            check(f"{workload}/{name}", src, tree, dest.tree(), dest.fetch)
            print(f" {dt:.2f} s", flush=True)
            times[name].append(dt)
            if extra:
                extras[name] = extra
    dest.clear()
    out: dict[str, Any] = {"files": len(tree), "bytes": sum(tree.values()), "tools": {}}
    for name, ts in times.items():
        if name in errors:
            out["tools"][name] = {"error": errors[name]}
        else:
            out["tools"][name] = {**rate(tree, statistics.median(ts)), "runs": ts}
            if name in extras:
                out["tools"][name]["task"] = extras[name]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="jcs-syncbench-", dir=args.tmp))
    res: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "rclone": subprocess.run(
            ["rclone", "version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0],
        "args": vars(args),
        "loadavg_start": os.getloadavg()[0],
    }
    s3: S3Server | None = None
    jcs = Jcs(work)
    if args.profile:
        jcs.profile_dir = Path(args.profile).resolve()
        jcs.profile_dir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"work dir {work}", flush=True)
        src_root = work / "src"  # storage.path of the source space
        dst_root = work / "dst"  # storage.path of the local destination space
        src_root.mkdir()
        dst_root.mkdir()
        if not args.skip_s3:
            s3 = S3Server(bucket="syncbench")
            s3.start()
        try:
            jcs.start()
            jcs.add_space("src", {"type": "Local", "path": str(src_root)}, None)
            jcs.add_space("local", {"type": "Local", "path": str(dst_root)}, None)
            if s3 is not None:
                jcs.add_space("s3", s3.storage(), s3.credential())
        except JcsUnavailable as e:
            jcs.error = str(e)
            print(f"JCS UNAVAILABLE: {e}", flush=True)

        def ours(src: str, space: str, path: str, mode: str, label: str) -> Callable[[], Any]:
            def fn() -> Any:
                if jcs.error:
                    raise JcsUnavailable(jcs.error)
                try:
                    return jcs.sync(src, space, path, mode, label)
                except JcsUnavailable as e:
                    jcs.error = str(e)
                    raise

            return fn

        rclone4 = Rclone(work, s3, None)
        rclone8 = Rclone(work, s3, 8)
        plain = PlainCopy(work, s3, args.plain_s3)

        if not args.skip_transfer:
            src = src_root / "tree"
            print(
                f"making {args.files} files of 1 KiB-8 MiB + {args.big_mib} MiB ...",
                flush=True,
            )
            tree = make_tree(src, args.files, KiB, 8 * MiB, args.big_mib * MiB, SEED)
            read_all(src)
            dests: list[tuple[str, Dest]] = [("local->local", LocalDest(dst_root, "tree"))]
            if s3 is not None:
                dests.append(("local->S3", S3Dest(s3, "tree")))
            for i, (workload, dest) in enumerate(dests):
                tools = [
                    ("ours", ours("tree", dest.kind, "tree", "full", workload.replace(">", ""))),
                    (rclone4.name, lambda d=dest: rclone4.run(src, d)),
                    (rclone8.name, lambda d=dest: rclone8.run(src, d)),
                    (plain.name_for(dest.kind), lambda d=dest: plain.run(src, d)),
                ]
                res[workload] = transfer(args, workload, src, tree, dest, tools, rotate=2 * i)
            shutil.rmtree(src)

        if not args.skip_diff:
            src = src_root / "small"
            print(f"making {args.diff_files} files of 1-64 KiB ...", flush=True)
            tree = make_tree(src, args.diff_files, KiB, 64 * KiB, 0, SEED + 1)
            read_all(src)
            dest = LocalDest(dst_root, "small")
            diff: dict[str, Any] = {"files": len(tree), "bytes": sum(tree.values())}
            pairs = [
                ("ours", ours("small", "local", "small", "full", "diff-first"),
                 ours("small", "local", "small", "diff", "diff-second")),
                ("rclone", lambda: rclone4.run(src, dest), lambda: rclone4.run(src, dest)),
            ]  # fmt: skip
            for name, first, second in pairs:
                dest.clear()
                print(f"  diff: {name} first ...", end="", flush=True)
                try:
                    t1, x1 = timed(first)
                    check(f"diff/{name} first", src, tree, dest.tree(), dest.fetch)
                    print(f" {t1:.2f} s; second ...", end="", flush=True)
                    t2, x2 = timed(second)
                    check(f"diff/{name} second", src, tree, dest.tree(), dest.fetch)
                    print(f" {t2:.2f} s", flush=True)
                except JcsUnavailable as e:
                    print(f" UNAVAILABLE: {str(e).splitlines()[0]}", flush=True)
                    diff[name] = {"error": str(e)}
                    continue
                diff[name] = {
                    "first": rate(tree, t1),
                    "second": rate(tree, t2),
                    "ratio": t2 / t1,
                }
                if x1:
                    diff[name]["first"]["task"] = x1
                if x2:
                    diff[name]["second"]["task"] = x2
            dest.clear()
            res["diff"] = diff
        if jcs.error:
            res["jcs_error"] = jcs.error
        res["loadavg_end"] = os.getloadavg()[0]
    finally:
        jcs.stop()
        if s3 is not None:
            s3.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return res


# ---------------------------------------------------------------- report


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"{res['machine']}, {res['rclone']}; medians of {args.repeat} run(s); "
        "times include a final sync(2); source in page cache; "
        f"load average {res['loadavg_start']:.1f} at start, {res.get('loadavg_end', 0):.1f} at end"
    )
    head = f"{'workload':<14} {'tool':<24} {'s':>8} {'MB/s':>8} {'files/s':>9} {'ours/this':>10}"
    for workload in ("local->local", "local->S3"):
        if workload not in res:
            continue
        w = res[workload]
        print(f"\n{workload}: {w['files']} files, {w['bytes'] / 1e6:.0f} MB")
        print(head)
        ours = w["tools"]["ours"]
        for name, t in w["tools"].items():
            if "error" in t:
                print(f"{workload:<14} {name:<24} {'unavailable':>8}")
                continue
            ratio = f"{ours['MBps'] / t['MBps']:.2f}" if "MBps" in ours else "n/a"
            print(
                f"{workload:<14} {name:<24} {t['seconds']:8.2f} {t['MBps']:8.1f} "
                f"{t['files_per_s']:9.1f} {ratio:>10}"
            )
            task = t.get("task") or {}
            if "run_s" in task:
                print(
                    f"{'':<14} {'  (task: queued':<24} {task.get('queued_s', 0):8.2f} s, "
                    f"run {task['run_s']:.2f} s)"
                )
    if "diff" in res:
        d = res["diff"]
        print(f"\ndiff: {d['files']} files, {d['bytes'] / 1e6:.0f} MB, local->local")
        for name in ("ours", "rclone"):
            t = d.get(name)
            if t is None:
                continue
            if "error" in t:
                print(f"  {name:<8} unavailable")
                continue
            verdict = ""
            if name == "ours":
                verdict = "  PASS" if t["ratio"] < 0.10 else "  MISS"
                verdict += " (target < 0.10)"
            print(
                f"  {name:<8} first {t['first']['seconds']:7.2f} s "
                f"({t['first']['files_per_s']:7.0f} files/s), unchanged again "
                f"{t['second']['seconds']:7.2f} s ({t['second']['files_per_s']:7.0f} files/s), "
                f"ratio {t['ratio']:.3f}{verdict}"
            )
            tasks = [t[k].get("task") or {} for k in ("first", "second")]
            if all("run_s" in x for x in tasks):
                print(
                    f"           (task runs {tasks[0]['run_s']:.2f} s and {tasks[1]['run_s']:.2f} s, "
                    f"queued {tasks[0].get('queued_s', 0):.2f} s and "
                    f"{tasks[1].get('queued_s', 0):.2f} s)"
                )
        if "seconds" in d.get("ours", {}).get("second", {}) and "rclone" in d:
            o, r = d["ours"], d["rclone"]
            print(
                f"  ours/rclone time: first {o['first']['seconds'] / r['first']['seconds']:.2f}, "
                f"unchanged {o['second']['seconds'] / r['second']['seconds']:.2f}"
            )
    if res.get("jcs_error"):
        print(f"\nJCS SYNC TASKS UNAVAILABLE: {res['jcs_error']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000, help="files of 1 KiB-8 MiB")
    ap.add_argument("--big-mib", type=int, default=1024, help="size of the one big file")
    ap.add_argument("--diff-files", type=int, default=10000, help="files of 1-64 KiB")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per tool (median)")
    ap.add_argument("--plain-s3", choices=("awscli", "boto3"), default="awscli")
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--skip-transfer", action="store_true")
    ap.add_argument("--skip-diff", action="store_true")
    ap.add_argument("--profile", metavar="DIR", help="py-spy flame graphs of the server")
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    res = run(args)
    report(res, args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if res.get("jcs_error"):
        sys.exit(2)


if __name__ == "__main__":
    main()
