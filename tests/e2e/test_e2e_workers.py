"""``jcs serve --workers N``, on PostgreSQL and on the SQLite file: N
processes serve the same ports and the same data, a worker that dies is
replaced, and stopping the first process stops them all; on SQLite they
write the one file in turn, all at once. On an in-memory database it is
refused before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from e2e_support import JCS, JcsServer, clean_env

from support.postgres import PostgresServer

WORKERS = 3
SETTLE = 60.0  # seconds a worker may take to start on a busy machine


def listening(pid: int, port: int) -> bool:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)


def listening_sockets(pid: int, port: int) -> set[str]:
    """The listening sockets a process holds on ``port`` (``socket:[inode]``)."""
    return {
        os.readlink(f"/proc/{pid}/fd/{c.fd}")
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def workers_listening(server: JcsServer, count: int, gone: int | None = None) -> list[int]:
    """The pids of ``count`` workers of ``server`` listening on its port, not
    counting ``gone`` (waits for them: each starts as a new Python process,
    and a killed one is listed until its signal is delivered)."""
    deadline = time.monotonic() + SETTLE
    while True:
        kids = [
            k.pid
            for k in psutil.Process(server.pid).children()
            if k.pid != gone and listening(k.pid, server.port)
        ]
        if len(kids) == count:
            return kids
        assert time.monotonic() < deadline, f"{len(kids)} of {count} workers listening"
        time.sleep(0.1)


@pytest.fixture(params=["postgresql", "sqlite"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[JcsServer]:
    postgres: PostgresServer | None = None
    env = {"JCS_WORKERS": str(WORKERS)}
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        env["JCS_DATABASE_URL"] = url = postgres.new_database()
    srv = JcsServer(data_dir=tmp_path / "data", log_dir=tmp_path, env=env)
    tmp_path.mkdir(exist_ok=True)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if postgres is not None:
            postgres.drop_database(url)


def test_workers_serve_one_store_and_stop_together(server: JcsServer) -> None:
    pids = workers_listening(server, WORKERS - 1)
    assert listening(server.pid, server.port) and listening(server.pid, server.s3_port)
    for pid in pids:
        assert listening(pid, server.s3_port)
        # Its own sockets, not the first process's inherited: one inherited
        # showed a worker as listening while it was still starting, and
        # every connection made meanwhile went to the first process.
        for port in (server.port, server.s3_port):
            assert not listening_sockets(pid, port) & listening_sockets(server.pid, port)

    auth = {"Authorization": f"Bearer {server.key}"}

    # One new connection per request: the kernel spreads connections over
    # the processes, and every one of them must see what the others wrote.
    def cpu(pid: int) -> float:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)

    before = {pid: cpu(pid) for pid in pids}
    r = httpx.post(server.endpoint + "/v1/bucket/create", json={"name": "w"}, headers=auth)
    assert r.status_code == 200, r.text
    bucket = r.json()["data"]["bucket"]["bucketID"]
    r = httpx.post(
        server.endpoint + "/v1/package/create", json={"bucketID": bucket, "name": "p"}, headers=auth
    )
    assert r.status_code == 200, r.text
    package = r.json()["data"]["package"]["packageID"]
    for i in range(40):
        body = os.urandom(1000 + i)
        with httpx.Client(base_url=server.endpoint, headers=auth) as c:
            up = c.post(
                "/v1/object/upload",
                files={
                    "info": (None, f'{{"packageID": {package}}}'),
                    "files": (f"f{i}", body),
                },
            )
            assert up.status_code == 200, up.text
            oid = up.json()["data"]["uploadeds"][0]["objectID"]
        with httpx.Client(base_url=server.endpoint, headers=auth) as c:
            got = c.get("/v1/object/download", params={"objectID": oid})
            assert got.status_code == 200 and got.content == body
    listed = httpx.get(
        server.endpoint + "/v1/object/listByPath",
        params={"packageID": package, "path": "", "isPrefix": "true"},
        headers=auth,
    ).json()["data"]["objects"]
    assert len(listed) == 40
    # Every worker served some of those 80 connections (an idle one uses no CPU).
    grew = {pid: cpu(pid) - before[pid] for pid in pids}
    assert all(g > 0.01 for g in grew.values()), grew

    # A worker that dies is replaced, and the port keeps answering.
    os.kill(pids[0], signal.SIGKILL)
    replaced = workers_listening(server, WORKERS - 1, gone=pids[0])
    assert pids[1] in replaced and len(set(replaced) - set(pids)) == 1  # a new one
    assert httpx.get(server.endpoint + "/healthz").status_code == 200

    # Stopping the first process stops every worker.
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0
    for pid in replaced:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_workers_write_at_once(server: JcsServer) -> None:
    """Eight clients upload at once, each on new connections, so that every
    process writes while the others do (on SQLite they take the file's
    writer lock in turn): every upload is acknowledged, and every object is
    there with its bytes whatever process answers."""
    workers_listening(server, WORKERS - 1)
    auth = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.endpoint, headers=auth) as c:
        bucket = c.post("/v1/bucket/create", json={"name": "w"}).json()["data"]["bucket"]
        package = c.post(
            "/v1/package/create", json={"bucketID": bucket["bucketID"], "name": "p"}
        ).json()["data"]["package"]["packageID"]
    bodies = {f"c{c}/f{i}": os.urandom(500 + 97 * i + c) for c in range(8) for i in range(12)}

    def client(c: int) -> list[tuple[str, int]]:
        done = []
        for i in range(12):
            path = f"c{c}/f{i}"
            with httpx.Client(base_url=server.endpoint, headers=auth, timeout=60) as h:
                up = h.post(
                    "/v1/object/upload",
                    files={
                        "info": (None, f'{{"packageID": {package}}}'),
                        "files": (path, bodies[path]),
                    },
                )
            assert up.status_code == 200, up.text
            done.append((path, up.json()["data"]["uploadeds"][0]["objectID"]))
        return done

    with ThreadPoolExecutor(8) as pool:
        uploaded = [item for done in pool.map(client, range(8)) for item in done]
    assert sorted(path for path, _ in uploaded) == sorted(bodies)
    for path, oid in uploaded:
        with httpx.Client(base_url=server.endpoint, headers=auth) as h:
            got = h.get("/v1/object/download", params={"objectID": oid})
        assert got.status_code == 200 and got.content == bodies[path], path


def test_workers_on_an_in_memory_database_are_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            str(JCS),
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--database-url",
            "sqlite+aiosqlite://",
            "--workers",
            "2",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--workers" in r.stderr and "no file" in r.stderr
    assert not (tmp_path / "d" / "meta.db").exists()
