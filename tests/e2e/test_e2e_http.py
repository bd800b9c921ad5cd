"""Raw HTTP against the real server, on data the CLI uploaded."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from e2e_support import Cli, make_package


def test_ranged_download(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    data = os.urandom(1024 * 1024 + 7)
    size = len(data)
    src = tmp_path / "ranged.bin"
    src.write_bytes(data)
    pkg = {"packageID": make_package(api, "ranges", "p")}
    cli("put", str(src), "ranges/p/dir/ranged.bin")

    found = api.get(
        "/v1/object/listByPath",
        params={"packageID": pkg["packageID"], "path": "dir/ranged.bin"},
    ).json()["data"]["objects"]
    assert len(found) == 1 and found[0]["size"] == str(size)
    oid = found[0]["objectID"]

    def ranged(header: str, url: str = "/v1/object/download") -> httpx.Response:
        params = {"objectID": oid} if "ByPath" not in url else None
        if params is None:
            params = {"packageID": pkg["packageID"], "path": "dir/ranged.bin"}
        return api.get(url, params=params, headers={"Range": header})

    r = ranged("bytes=1000-1999")
    assert r.status_code == 206
    assert r.content == data[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{size}"
    assert r.headers["content-length"] == "1000"

    r = ranged("bytes=-500")  # suffix
    assert r.status_code == 206 and r.content == data[-500:]

    r = ranged(f"bytes={size - 10}-")  # open-ended
    assert r.status_code == 206 and r.content == data[-10:]

    r = ranged("bytes=524288-", "/v1/object/downloadByPath")
    assert r.status_code == 206 and r.content == data[524288:]

    r = ranged(f"bytes={size}-")  # starts past the end
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    assert r.json()["code"] == "BadArgument"

    r = api.get("/v1/object/download", params={"objectID": oid, "offset": 5, "length": 100})
    assert r.status_code == 200 and r.content == data[5:105]

    r = api.get("/v1/bucket/download", params={"objectID": oid})  # the seed's spelling
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert "ranged.bin" in r.headers["content-disposition"]
