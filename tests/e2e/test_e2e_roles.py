"""Roles of a real ``jcs serve``: ``--role api`` serves and runs no job,
``--role jobs`` runs the jobs and serves only /healthz and /metrics; both
share one data dir. /metrics parses with Prometheus' own text parser and
request ids reach the JSON logs."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from e2e_support import JCS, JcsServer, api_client, clean_env, make_package
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# A server with the jobs role makes its first passes (health, gc, ...) within
# about a second of starting; an api-only one is watched this long.
QUIET_WINDOW = 3.0


def scrape(endpoint: str) -> Samples:
    r = httpx.get(endpoint + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def job_samples(samples: Samples) -> dict[str, float]:
    return {labels[0][1]: v for (name, labels), v in samples.items() if name == "jcs_job_runs"}


def test_api_role_runs_no_jobs_and_jobs_role_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "api").mkdir()
    (tmp_path / "jobs").mkdir()
    api_server = JcsServer(
        data_dir=data, log_dir=tmp_path / "api", env={"JCS_ROLES": "api", "JCS_LOG_LEVEL": "debug"}
    )
    jobs_server = JcsServer(data_dir=data, log_dir=tmp_path / "jobs")
    try:
        api_server.start()
        with api_client(api_server) as api:
            package = make_package(api, "roles", "p")
            r = api.post(
                "/v1/object/upload",
                files={
                    "info": (None, json.dumps({"packageID": package})),
                    "files": ("a.txt", b"hello roles"),
                },
                headers={"X-Request-ID": "e2e-upload-1"},
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"] == "e2e-upload-1"
            insane = api.get("/healthz", headers={"X-Request-ID": "x" * 200})
            assert insane.headers["x-request-id"] != "x" * 200

        # The api-only process registers and runs no job, ever.
        deadline = time.monotonic() + QUIET_WINDOW
        while time.monotonic() < deadline:
            assert job_samples(scrape(api_server.endpoint)) == {}
            time.sleep(0.2)

        samples = scrape(api_server.endpoint)
        upload = (
            ("method", "POST"),
            ("operation", "/v1/object/upload"),
            ("protocol", "jcs"),
            ("status", "200"),
        )
        assert samples[("jcs_http_requests_total", upload)] == 1
        assert samples[("jcs_user_spaces", (("state", "Normal"),))] == 1
        assert samples[("process_resident_memory_bytes", ())] > 0
        assert samples[("jcs_metadata_up", ())] == 1

        # A jobs-only process on the same data: it runs them, serves no API.
        jobs_server.env = {"JCS_ROLES": "jobs"}
        jobs_server.start()
        health = httpx.get(jobs_server.endpoint + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["roles"] == ["jobs"]
        assert health.headers["x-request-id"]
        listing = httpx.get(
            jobs_server.endpoint + "/v1/bucket/listAll",
            headers={"Authorization": f"Bearer {jobs_server.key}"},
            timeout=10,
        )
        assert listing.status_code == 404
        deadline = time.monotonic() + 30
        while job_samples(scrape(jobs_server.endpoint)).get("health", 0) < 1:
            assert time.monotonic() < deadline, "the jobs process ran no health pass"
            time.sleep(0.2)
        # Job progress is the database's: the api process shows it too.
        assert job_samples(scrape(api_server.endpoint)).get("health", 0) >= 1
        admin = subprocess.run(
            [str(JCS), "admin", "jobs", "--data-dir", str(data)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert admin.returncode == 0 and "health" in admin.stdout, admin.stderr
    finally:
        api_server.stop()
        jobs_server.stop()

    # SIGTERM: both stopped cleanly (status 0, no traceback).
    for server in (api_server, jobs_server):
        assert server.proc is not None and server.proc.returncode == 0, server.output()
        assert "Traceback" not in server.output()

    # Everything logged during a request carries its id (JSON lines).
    logged = [
        json.loads(line)
        for line in api_server.output().splitlines()
        if line.startswith("{") and '"request_id"' in line
    ]
    mine = [x for x in logged if x["request_id"] == "e2e-upload-1"]
    assert [x["operation"] for x in mine if x["event"] == "request"] == ["/v1/object/upload"]
    assert all(len(x["request_id"]) <= 128 for x in logged)


def test_serve_refuses_bad_roles_and_unknown_listeners(tmp_path: Path) -> None:
    for args, env, says in (
        (["--role", "web"], {}, "--role='web'"),
        ([], {"JCS_ROLES": "api,cron"}, "JCS_ROLES='api,cron'"),
        ([], {"JCS_LISTENERS": "s3=127.0.0.1:1"}, "JCS_LISTENERS"),
    ):
        r = subprocess.run(
            [str(JCS), "serve", "--data-dir", str(tmp_path / "data"), *args],
            env={**clean_env(), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 2 and says in r.stderr, (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("workers", [None, "2"], ids=["one-process", "workers"])
def test_serve_refuses_a_port_in_use(tmp_path: Path, workers: str | None) -> None:
    """With ``--workers`` too: found by review, a second server started with
    workers bound the first one's ports beside it (both with
    ``SO_REUSEPORT``), and the kernel handed it part of the first one's
    connections. The port here is held as such a server holds it."""
    with socket.socket() as taken:
        if workers:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        r = subprocess.run(
            [str(JCS), "serve", "--data-dir", str(tmp_path / "data"), "--listen", address],
            env={**clean_env(), **({"JCS_WORKERS": workers} if workers else {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"error: cannot listen on {address}" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()
