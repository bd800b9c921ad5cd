"""Fixtures for the one conformance suite every space backend must pass.

Each backend is built through ``open_space`` from the JCS user-space JSON, so the
suite also exercises the registry: ``make_space(sub)`` opens a space whose
``rootPath`` is a fresh per-test directory (plus ``sub``) in the same storage.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # makes `support` importable

from jointcloud.spaces.base import Space
from jointcloud.spaces.local import LocalSpace
from jointcloud.spaces.registry import open_space
from jointcloud.spaces.rules import SpaceRules
from support.s3server import S3Server, free_port, s3_server_fixture

RULES = SpaceRules.unrestricted()  # these tests exercise backends, not operator rules

# "local-tree" is a local space as transfer tasks open user file trees:
# commits skip the per-file fsync and ``flush`` makes them durable.
BACKENDS = ["memory", "local", "local-tree", "s3"]

s3_server = s3_server_fixture(scope="session")

MakeSpace = Callable[..., Space]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """(storage, credential, base rootPath) for one test, isolated from other tests."""
    base = f"t-{uuid.uuid4().hex[:12]}"
    if backend == "memory":
        return {"storage": {"type": "Memory", "name": base}, "credential": None, "base": ""}
    if backend in ("local", "local-tree"):
        store = {"type": "Local", "path": str(tmp_path / "store")}
        return {"storage": store, "credential": None, "base": "", "durable": backend == "local"}
    server: S3Server = request.getfixturevalue("s3_server")
    return {"storage": server.storage(), "credential": server.credential(), "base": base}


@pytest.fixture
def make_space(storage: dict[str, Any]) -> MakeSpace:
    def make(sub: str = "") -> Space:
        root = "/".join(p for p in (storage["base"], sub) if p)
        return open_space(
            storage["storage"],
            storage["credential"],
            root,
            durable=storage.get("durable", True),
            rules=RULES,
            create=True,  # a new space: a Local one's directory is made
        )

    return make


@pytest.fixture
def space(make_space: MakeSpace) -> Space:
    return make_space()


@pytest.fixture
def dead_space(backend: str, tmp_path: Path) -> Iterator[Space]:
    """A space of the same backend that cannot be reached."""
    if backend == "memory":
        sp = open_space(
            {"type": "Memory", "name": f"dead-{uuid.uuid4().hex}"}, None, "", rules=RULES
        )
        sp.available = False  # type: ignore[attr-defined]
        yield sp
    elif backend in ("local", "local-tree"):
        blocker = tmp_path / "a-regular-file"
        blocker.write_bytes(b"not a directory")
        # every path below a file is ENOTDIR
        yield LocalSpace(blocker / "sub", durable=backend == "local")
    else:
        port = free_port()  # nothing listens here
        storage = {
            "type": "S3",
            "endpoint": f"http://127.0.0.1:{port}",
            "bucket": "jcs-test",
            "pathStyle": True,
        }
        cred = {"type": "AK", "accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "x" * 40}
        yield open_space(storage, cred, "", rules=RULES)
