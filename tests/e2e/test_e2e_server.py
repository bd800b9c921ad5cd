"""The server process itself: first-start key, restarts, and a SIGKILL in the
middle of an upload."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
from e2e_support import Cli, JcsServer, api_client

# stdout of a test server is a file, not a terminal: the key is not shown.
KEY_LINE = re.compile(
    r"root API key saved to (?P<file>.+) \(not printed: stdout is not a terminal\)"
)


BOUNDARY = "e2e-sigkill-boundary-7d0c"


def _part_header(name: str, filename: str | None = None) -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n\r\n".encode()


def test_first_start_key_then_sigkill_mid_upload_then_restart(tmp_path: Path) -> None:
    """One server's life: the first start writes the root key to root.key
    (mode 0600) and, its stdout being no terminal, names the file without
    printing the key; a SIGKILL lands in the middle of a big upload; the
    second start says nothing of a key, keeps root.key, and shows no trace
    of the upload."""
    own_server = JcsServer(data_dir=tmp_path / "data", log_dir=tmp_path)
    try:
        own_server.start()
        _first_start_named_the_key_file(own_server)
        key = own_server.key
        _sigkill_mid_upload_then_restart(own_server)
        second = own_server.output()
        assert "root API key" not in second and key not in second, second
        assert own_server.key == key  # root.key untouched by the restart
        # The CLI's last resort: the key from --data-dir (no JCS_API_KEY).
        cli = Cli(own_server.endpoint, key, tmp_path)
        r = cli.run("--data-dir", str(own_server.data_dir), "bucket", "ls", env={"JCS_API_KEY": ""})
        assert r.returncode == 0 and "crash" in r.stdout, r.stderr
    finally:
        own_server.stop()


def _first_start_named_the_key_file(server: JcsServer) -> None:
    first = server.output()
    found = KEY_LINE.findall(first)
    assert len(found) == 1, first
    assert Path(found[0]) == server.data_dir / "root.key"
    key = (server.data_dir / "root.key").read_text().strip()
    assert key and key not in first, first
    assert stat.S_IMODE((server.data_dir / "root.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700


def _sigkill_mid_upload_then_restart(own_server: JcsServer) -> None:
    with api_client(own_server) as api:
        bucket = api.post("/v1/bucket/create", json={"name": "crash"}).json()["data"]["bucket"]
        pkg = api.post(
            "/v1/package/create", json={"bucketID": bucket["bucketID"], "name": "p"}
        ).json()["data"]["package"]
        pid = pkg["packageID"]
        r = api.post(
            "/v1/object/upload",
            data={"info": json.dumps({"packageID": pid})},
            files=[("files", ("keep.bin", b"old content", "application/octet-stream"))],
        )
        assert r.status_code == 200, r.text

    # One batch: a replacement of keep.bin, then a big.bin that never ends.
    reached = threading.Event()
    stop = threading.Event()
    outcome: list[object] = []

    def body() -> Iterator[bytes]:
        yield _part_header("info") + json.dumps({"packageID": pid}).encode() + b"\r\n"
        yield _part_header("files", "keep.bin") + b"new content\r\n"
        yield _part_header("files", "big.bin")
        chunk = os.urandom(1024 * 1024)
        sent = 0
        while not stop.is_set() and sent < 1024**3:
            yield chunk
            sent += len(chunk)
            if sent >= 24 * len(chunk):
                reached.set()
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    def upload() -> None:
        try:
            resp = httpx.post(
                own_server.endpoint + "/v1/object/upload",
                content=body(),
                headers={
                    "Authorization": f"Bearer {own_server.key}",
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                },
                timeout=60,
            )
            outcome.append(resp.status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    assert reached.wait(30), "the upload never got going"
    own_server.kill()
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome

    own_server.start()
    with api_client(own_server) as api:
        listing = api.get(
            "/v1/object/listByPath", params={"packageID": pid, "path": "", "isPrefix": True}
        ).json()["data"]
        assert [o["path"] for o in listing["objects"]] == ["keep.bin"]
        exact = api.get(
            "/v1/object/listByPath",
            params={"packageID": pid, "path": "big.bin", "isPrefix": False},
        ).json()["data"]
        assert exact["objects"] == []
        r = api.get("/v1/object/downloadByPath", params={"packageID": pid, "path": "big.bin"})
        assert r.status_code == 404 and r.json()["code"] == "DataNotFound"
        # The batch was all-or-nothing: keep.bin still has its old bytes.
        r = api.get("/v1/object/downloadByPath", params={"packageID": pid, "path": "keep.bin"})
        assert r.status_code == 200 and r.content == b"old content"

    cli = Cli(own_server.endpoint, own_server.key, own_server.log_dir)
    out = cli("ls", "-r", "crash/p")
    assert "keep.bin" in out and "big.bin" not in out
