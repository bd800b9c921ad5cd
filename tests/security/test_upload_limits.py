"""One upload request is bounded work (issue 8, item 3).

Files per ``POST /v1/object/upload`` are capped (``max_upload_files``): the
(cap+1)-th file part is refused before anything of it is stored, with a
BadArgument naming the limit and how many files were sent, and what was
staged before it is removed (no object, no block file, no layout row). A
client that goes away mid-upload, or after sending everything but before
the commit, leaves nothing either. Within the cap, a batch of many small
files (stored in batches, in parallel with the body's arrival) is stored
byte for byte, under every redundancy.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jcs_helpers import Api, expect_error, file_parts, info_part, multipart
from sqlalchemy import func, select

from jointcloud.api.jcs.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.core import uploads as upload_path
from jointcloud.meta import tables as t
from support.asgi import http_scope

CAP = 5


@pytest.fixture
def cap() -> int:
    return CAP


@pytest.fixture
async def ctx(tmp_path: Path, database_url: str, cap: int) -> AsyncIterator[Context]:
    """The suite's context, with ``max_upload_files`` = ``cap``."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        local_roots=(tmp_path,),
        endpoint_allow=("127.0.0.1",),
        max_upload_files=cap,
    )
    context = await Context.open(settings)
    await context.bootstrap()
    yield context
    await context.close()


async def _count(ctx: Context, table: Any) -> int:
    async with ctx.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _rows(ctx: Context) -> tuple[int, int, int]:
    return (
        await _count(ctx, t.objects),
        await _count(ctx, t.layouts),
        await _count(ctx, t.blocks),
    )


def _files(n: int, seed: int = 0, prefix: str = "d") -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(f"{prefix}/f{i:05d}.bin", rng.randbytes(rng.randrange(0, 2049))) for i in range(n)]


class _Counting:
    """Counts the files handed to the block store."""

    def __init__(self, ctx: Context) -> None:
        self.files = 0
        store = ctx.store
        stage, stage_many = store.stage, store.stage_many

        async def counted_stage(*a: Any, **kw: Any) -> Any:
            self.files += 1
            return await stage(*a, **kw)

        async def counted_many(user_id: int, datas: Any, *a: Any, **kw: Any) -> Any:
            self.files += len(datas)
            return await stage_many(user_id, datas, *a, **kw)

        store.stage = counted_stage  # type: ignore[method-assign]
        store.stage_many = counted_many  # type: ignore[method-assign]


async def test_exactly_cap_files_are_stored(api: Api) -> None:
    pkg = await api.package("cap")
    files = _files(CAP)
    uploaded = await api.upload(pkg, files)
    for o, (_, data) in zip(uploaded, files, strict=True):
        assert await api.download(o["objectID"]) == data


@pytest.mark.parametrize("sent", [CAP + 1, 8 * CAP])
async def test_over_cap_is_refused_and_leaves_nothing(api: Api, ctx: Context, sent: int) -> None:
    pkg = await api.package("over")
    keep = await api.upload_one(pkg, "keep.txt", b"kept")
    blocks, rows = api.all_block_files(), await _rows(ctx)
    counting = _Counting(ctx)
    # A large file (streamed, not batched) among them: its blocks go as well.
    files = _files(sent)
    files[2] = ("d/large.bin", os.urandom(upload_path.SMALL_FILE + 4096))
    r = await api.upload_raw([info_part({"packageID": pkg}), *file_parts(files)])
    msg = expect_error(r, "BadArgument", 400)
    assert f"at most {CAP}" in msg and f"{sent} sent" in msg, msg
    assert counting.files <= CAP  # nothing of the (cap+1)-th file or later was stored
    assert [o["path"] for o in await api.objects(pkg)] == ["keep.txt"]
    assert api.all_block_files() == blocks
    assert await _rows(ctx) == rows
    assert await api.download(keep["objectID"]) == b"kept"


async def test_over_cap_overwrite_keeps_the_old_objects(api: Api, ctx: Context) -> None:
    pkg = await api.package("over2")
    old = await api.upload(pkg, _files(CAP, seed=1))
    blocks, rows = api.all_block_files(), await _rows(ctx)
    r = await api.upload_raw([info_part({"packageID": pkg}), *file_parts(_files(CAP + 1, 2))])
    expect_error(r, "BadArgument", 400)
    assert api.all_block_files() == blocks
    assert await _rows(ctx) == rows
    for o, (_, data) in zip(old, _files(CAP, seed=1), strict=True):
        assert await api.download(o["objectID"]) == data


def test_cap_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).max_upload_files == 1000
    monkeypatch.setenv("JCS_MAX_UPLOAD_FILES", "7")
    assert Settings.load(str(tmp_path)).max_upload_files == 7


@pytest.mark.parametrize("cap", [1000])
async def test_a_thousand_small_files_stored_byte_exactly(api: Api, ctx: Context) -> None:
    pkg = await api.package("many")
    files = _files(1000, seed=3)
    files[0] = ("d/empty", b"")
    uploaded = await api.upload(pkg, files)  # checks path, size and SHA-256 of each
    assert len({o["objectID"] for o in uploaded}) == 1000
    # Each its own layout: inline in the database (small files) or blocks.
    assert (await _rows(ctx))[1] >= 1000
    for o, (_, data) in zip(uploaded, files, strict=True):
        assert await api.download(o["objectID"]) == data
    # ...and again over the same paths (overwrite in bulk): new bytes, same IDs.
    again = _files(1000, seed=4)
    again[0] = ("d/empty", b"now full")
    over = await api.upload(pkg, again)
    assert [o["objectID"] for o in over] == [o["objectID"] for o in uploaded]
    for o, (_, data) in list(zip(over, again, strict=True))[::37]:
        assert await api.download(o["objectID"]) == data
    await api.gc()  # the replaced layouts go
    assert (await _rows(ctx))[:2] == (1000, 1000)


@pytest.mark.parametrize("cap", [1000])
@pytest.mark.parametrize(
    "redundancy",
    [
        {"type": "rep", "repCount": 2},
        {"type": "ec", "k": 2, "n": 3, "chunkSize": 4096},  # several segments per file
    ],
)
async def test_batched_small_files_under_redundancy(api: Api, redundancy: dict[str, Any]) -> None:
    await api.add_spaces(2)
    pkg = await api.package("red", redundancy=redundancy)
    rng = random.Random(5)
    sizes = [0, 1, 100, 4095, 8192, 8193, 70_000, 300_000]
    files = [(f"r/{i}", rng.randbytes(n)) for i, n in enumerate(sizes)]
    uploaded = await api.upload(pkg, files, redundancy=redundancy)
    for o, (_, data) in zip(uploaded, files, strict=True):
        assert o["redundancy"] == redundancy
        assert await api.download(o["objectID"]) == data
        if len(data) > 9000:  # a range across a segment boundary
            assert await api.download(o["objectID"], offset=8000, length=1000) == data[8000:9000]


# --- the client goes away ---------------------------------------------------


async def _drive(ctx: Context, key: str, body: bytes, ctype: str, cut: int | None) -> list[Any]:
    """POST ``body`` straight into the ASGI app; after ``cut`` bytes (None:
    after all of it) every further receive says the client disconnected."""
    app = create_app(ctx, background=False)
    scope = http_scope(
        "POST",
        "/v1/object/upload",
        [
            (b"host", b"jcs.test"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    )
    end = len(body) if cut is None else cut
    chunks = [body[i : i + 4096] for i in range(0, end, 4096)]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            await asyncio.sleep(0)
            more = bool(chunks) or cut is not None
            return {"type": "http.request", "body": chunk, "more_body": more}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("cap", [1000])
@pytest.mark.parametrize("where", ["mid-body", "before-commit"])
async def test_client_gone_leaves_nothing(
    api: Api, ctx: Context, root_key: str, where: str
) -> None:
    pkg = await api.package("gone")
    blocks, rows = api.all_block_files(), await _rows(ctx)
    counting = _Counting(ctx)
    files = _files(600, seed=6)
    files[300] = ("d/large.bin", os.urandom(upload_path.SMALL_FILE + 4096))
    body, ctype = multipart([info_part({"packageID": pkg}), *file_parts(files)])
    cut = (len(body) * 3) // 4 if where == "mid-body" else None
    sent = await _drive(ctx, root_key, body, ctype, cut)
    assert sent[0]["status"] == 400  # nobody reads it; it says what happened
    assert b"disconnected" in b"".join(m.get("body", b"") for m in sent[1:])
    assert counting.files > 0  # it had stored some before the client went
    assert await api.objects(pkg) == []
    await api.gc()
    assert api.all_block_files() == blocks
    assert await _rows(ctx) == rows
