"""End-to-end fixtures: a real ``jcs serve`` process on a free loopback port
shared by the session, the CLI and raw HTTP against it. Tests that restart or
kill a server start their own ``JcsServer``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_support import Cli, JcsServer, api_client, running_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JcsServer]:
    """The shared server of this session; tests use their own bucket names."""
    with running_server(tmp_path_factory.mktemp("jcs-server")) as s:
        yield s


@pytest.fixture
def cli(server: JcsServer, tmp_path: Path) -> Cli:
    work = tmp_path / "cwd"
    work.mkdir()
    return Cli(server.endpoint, server.key, work)


@pytest.fixture
def api(server: JcsServer) -> Iterator[httpx.Client]:
    with api_client(server) as client:
        yield client
