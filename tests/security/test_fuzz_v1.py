"""Property-based fuzz of every v1 endpoint in the app's own OpenAPI document
(schemathesis): valid and invalid requests, authenticated with the root key,
against a server on SQLite that holds a little of everything (spaces with
files, a bucket, a package, objects, a multipart upload, a sync task). No
request may answer a server error (status ≥ 500).

The server runs in a thread of its own (its event loop owns the context);
schemathesis reaches it over loopback HTTP with its ordinary ``requests``
transport, so query strings and bodies are parsed as a real client's would be.
``JCS_FUZZ_EXAMPLES`` raises the number of examples per operation (and turns
on fresh randomness) for a longer local run; CI runs the fixed, derandomized
default in well under a minute.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings

from jointcloud.api.jcs.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from support.trees import write_tree

EXAMPLES = int(os.environ.get("JCS_FUZZ_EXAMPLES", "20"))


@dataclass
class Server:
    url: str
    key: str


def _serve(settings_: Settings, sock: socket.socket, box: dict[str, Any]) -> None:
    async def main() -> None:
        ctx = await Context.open(settings_)
        try:
            await ctx.bootstrap()
            app = create_app(ctx, background=False)  # no background jobs: requests only
            server = uvicorn.Server(
                uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
            )
            box["server"] = server
            await server.serve(sockets=[sock])
        finally:
            await ctx.close()

    try:
        asyncio.run(main())
    except BaseException as exc:  # reported by the fixture
        box["error"] = exc


def _seed(url: str, key: str, tmp: Path) -> None:
    """A little of everything, with small IDs the fuzz is likely to hit."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:

        def post(path: str, body: Any) -> Any:
            r = c.post(path, json=body)
            assert r.status_code == 200, (path, r.text)
            return r.json()["data"]

        spaces = []
        for n in (1, 2):
            root = tmp / f"space{n}"
            write_tree(root / "data", {"a.txt": b"alpha", "sub/b.log": b"beta"})
            body = {"name": f"fuzz{n}", "storage": {"type": "Local", "path": str(root)}}
            spaces.append(post("/v1/userSpace/create", body)["userSpace"]["userSpaceID"])
        bid = post("/v1/bucket/create", {"name": "fuzz"})["bucket"]["bucketID"]
        pid = post("/v1/package/create", {"bucketID": bid, "name": "p"})["package"]["packageID"]
        files = {"info": (None, f'{{"packageID": {pid}}}')}
        r = c.post("/v1/object/upload", files=[*files.items(), ("files", ("x.txt", b"x"))])
        assert r.status_code == 200, r.text
        post("/v1/object/newMultipartUpload", {"packageID": pid, "path": "mp"})
        post(
            "/v1/userSpace/createPackage",
            {"userSpaceID": spaces[0], "path": "data", "bucketID": bid, "name": "imported"},
        )
        post(
            "/v1/spaceSync/createTask",
            {
                "srcUserSpaceID": spaces[0],
                "srcPath": "data",
                "dests": [{"userSpaceID": spaces[1], "path": "copy"}],
                "trigger": {"type": "interval", "seconds": 3600},
            },
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite+aiosqlite:///{tmp / 'meta.db'}",
        local_roots=(tmp,),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    box: dict[str, Any] = {}
    thread = threading.Thread(target=_serve, args=(settings_, sock, box), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (box.get("server") is not None and box["server"].started):
        assert "error" not in box, box["error"]
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    key = (settings_.data_dir / "root.key").read_text().strip()
    _seed(url, key, tmp)
    try:
        yield Server(url, key)
    finally:
        box["server"].should_exit = True
        thread.join(30)
        sock.close()


# The OpenAPI document does not depend on the context, so it is read once
# at collection (one test per operation); requests go to the running server.
# (schemathesis' lazy ``from_fixture`` schemas do not work with pytest 9.)
schema = schemathesis.openapi.from_dict(create_app(cast(Context, None), background=False).openapi())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="JCS_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_server_errors(case: Any, server: Server) -> None:
    response = case.call(
        base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=60
    )
    what = (
        f"{case.method} {case.formatted_path} answered {response.status_code}: "
        f"{response.text[:500]}\n{case.as_curl_command()}"
    )
    if response.status_code == 503:
        # A user space that cannot be reached (a generated endpoint, a test
        # of a broken space) is named in a 503; never an unexpected error.
        body = response.json()
        assert body["code"] == "OperationFailed", what
        assert "internal error" not in body["message"], what
        return
    assert response.status_code < 500, what
    if response.status_code >= 400 and case.method != "HEAD" and response.status_code != 405:
        body = response.json()
        assert set(body) == {"code", "message", "data"} and body["data"] is None, what
