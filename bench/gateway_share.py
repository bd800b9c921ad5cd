"""The gateway facade and the share link against direct S3, in one run.

    .venv/bin/python bench/gateway_share.py [--quick] [--mib 1024] [--rounds 3]
        [--json FILE] [--profile FILE]

One ``jcs serve`` (fresh data dir, SQLite, default spaces) with its main
listener and ``--s3-listen`` on loopback; its S3 credentials made as the
seed's flow makes them, through the facade (``/createRestrictKey`` →
``/createAccessGrant`` → ``/createCredentials``). Same machine, same run, one
large object (1 GiB; ``--quick``: 128 MiB):

- **direct S3** (the baseline): boto3's managed transfer to the S3 endpoint
  (``upload_file`` / ``download_fileobj``, 8 MiB parts, 8 threads);
- **facade**: ``POST /uploadObject`` with a multipart form streamed from a
  generator by httpx (the file read in 1 MiB pieces), and ``/downloadObject``
  streamed by httpx;
- **share link**: ``/shareUrl`` for the object, then
  ``GET /raw/<access>/<bucket>/<key>`` streamed by httpx, against the same
  object's S3 ``GetObject`` by boto3 (one stream, read in 1 MiB pieces) and a
  presigned ``GetObject`` URL fetched by httpx; ``/raw`` is fetched with
  both clients, urllib3 (boto3's HTTP stack) and httpx, and each is compared
  with the S3 GET of the same client (the clients' own costs differ by more
  than the servers' do).

Each round measures every path once, the paths of a pair next to each other
(their order flips every round), so a ratio compares two runs under the same
load; the figures are medians over the rounds, and so are the ratios (taken
per round). The load average is recorded before every round: other processes
may share the machine. Client CPU (this process) and server CPU (the server's
process) are recorded per path. Targets (issue 13): facade upload and
download >= 80 % of direct S3; ``/raw`` >= 80 % of S3 GET (with either
client). ``--profile FILE`` runs the server under cProfile in every
thread and writes the merged stats to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import urllib3

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
MB = 1e6
BUCKET = "gwbench"
PASSWORD = "bench gateway passphrase"
BOUNDARY = "jcsgatewaybenchboundary"
TARGET = 0.8

# Runs ``jcs serve`` with cProfile in every thread (asyncio.to_thread workers
# included); the stats of all threads are merged into argv[1] at exit.
PROFILED = """
import atexit, cProfile, pstats, sys, threading
out = sys.argv.pop(1)
profiles = []
def _start(*_):
    p = cProfile.Profile()
    profiles.append(p)
    p.enable()
threading.setprofile(_start)
main = cProfile.Profile()
profiles.append(main)
def _dump():
    for p in profiles:
        p.disable()
        p.create_stats()
    stats = pstats.Stats(profiles[0])
    for p in profiles[1:]:
        if p.stats:
            stats.add(p)
    stats.dump_stats(out)
atexit.register(_dump)
from jointcloud.cli.main import app
sys.argv[0] = "jcs"
main.enable()
try:
    app()
finally:
    main.disable()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Server:
    """``jcs serve`` with both listeners on free loopback ports."""

    def __init__(
        self, work: Path, profile: str | None, *, launcher: list[str] | None = None
    ) -> None:
        """``launcher``: the command that stands for ``jcs`` (a wrapper that
        profiles or traces it); else ``jcs``, profiled if ``profile``."""
        self.port, self.s3_port = free_port(), free_port()
        self.data = work / "jcs-data"
        self.log = work / "jcs.log"
        env = dict(os.environ, JCS_GC_INTERVAL_SECONDS="3600")
        pre = launcher or (
            [sys.executable, "-c", PROFILED, profile] if profile else [str(ROOT / ".venv/bin/jcs")]
        )
        self.proc = subprocess.Popen(
            [
                *pre,
                "serve",
                "--data-dir",
                str(self.data),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--public-url",
                self.endpoint,
                "--s3-listen",
                f"127.0.0.1:{self.s3_port}",
            ],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jcs serve exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.endpoint + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("jcs serve did not become healthy")
            time.sleep(0.1)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root_key(self) -> str:
        return (self.data / "root.key").read_text().strip()

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ok(r: httpx.Response) -> Any:
    """The data of a facade (``code: 0``) or v1 API (``code: "OK"``) answer."""
    if r.status_code != 200 or r.json().get("code") not in (0, "OK"):
        raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:400]}")
    return r.json().get("data")


def setup(server: Server) -> dict[str, Any]:
    """The seed's flow: project key → restrict → grant → credentials; a share link."""
    with httpx.Client(base_url=server.endpoint, timeout=120) as http:
        auth = {"Authorization": f"Bearer {server.root_key}"}
        project = ok(http.post("/v1/bucket/create", json={"name": "gwbench"}, headers=auth))
        project = project["bucket"]
        made = ok(
            http.post(
                "/v1/apiKey/create",
                json={"bucketID": project["bucketID"], "name": "bench"},
                headers=auth,
            )
        )
        api_key = made["apiKey"]["key"]
        restrict = ok(
            http.post(
                "/createRestrictKey",
                json={
                    "buckets": [BUCKET],
                    "api_key": api_key,
                    "allow_download": True,
                    "allow_upload": True,
                    "allow_list": True,
                    "allow_delete": True,
                },
            )
        )
        grant = ok(
            http.post(
                "/createAccessGrant",
                data={
                    "satellite_node_url": server.endpoint,
                    "restrict_key": restrict,
                    "password": PASSWORD,
                    "project_id": project["projectID"],
                },
            )
        )
        creds = ok(
            http.post(
                "/createCredentials", data={"access_grant": grant, "auth_service": server.endpoint}
            )
        )
    return {"api_key": api_key, "project_id": project["projectID"], **creds}


def share(server: Server, setup: dict[str, Any], key: str) -> str:
    """``/shareUrl`` for one object; returns the access of its ``/raw`` URL."""
    with httpx.Client(base_url=server.endpoint, timeout=120) as http:
        link = ok(
            http.post(
                "/shareUrl",
                data={
                    "bucket": BUCKET,
                    "key": key,
                    "satellite_node_url": server.endpoint,
                    "api_key": setup["api_key"],
                    "password": PASSWORD,
                    "project_id": setup["project_id"],
                    "auth_service": server.endpoint,
                    "base_url": server.endpoint,
                },
            )
        )
        page = http.get(link, follow_redirects=True)
        if page.status_code != 200 or "/s/" not in str(page.url):
            raise RuntimeError(f"share link {link}: {page.status_code} {page.url}")
        return str(page.url).split("/s/", 1)[1].split("/", 1)[0]


def s3_client(creds: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=creds["endpoint"],
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_key"],
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            max_pool_connections=16,
            read_timeout=600,
            connect_timeout=30,
        ),
    )


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=8
    )


class CountingSink:
    """A seekable file that only counts what boto3's downloader writes."""

    def __init__(self) -> None:
        self.n = 0
        self.pos = 0

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def write(self, data: bytes) -> int:
        self.n += len(data)
        self.pos += len(data)
        return len(data)


def form_stream(path: Path, key: str) -> tuple[Iterator[bytes], int]:
    """A multipart form (bucket, key, then the file) from a generator, and its length."""
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("bucket", BUCKET), ("key", key))
    )
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    pre, post = head.encode(), f"\r\n--{BOUNDARY}--\r\n".encode()
    size = path.stat().st_size

    def gen() -> Iterator[bytes]:
        yield pre
        with path.open("rb") as f:
            while piece := f.read(MiB):
                yield piece
        yield post

    return gen(), len(pre) + size + len(post)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="jcs-gwbench-", dir=args.tmp))
    big = work / "big.bin"
    with big.open("wb") as f:
        block = os.urandom(8 * MiB)
        for _ in range(args.mib // 8):
            f.write(block)
    size = big.stat().st_size
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "uptime_start": uptime(),
        "mib": args.mib,
        "rounds": [],
    }
    print(f"uptime: {results['uptime_start']}", flush=True)
    server = Server(work, args.profile)
    try:
        made = setup(server)
        s3 = s3_client(made)
        s3.create_bucket(Bucket=BUCKET)
        tc = transfer_config()
        s3.upload_file(str(big), BUCKET, "shared.bin", Config=tc)
        access = share(server, made, "shared.bin")
        gw_headers = {
            "AccessKeyId": made["access_key_id"],
            "SecretKey": made["secret_key"],
            "Endpoint": made["endpoint"],
        }
        http = httpx.Client(base_url=server.endpoint, timeout=600)
        raw_url = f"{server.endpoint}/raw/{access}/{BUCKET}/shared.bin"

        def count(r: httpx.Response) -> int:
            if r.status_code != 200:
                raise RuntimeError(f"{r.request.url}: {r.status_code} {r.read()[:300]!r}")
            return sum(len(piece) for piece in r.iter_raw(MiB))

        def direct_up(rnd: int) -> int:
            s3.upload_file(str(big), BUCKET, f"direct-{rnd}.bin", Config=tc)
            return size

        def facade_up(rnd: int) -> int:
            body, length = form_stream(big, f"facade-{rnd}.bin")
            r = http.post(
                "/uploadObject",
                content=body,
                headers={
                    **gw_headers,
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    "Content-Length": str(length),
                },
            )
            ok(r)
            return size

        def direct_down(rnd: int) -> int:
            sink = CountingSink()
            s3.download_fileobj(BUCKET, f"direct-{rnd}.bin", sink, Config=tc)
            return sink.n

        def facade_down(rnd: int) -> int:
            with http.stream(
                "POST",
                "/downloadObject",
                data={"bucket": BUCKET, "key": f"facade-{rnd}.bin"},
                headers=gw_headers,
            ) as r:
                return count(r)

        def s3_get(rnd: int) -> int:
            body = s3.get_object(Bucket=BUCKET, Key="shared.bin")["Body"]
            n = sum(len(piece) for piece in body.iter_chunks(MiB))
            body.close()
            return n

        def presigned_get(rnd: int) -> int:
            url = s3.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": "shared.bin"}, ExpiresIn=3600
            )
            with http.stream("GET", url) as r:
                return count(r)

        def raw_get(rnd: int) -> int:
            with http.stream("GET", raw_url) as r:
                return count(r)

        pool = urllib3.PoolManager(maxsize=1)

        def raw_get_urllib3(rnd: int) -> int:
            # boto3's own HTTP stack: the same client as the boto3 GetObject
            r = pool.request("GET", raw_url, preload_content=False)
            if r.status != 200:
                raise RuntimeError(f"{raw_url}: {r.status}")
            n = sum(len(piece) for piece in r.stream(MiB))
            r.release_conn()
            return n

        pairs: list[list[tuple[str, Callable[[int], int]]]] = [
            [("direct_up", direct_up), ("facade_up", facade_up)],
            [("direct_down", direct_down), ("facade_down", facade_down)],
            [("s3_get", s3_get), ("raw_get_urllib3", raw_get_urllib3)],
            [("presigned_get", presigned_get), ("raw_get", raw_get)],
        ]
        for rnd in range(args.rounds):
            row: dict[str, Any] = {"load": load()}
            print(f"-- round {rnd + 1}/{args.rounds}, load average {row['load']}", flush=True)
            for pair in pairs:
                for name, fn in pair if rnd % 2 == 0 else pair[::-1]:
                    c0, s0, t0 = client_cpu(), server.cpu(), time.perf_counter()
                    n = fn(rnd)
                    wall = time.perf_counter() - t0
                    if n != size:
                        raise RuntimeError(f"{name}: {n} bytes, expected {size}")
                    row[name] = {
                        "MBps": size / MB / wall,
                        "client_cores": (client_cpu() - c0) / wall,
                        "server_cores": (server.cpu() - s0) / wall,
                    }
                    print(
                        f"   {name:<14}{size / MB / wall:9.1f} MB/s   client "
                        f"{row[name]['client_cores']:.2f} cores, server "
                        f"{row[name]['server_cores']:.2f} cores",
                        flush=True,
                    )
            results["rounds"].append(row)
        http.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["uptime_end"] = uptime()
    print(f"uptime: {results['uptime_end']}", flush=True)
    return results


PATHS = [
    ("direct_up", "direct S3 upload (boto3, 8 threads)"),
    ("facade_up", "facade /uploadObject"),
    ("direct_down", "direct S3 download (boto3, 8 threads)"),
    ("facade_down", "facade /downloadObject"),
    ("s3_get", "S3 GetObject (boto3, 1 stream)"),
    ("presigned_get", "S3 GetObject, presigned (httpx)"),
    ("raw_get", "share /raw (httpx)"),
    ("raw_get_urllib3", "share /raw (urllib3, as boto3)"),
]


def report(r: dict[str, Any]) -> list[tuple[str, float, bool]]:
    rounds = r["rounds"]

    def med(name: str, field: str = "MBps") -> float:
        return statistics.median(row[name][field] for row in rounds)

    def ratio(a: str, *bs: str) -> float:
        return statistics.median(row[a]["MBps"] / max(row[b]["MBps"] for b in bs) for row in rounds)

    print(f"\n{r['mib']} MiB object, {len(rounds)} rounds (medians), {r['machine']}")
    print(f"{'path':<40}{'MB/s':>9}{'client':>9}{'server':>9}   (cores)")
    for name, label in PATHS:
        print(
            f"{label:<40}{med(name):>9.1f}{med(name, 'client_cores'):>9.2f}"
            f"{med(name, 'server_cores'):>9.2f}"
        )
    print("load averages before each round: " + "; ".join(row["load"] for row in rounds))
    targets = [
        ("facade upload / direct S3 >= 0.80", ratio("facade_up", "direct_up")),
        ("facade download / direct S3 >= 0.80", ratio("facade_down", "direct_down")),
        ("/raw / S3 GET (urllib3 both) >= 0.80", ratio("raw_get_urllib3", "s3_get")),
        ("/raw / S3 GET (httpx both) >= 0.80", ratio("raw_get", "presigned_get")),
    ]
    print("\ntargets:")
    out = []
    for label, value in targets:
        passed = value >= TARGET
        out.append((label, value, passed))
        print(f"  {label:<40}{value:6.2f}  {'PASS' if passed else 'MISS'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=1024, help="object size in MiB (multiple of 8)")
    ap.add_argument("--quick", action="store_true", help="128 MiB, 2 rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--profile", default=None, help="run jcs serve under cProfile into FILE")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and the data removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.mib, args.rounds = 128, 2
    results = run(args)
    results["targets"] = [
        {"target": label, "value": value, "pass": passed}
        for label, value, passed in report(results)
    ]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
