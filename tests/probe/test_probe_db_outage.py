"""A real ``jcs serve`` whose PostgreSQL goes silent (a link that drops
every packet, meta/outage.py): the v1 API and the S3 endpoint answer 503 in
their own formats within the time limit, the server serves again once the
link is back, and a stop with the database still silent ends in time."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from probe_support import JCS, ProbeServer, clean_env, free_port

from jointcloud.keys.credentials import new_access_key_id
from support.blackhole import Blackhole
from support.postgres import PostgresServer

LIMIT = 1.0  # JCS_DB_TIMEOUT_SECONDS of this server
SLACK = 6.0  # the dropped connection's goodbye (2 s at most), a loaded machine
STOP_BOUND = 25.0  # the job runner's wait (10 s), closing connections (5 s), the rest


def _list_buckets(server: ProbeServer) -> httpx.Response:
    return httpx.get(
        server.endpoint + "/v1/bucket/listAll",
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=60,
    )


def test_a_silent_database_is_answered_with_503_and_outlived(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.new_database()
    link = Blackhole(postgres.port)
    link.start()
    server = ProbeServer(
        data_dir=tmp_path / "data",
        log_dir=tmp_path,
        database_url=url.replace(f":{postgres.port}/", f":{link.port}/"),
        env={"JCS_DB_TIMEOUT_SECONDS": str(LIMIT)},
    )
    server.start()
    try:
        assert _list_buckets(server).status_code == 200

        link.cut()
        began = time.monotonic()
        r = _list_buckets(server)
        assert time.monotonic() - began < LIMIT + SLACK
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "OperationFailed"
        assert r.json()["message"] == f"the metadata database did not answer within {LIMIT:g} s"

        # S3: any signed request needs its access key looked up.
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{server.s3_port}",
            aws_access_key_id=new_access_key_id(),  # well formed: looked up
            aws_secret_access_key="not-a-real-secret-key",
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        began = time.monotonic()
        with pytest.raises(ClientError) as caught:
            s3.list_buckets()
        assert time.monotonic() - began < LIMIT + SLACK
        answer = caught.value.response
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert answer["Error"]["Code"] == "ServiceUnavailable"
        assert "metadata database" in answer["Error"]["Message"]

        link.mend()
        assert _list_buckets(server).status_code == 200
        r = httpx.get(f"http://127.0.0.1:{server.s3_port}/", timeout=60)  # anonymous: refused
        assert r.status_code == 403
        assert ElementTree.fromstring(r.content).findtext("Code") == "AccessDenied"

        link.cut()  # and the server is stopped while the database is silent
        assert server.proc is not None
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(STOP_BOUND + 10) == 0
        assert time.monotonic() - began < STOP_BOUND
    finally:
        server.stop()
        link.stop()
    log = server.output()
    assert '"status": 500' not in log


def test_a_start_without_the_database_says_so_in_one_line(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here
    r = subprocess.run(
        [
            str(JCS),
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--s3-listen",
            "off",
            "--database-url",
            f"postgresql+asyncpg://postgres:s3cretpw@127.0.0.1:{closed}/jcs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        check=False,
    )
    assert r.returncode == 1
    assert r.stderr.strip() == "error: cannot reach the metadata database (ConnectionRefusedError)"
    assert "s3cretpw" not in r.stdout + r.stderr
