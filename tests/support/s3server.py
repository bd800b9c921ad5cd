"""A real S3 endpoint on loopback for tests: ``moto_server`` as a subprocess.

Spaces must be tested against an actual HTTP S3 server (signing, multipart,
ranged GETs, error codes), not a mock patched into a client library. Fault tests
need to stop the server and bring it back on the same port, so the process is
owned here and stopped by its PID.

Use from a conftest::

    from support.s3server import s3_server_fixture
    s3_server = s3_server_fixture()          # session-scoped fixture
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.ports import PORT_ATTEMPTS, free_port, listens

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


def _moto_executable() -> str:
    candidate = Path(sys.executable).with_name("moto_server")
    return str(candidate) if candidate.exists() else "moto_server"


class S3Server:
    """One ``moto_server`` on ``127.0.0.1:port`` with ``bucket`` created."""

    def __init__(self, port: int | None = None, bucket: str = "jcs-test") -> None:
        self.port = port or free_port()
        # A port we chose may be taken before moto binds it: then its first
        # start tries another (support/ports.py). A given port is kept.
        self._may_move = port is None
        self.bucket = bucket
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the server (on the same port as before) and (re)create the bucket."""
        if self.running:
            return
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        for _ in range(PORT_ATTEMPTS):
            self._proc = subprocess.Popen(
                [_moto_executable(), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            deadline = time.monotonic() + timeout
            # Ready when moto answers on a listener of its own, not someone else's.
            while not (listens(self._proc.pid, self.port) and self._answers()):
                if self._proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer on {self.endpoint}")
                time.sleep(0.05)
            else:
                break
            if not self._may_move:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode}")
            self.port = free_port()
        else:
            raise RuntimeError(f"moto_server found its ports taken {PORT_ATTEMPTS} times")
        self._may_move = False
        self.create_bucket(self.bucket)

    def stop(self) -> None:
        """Stop the server by its PID; everything stored is lost."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=0.5):
                return True
        except urllib.error.HTTPError:
            return True  # it answered, even if with an error status
        except OSError:
            return False

    def client(self) -> Any:
        """A boto3 S3 client for this server (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> None:
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)

    def storage(self, path_style: bool = True) -> dict[str, Any]:
        """The JCS user-space ``storage`` JSON pointing at this server."""
        return {
            "type": "S3",
            "endpoint": self.endpoint,
            "region": self.region,
            "bucket": self.bucket,
            "pathStyle": path_style,
        }

    def credential(self) -> dict[str, str]:
        return {
            "type": "AK",
            "accessKeyId": self.access_key,
            "secretAccessKey": self.secret_key,
        }

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def s3_server_fixture(
    scope: Any = "session", bucket: str = "jcs-test"
) -> Callable[[], Iterator[S3Server]]:
    """Build a pytest fixture yielding a running ``S3Server``; assign it in a conftest."""

    @pytest.fixture(scope=scope)
    def _fixture() -> Iterator[S3Server]:
        server = S3Server(bucket=bucket)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    return _fixture
