"""The fast lane of the hot v1 routes (``api/jcs/fastlane.py``) answers
exactly what FastAPI answers: every request below is sent to an app with
the lane and to one without it, and the two answers must match (status,
headers but the request id and date, body). Plain requests must really take
the lane, and every other shape must reach FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jcs_helpers import Api, file_parts, info_part, multipart
from starlette.types import ASGIApp, Receive, Scope, Send

from jointcloud.api.jcs.app import create_app
from jointcloud.api.jcs.fastlane import FastLane
from jointcloud.context import Context

VOLATILE = {"x-request-id", "date"}


class Recorder:
    """Stands between the lane and FastAPI: which paths reached FastAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture
async def both(
    ctx: Context, client: httpx.AsyncClient
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Recorder]]:
    """(through the lane, through FastAPI only, what reached FastAPI behind the lane)."""
    fast_app = create_app(ctx)
    stack = fast_app.build_middleware_stack()
    lane = stack.app  # type: ignore[attr-defined]
    assert isinstance(lane, FastLane)
    recorder = Recorder(lane.app)
    lane.app = recorder
    fast_app.middleware_stack = stack
    slow_app = create_app(ctx, fast_lane=False)
    headers = {"Authorization": client.headers["Authorization"]}
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=fast_app), base_url="http://jcs.test", headers=headers
        ) as fast,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=slow_app), base_url="http://jcs.test", headers=headers
        ) as slow,
    ):
        yield fast, slow, recorder


def _same(a: httpx.Response, b: httpx.Response, what: str) -> None:
    assert a.status_code == b.status_code, (what, a.status_code, b.status_code, a.text, b.text)
    strip = lambda r: sorted((k, v) for k, v in r.headers.items() if k not in VOLATILE)  # noqa: E731
    assert strip(a) == strip(b), what
    assert a.content == b.content, (what, a.text[:300], b.text[:300])


async def test_downloads_answer_as_fastapi_does(
    api: Api, both: tuple[httpx.AsyncClient, httpx.AsyncClient, Recorder]
) -> None:
    fast, slow, recorder = both
    pkg = await api.package("fl")
    body = bytes(range(256)) * 40
    oid = (await api.upload_one(pkg, "dir/a b.bin", body))["objectID"]
    big = (await api.upload_one(pkg, "big", body * 30))["objectID"]

    plain: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
        ("GET", "/v1/object/download", {"objectID": oid}, {}),
        ("HEAD", "/v1/object/download", {"objectID": oid}, {}),
        ("GET", "/v1/bucket/download", {"objectID": oid}, {}),
        ("GET", "/v1/object/download", {"objectID": big}, {}),
        ("GET", "/v1/object/download", {"objectID": oid, "offset": 10, "length": 20}, {}),
        ("GET", "/v1/object/download", {"objectID": big, "offset": 100_000}, {}),
        ("GET", "/v1/object/download", {"objectID": oid, "offset": 0, "length": 0}, {}),
        ("GET", "/v1/object/download", {"objectID": oid, "offset": 10**12}, {}),
        ("GET", "/v1/object/download", {"objectID": oid}, {"Range": "bytes=5-9"}),
        ("GET", "/v1/object/download", {"objectID": oid}, {"Range": "bytes=-7"}),
        ("GET", "/v1/object/download", {"objectID": oid}, {"Range": "bytes=999999-"}),
        ("GET", "/v1/object/download", {"objectID": oid, "offset": 1}, {"Range": "bytes=1-2"}),
        ("GET", "/v1/object/download", {"objectID": 987654321}, {}),
        ("GET", "/v1/object/download", {"objectID": oid, "other": "x"}, {}),
        ("GET", "/v1/object/download", {"objectID": oid}, {"Authorization": "Bearer nope"}),
        ("GET", "/v1/object/download", {"objectID": oid}, {"Authorization": "Basic abc"}),
        ("GET", "/v1/object/downloadByPath", {"packageID": pkg, "path": "dir/a b.bin"}, {}),
        ("HEAD", "/v1/object/downloadByPath", {"packageID": pkg, "path": "dir/a b.bin"}, {}),
        ("GET", "/v1/object/downloadByPath", {"packageID": pkg, "path": "missing"}, {}),
        ("GET", "/v1/object/downloadByPath", {"packageID": pkg, "path": ""}, {}),
        ("GET", "/v1/object/downloadByPath", {"packageID": 987654321, "path": "x"}, {}),
        ("GET", "/v1/object/downloadByPath", {"packageID": pkg, "path": "/../etc"}, {}),
    ]
    odd: list[tuple[str, str, Any, dict[str, str]]] = [
        ("GET", "/v1/object/download", {}, {}),
        ("GET", "/v1/object/download", {"objectID": 0}, {}),
        ("GET", "/v1/object/download", {"objectID": "abc"}, {}),
        ("GET", "/v1/object/download", {"objectID": "+5"}, {}),
        ("GET", "/v1/object/download", {"objectID": "\u0661"}, {}),
        ("GET", "/v1/object/download", {"objectID": "9" * 19}, {}),
        ("GET", "/v1/object/download", {"objectID": "9" * 400}, {}),
        ("GET", "/v1/object/download", [("objectID", oid), ("objectID", big)], {}),
        ("GET", "/v1/object/download", {"objectID": oid, "offset": -1}, {}),
        ("GET", "/v1/object/download", {"objectID": oid, "length": ""}, {}),
        ("GET", "/v1/object/download", {"objectID": oid, "length": "1e3"}, {}),
        ("GET", "/v1/object/download", {"objectID": "x"}, {"Authorization": "Bearer nope"}),
        ("GET", "/v1/object/downloadByPath", {"packageID": pkg}, {}),
        ("GET", "/v1/object/downloadByPath", {"path": "x"}, {}),
        (
            "GET",
            "/v1/object/downloadByPath",
            [("packageID", pkg), ("path", "a"), ("path", "b")],
            {},
        ),
        ("POST", "/v1/object/download", {"objectID": oid}, {}),
        ("GET", "/v1/object/download", [("objectID", oid), ("n", "1"), ("n", "1")], {}),
    ]
    for method, path, params, headers in plain + odd:
        what = f"{method} {path} {params} {headers}"
        a = await fast.request(method, path, params=params, headers=headers)
        b = await slow.request(method, path, params=params, headers=headers)
        _same(a, b, what)
    # Every odd shape went on to FastAPI, and no plain one did.
    assert len(recorder.seen) == len(odd), recorder.seen
    no_key = await fast.get(
        "/v1/object/download", params={"objectID": oid}, headers={"Authorization": ""}
    )
    assert no_key.status_code == 401 and "missing API key" in no_key.json()["message"]


async def test_uploads_answer_as_fastapi_does(
    api: Api, both: tuple[httpx.AsyncClient, httpx.AsyncClient, Recorder]
) -> None:
    fast, slow, recorder = both
    pkg = await api.package("up")

    async def send(client: httpx.AsyncClient, parts: list[tuple[str, str | None, bytes]]) -> Any:
        body, ctype = multipart(parts)
        return await client.post("/v1/object/upload", content=body, headers={"Content-Type": ctype})

    failing: list[list[tuple[str, str | None, bytes]]] = [
        [],
        [("files", "a", b"x")],
        [info_part(b"{not json")],
        [info_part({"packageID": "1"}), *file_parts([("a", b"x")])],
        [info_part({"packageID": 987654321}), *file_parts([("a", b"x")])],
        [info_part({"packageID": pkg}), ("other", "a", b"x")],
        [info_part({"packageID": pkg}), *file_parts([("", b"x")])],
        [info_part({"packageID": pkg, "userID": 987654}), *file_parts([("a", b"x")])],
    ]
    for parts in failing:
        a, b = await send(fast, parts), await send(slow, parts)
        _same(a, b, repr(parts)[:200])
        assert a.status_code in (400, 403, 404), a.text
    a = await fast.post("/v1/object/upload", content=b"x", headers={"Content-Type": "text/plain"})
    b = await slow.post("/v1/object/upload", content=b"x", headers={"Content-Type": "text/plain"})
    _same(a, b, "not a form")

    # A good upload through each: the same answer but for IDs and times, and
    # each object reads back through the other app.
    made = []
    for client, name in ((fast, "via-fast"), (slow, "via-slow")):
        r = await send(
            client, [info_part({"packageID": pkg}), *file_parts([(name, b"hi " + name.encode())])]
        )
        assert r.status_code == 200, r.text
        [obj] = r.json()["data"]["uploadeds"]
        made.append(obj)
    shape = [{k for k in o if k not in ("objectID", "createTime", "updateTime")} for o in made]
    assert shape[0] == shape[1]
    for obj, other in zip(made, (slow, fast), strict=True):
        got = await other.get("/v1/object/download", params={"objectID": obj["objectID"]})
        assert got.content == b"hi " + obj["path"].encode()
    assert recorder.seen == []  # every upload above took the lane


async def test_listings_answer_as_fastapi_does(
    api: Api, both: tuple[httpx.AsyncClient, httpx.AsyncClient, Recorder]
) -> None:
    fast, slow, recorder = both
    pkg = await api.package("ls")
    for path in ("a/1", "a/2", "a/b/3", "c", "d/ü 4"):
        await api.upload_one(pkg, path, b"x")
    listing = "/v1/object/listByPath"
    plain: list[Any] = [
        {"packageID": pkg},
        {"packageID": pkg, "path": ""},
        {"packageID": pkg, "path": "a", "isPrefix": "true"},
        {"packageID": pkg, "path": "a/", "isPrefix": "true", "noRecursive": "true"},
        {"packageID": pkg, "path": "a/1", "isPrefix": "false"},
        {"packageID": pkg, "path": "", "isPrefix": "true", "maxKeys": 2},
        {"packageID": pkg, "path": "", "isPrefix": "true", "maxKeys": 0},
        {"packageID": pkg, "isPrefix": "true", "continuationToken": "not a token"},
        {"packageID": pkg, "path": "/../etc", "isPrefix": "true"},
        {"packageID": 987654321, "isPrefix": "true"},
    ]
    odd: list[Any] = [
        {},
        {"packageID": "x"},
        {"packageID": pkg, "isPrefix": "yes"},  # FastAPI's reading of a flag
        {"packageID": pkg, "isPrefix": "1", "noRecursive": "TRUE"},
        {"packageID": pkg, "isPrefix": "maybe"},
        {"packageID": pkg, "maxKeys": -1},
        {"packageID": pkg, "maxKeys": "ten"},
        [("packageID", pkg), ("path", "a"), ("path", "c")],
        # a name the route does not read, given twice: refused either way
        [("packageID", pkg), ("isPrefix", "true"), ("x", "1"), ("x", "2")],
    ]
    for params in plain + odd:
        a, b = await fast.get(listing, params=params), await slow.get(listing, params=params)
        _same(a, b, repr(params))
    assert len(recorder.seen) == len(odd), recorder.seen
    # Paging through the lane reaches every object once.
    seen: list[str] = []
    token = None
    while True:
        params = {"packageID": pkg, "isPrefix": "true", "maxKeys": 2}
        if token:
            params["continuationToken"] = token
        data = (await fast.get(listing, params=params)).json()["data"]
        seen += [o["path"] for o in data["objects"]]
        token = data.get("nextContinuationToken")
        if not token:
            break
    assert seen == ["a/1", "a/2", "a/b/3", "c", "d/ü 4"]
