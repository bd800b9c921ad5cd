"""End-to-end helpers: a real ``jcs serve`` process on a free loopback port,
the ``jcs`` command line run as a subprocess, and raw HTTP to the same server."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.ports import PORT_ATTEMPTS, free_port, listens, port_was_taken

JCS = Path(sys.executable).with_name("jcs")
START_TIMEOUT = 30.0


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JCS_")}
    # Test servers keep Local spaces under the temp dir and reach S3 on
    # loopback: allowed here explicitly (a server allows neither by default);
    # a test of the defaults overrides both with "".
    env["JCS_LOCAL_ROOTS"] = tempfile.gettempdir()
    env["JCS_ENDPOINT_ALLOW"] = "127.0.0.1"
    # Never the default S3 port: several test servers run at once.
    env["JCS_S3_LISTEN"] = f"127.0.0.1:{free_port()}"
    env["PYTHONIOENCODING"] = "utf-8"
    env["COLUMNS"] = "200"
    return env


@dataclass
class JcsServer:
    """One ``jcs serve`` process over ``data_dir``; restartable on the same
    data (a new port each start); stopped or killed by its PID."""

    data_dir: Path
    log_dir: Path
    port: int = 0
    s3_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # JCS_* settings of this server

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key(self) -> str:
        return (self.data_dir / "root.key").read_text().strip()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self, start: int = -1) -> str:
        """What the given start (default: the latest) printed."""
        return self.logs[start].read_text(errors="replace")

    def command(self) -> list[str]:
        """``jcs serve`` on this server's data and ports."""
        return [
            str(JCS),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--s3-listen",
            f"127.0.0.1:{self.s3_port}",
        ]

    def process_env(self) -> dict[str, str]:
        return {**clean_env(), **self.env}

    def start(self) -> None:
        """Start on fresh ports, ready when its listeners are this process's
        (support/ports.py: a port found free may be taken before it binds)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            self.s3_port = free_port()
            log = self.log_dir / f"serve-{self.port}-{len(self.logs) + 1}.log"
            self.logs.append(log)
            with log.open("wb") as fh:
                self.proc = subprocess.Popen(
                    self.command(),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.process_env(),
                )
            if self._wait_ready():
                return
            self.logs.pop()  # that start never ran: one log per start
        pytest.fail(f"jcs serve found its ports taken {PORT_ATTEMPTS} times")

    def _wait_ready(self) -> bool:
        """True once healthy on its own listeners; False if a port was taken."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if port_was_taken(self.output()):
                    return False
                pytest.fail(f"jcs serve exited with {self.proc.returncode}:\n{self.output()}")
            # Every listener is bound before any serves (api/host.py: bind),
            # so the main port being this process's vouches for the rest.
            if listens(self.pid, self.port):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(self.endpoint + "/healthz", timeout=1.0).status_code == 200:
                        return True
            time.sleep(0.05)
        self.kill()
        pytest.fail(
            f"jcs serve did not become healthy on a port of its own in {START_TIMEOUT}s:\n"
            + self.output()
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class Cli:
    """Runs ``jcs`` as a subprocess against one server (JCS_ENDPOINT/JCS_API_KEY)."""

    endpoint: str
    key: str
    cwd: Path

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = clean_env()
        full_env.update({"JCS_ENDPOINT": self.endpoint, "JCS_API_KEY": self.key})
        full_env.update(env or {})
        return subprocess.run(
            [str(JCS), *args],
            cwd=self.cwd,
            env=full_env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            check=False,
        )

    def __call__(self, *args: str) -> str:
        """Run, require success, return stdout."""
        r = self.run(*args)
        if r.returncode != 0:
            pytest.fail(f"jcs {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def fails(self, *args: str) -> str:
        """Run, require failure (exit 1), return stderr."""
        r = self.run(*args)
        assert r.returncode == 1, f"jcs {' '.join(args)} exited {r.returncode}: {r.stdout}"
        return r.stderr


def api_client(server: JcsServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.endpoint,
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=60,
    )


@contextlib.contextmanager
def running_server(base: Path) -> Iterator[JcsServer]:
    base.mkdir(parents=True, exist_ok=True)
    server = JcsServer(data_dir=base / "data", log_dir=base)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def make_package(
    api: httpx.Client, bucket: str, package: str, redundancy: dict[str, object] | None = None
) -> int:
    """Setup through raw HTTP (the CLI's own commands are tested elsewhere):
    the bucket (if new) and the package; returns the package id."""
    r = api.get("/v1/bucket/getByName", params={"name": bucket})
    if r.status_code == 404:
        r = api.post("/v1/bucket/create", json={"name": bucket})
    assert r.status_code == 200, r.text
    body: dict[str, object] = {"bucketID": r.json()["data"]["bucket"]["bucketID"], "name": package}
    if redundancy is not None:
        body["redundancy"] = redundancy
    r = api.post("/v1/package/create", json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["package"]["packageID"])


def upload(api: httpx.Client, package_id: int, *files: tuple[str, bytes]) -> httpx.Response:
    """One v1 upload of ``files`` (path, bytes) into the package."""
    return api.post(
        "/v1/object/upload",
        files=[
            ("info", (None, json.dumps({"packageID": package_id}))),
            *(("files", (path, data, "application/octet-stream")) for path, data in files),
        ],
    )


def fetch(api: httpx.Client, package_id: int, path: str) -> bytes:
    r = api.get("/v1/object/downloadByPath", params={"packageID": package_id, "path": path})
    assert r.status_code == 200, r.text
    return r.content


def object_at(api: httpx.Client, package_id: int, path: str) -> dict[str, object]:
    r = api.get("/v1/object/listByPath", params={"packageID": package_id, "path": path})
    found: list[dict[str, object]] = r.json()["data"]["objects"]
    assert len(found) == 1, (path, r.text)
    return found[0]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read a MiB at a time."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# GC of everything unreferenced, and of unfinished multipart uploads, at once
GC_NOW = {"JCS_GC_DELAY_SECONDS": "0", "JCS_MULTIPART_EXPIRY_SECONDS": "0"}


def admin_now(server: JcsServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``jcs admin ARGS`` on the server's data dir, with GC taking
    everything unreferenced at once."""
    return subprocess.run(
        [str(JCS), "admin", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(), **GC_NOW},
        check=False,
    )


def gc_then_fsck(server: JcsServer) -> None:
    """GC once, then fsck: no missing block, no orphan, no temporary file."""
    gc = admin_now(server, "gc", "--once")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    fsck = admin_now(server, "fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    summary = next(
        line for line in fsck.stdout.splitlines() if line.startswith("fsck: ") and "checked" in line
    )
    assert " 0 missing," in summary and " 0 orphans," in summary, fsck.stdout
    assert temp_files(server) == []


def block_files(server: JcsServer) -> set[Path]:
    """Block files in the server's spaces (temporary files apart)."""
    return {
        p
        for p in (server.data_dir / "spaces").rglob("*")
        if p.is_file() and not p.name.startswith(".jcs-tmp-")
    }


def temp_files(server: JcsServer) -> list[Path]:
    return [p for p in (server.data_dir / "spaces").rglob(".jcs-tmp-*") if p.is_file()]


def until_closed(sock: socket.socket, give_up: float) -> bytes:
    """Everything the server sends until it closes (failing after ``give_up`` s)."""
    sock.settimeout(give_up)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
