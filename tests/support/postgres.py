"""A private PostgreSQL server for tests, started and stopped by the tests.

Uses the Debian server binaries (``.ci/run`` installs the ``postgresql``
package). PostgreSQL refuses to run as root, so when the tests run as root
the cluster is owned by and started as the ``postgres`` system user.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found; install the Debian 'postgresql' package "
            "(.ci/run does this)"
        )
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, *, durable: bool = False) -> None:
        # durable: PostgreSQL's own defaults (fsync, synchronous commit, full
        # page writes), for benchmarks; the test suite's server skips them.
        self.durable = durable
        self.bindir = _bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jcs-pg-"))
        self.data = self.dir / "data"
        self._as_root = os.geteuid() == 0
        self._counter = 0
        self._templates: dict[str, str] = {}
        # Admin statements (CREATE/DROP DATABASE) go over one asyncpg
        # connection owned by a loop in a thread of its own: tests run each
        # on their own event loop, and a psql process per statement is slow.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._admin: Any = None

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        fast = (
            ""
            if self.durable
            else ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off ")
        )
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            f"{fast}-c max_connections=300"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not start")

    def url(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, daemon=True)
            self._thread.start()
            self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(120)

    async def _execute(self, sql: str) -> None:
        if self._admin is None:
            self._admin = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user="postgres", database="postgres"
            )
        await self._admin.execute(sql)

    def _new_name(self) -> str:
        self._counter += 1
        return f"jcs_{os.getpid()}_{self._counter}"

    def new_database(self, template: str | None = None) -> str:
        """A fresh database, empty or a copy of ``template`` (a database no
        one is connected to); returns its async SQLAlchemy URL."""
        name = self._new_name()
        clause = f" TEMPLATE {template}" if template else ""
        self._call(self._execute(f"CREATE DATABASE {name}{clause}"))
        return self.url(name)

    def template(self, key: str, build: Any) -> str:
        """The name of a template database made once per server by
        ``build(url)`` (e.g. migrated to head); copies of it are cheap."""
        if key not in self._templates:
            name = f"jcs_template_{key}"
            self._call(self._execute(f"CREATE DATABASE {name}"))
            build(self.url(name))
            self._templates[key] = name
        return self._templates[key]

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``new_database`` (connections left open
        by the test are ended)."""
        name = url.rsplit("/", 1)[1]
        self._call(self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def stop(self) -> None:
        if self._loop is not None:
            if self._admin is not None:
                with contextlib.suppress(Exception):  # the server goes anyway
                    self._call(self._admin.close(timeout=5))
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop.close()
            self._loop = None
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
