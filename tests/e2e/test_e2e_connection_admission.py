"""A real ``jcs serve`` at its limit of open connections
(``JCS_MAX_CONNECTIONS``; api/common/admission.py): connections past it
are answered 503 at once in their listener's format (the JCS envelope,
S3's ``SlowDown``) and closed, while a connection already open still
uploads and downloads; once the idle ones are gone (the head limit), new
connections are served again. And the process raises its soft limit of
open files to the hard one at start, and derives its connection limit
from it."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from e2e_support import JcsServer, api_client, fetch, make_package, until_closed, upload

LIMIT = 8
IDLE = 20  # connections opened and left silent, half on each listener
GIVE_UP = 30.0


def gauge(api: httpx.Client, name: str) -> float:
    r = api.get("/metrics")
    assert r.status_code == 200, r.text
    found = re.search(rf"^{name} (\S+)$", r.text, re.MULTILINE)
    assert found, f"no {name} in /metrics"
    return float(found.group(1))


def wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GIVE_UP
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_connections_past_the_limit_are_turned_away_and_uploads_go_on(tmp_path: Path) -> None:
    server = JcsServer(
        data_dir=tmp_path / "data",
        log_dir=tmp_path,
        env={"JCS_MAX_CONNECTIONS": str(LIMIT), "JCS_HTTP_HEAD_SECONDS": "5"},
    )
    server.start()
    idle: list[tuple[str, socket.socket]] = []
    try:
        with api_client(server) as api:
            pkg = make_package(api, "admission", "p")
            assert gauge(api, "jcs_http_connections_limit") == LIMIT
            # only this client's connection is left (the start's probes closed)
            wait_for("one open connection", lambda: gauge(api, "jcs_http_connections_open") == 1)
            for i in range(IDLE):
                which, port = ("s3", server.s3_port) if i % 2 else ("main", server.port)
                idle.append((which, socket.create_connection(("127.0.0.1", port))))
            wait_for(
                "the limit reached",
                lambda: gauge(api, "jcs_http_connections_open") == LIMIT,
            )

            # the connection already open is served as before, big writes too
            data = os.urandom(3 << 20)
            r = upload(api, pkg, ("big.bin", data))
            assert r.status_code == 200, r.text
            assert fetch(api, pkg, "big.bin") == data

            # those past the limit were answered at once; those admitted are
            # closed without a word when their head limit runs out
            answers = [(which, until_closed(sock, GIVE_UP)) for which, sock in idle]
            turned_away = [(w, a) for w, a in answers if a]
            assert len(turned_away) == IDLE - (LIMIT - 1), answers
            for which, answer in turned_away:
                assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:100]
                assert b"\r\nconnection: close\r\n" in answer.lower()
                assert b"\r\nretry-after: 1\r\n" in answer.lower()
                if which == "main":
                    assert b"too many open connections" in answer
                    assert b'"code":"OperationFailed"' in answer
                else:
                    assert b"<Code>SlowDown</Code>" in answer
                    assert b"<RequestId>" in answer

            wait_for("the idle ones gone", lambda: gauge(api, "jcs_http_connections_open") == 1)
        # new connections are served again
        r = httpx.get(f"{server.endpoint}/healthz", timeout=GIVE_UP)
        assert r.status_code == 200
    finally:
        for _, sock in idle:
            sock.close()
        server.stop()
    assert '"level": "error"' not in server.output()


# Lowers the soft limit of open files (the hard one stays) and becomes the
# server: the same PID.
_SOFT_LIMITED = (
    "import os, resource, sys\n"
    "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


@dataclass
class SoftLimited(JcsServer):
    soft: int = 256

    def command(self) -> list[str]:
        return [sys.executable, "-c", _SOFT_LIMITED, str(self.soft), *super().command()]


def open_files_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files limit")


def test_the_open_files_limit_is_raised_and_bounds_connections(tmp_path: Path) -> None:
    server = SoftLimited(data_dir=tmp_path / "data", log_dir=tmp_path)
    server.start()
    try:
        soft, hard = open_files_limits(server.pid)
        assert hard > server.soft  # this machine allows more: the test means something
        assert soft == hard
        with api_client(server) as api:
            assert gauge(api, "jcs_http_connections_limit") == max(16, hard // 4)
    finally:
        server.stop()
