"""A v1 upload keeps the content type each file's form part was sent with
(the seed's own example sends ``test.txt`` as ``text/plain``), as an S3 PUT
keeps its ``Content-Type``: an object uploaded through v1 and read through
S3 or a share link comes back with it. Before, every v1 upload was stored
with none (left out since the cross-protocol review of 2026-12-07)."""

from __future__ import annotations

import httpx
from core_support import World
from test_objects_support import at, package
from test_v1_prefixes_of_s3_keys import root_client

BOUNDARY = "jcstestboundary"


def form(package_id: int, files: list[tuple[str, str | None, bytes]]) -> bytes:
    out = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="info"\r\n\r\n'
        f'{{"packageID": {package_id}}}\r\n'.encode()
    ]
    for name, ctype, data in files:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        )
        if ctype is not None:
            head += f"Content-Type: {ctype}\r\n"
        out.append(head.encode() + b"\r\n" + data + b"\r\n")
    out.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(out)


async def upload(
    client: httpx.AsyncClient, package_id: int, files: list[tuple[str, str | None, bytes]]
) -> httpx.Response:
    return await client.post(
        "/v1/object/upload",
        content=form(package_id, files),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


async def test_each_file_keeps_the_content_type_it_was_sent_with(world: World) -> None:
    ctx = world.ctx
    pkg = await package(world)
    big = b"b" * (3 << 20)  # streamed, not batched
    files = [
        ("test.txt", "text/plain", b"testdata"),
        ("a%2Fb%2Ftest2.txt", None, b"testdata2"),
        ("photo.png", "image/png", b"\x89PNG" + b"p" * 5000),
        ("big.bin", "application/x-big; v=1", big),
    ]
    async with root_client(ctx) as client:
        r = await upload(client, pkg.package_id, files)
        assert r.status_code == 200, r.text
        want = {
            "test.txt": "text/plain",
            "a/b/test2.txt": None,
            "photo.png": "image/png",
            "big.bin": "application/x-big; v=1",
        }
        for path, ctype in want.items():
            info = await ctx.objects.head(world.alice, at(pkg, path))
            assert info.meta.content_type == ctype, path
        # The v1 download answers what the seed says, whatever was stored.
        oid = r.json()["data"]["uploadeds"][0]["objectID"]
        got = await client.get("/v1/object/download", params={"objectID": oid})
        assert got.content == b"testdata"
        assert got.headers["content-type"] == "application/octet-stream"


async def test_a_content_type_past_its_limit_is_refused_and_nothing_is_stored(
    world: World,
) -> None:
    ctx = world.ctx
    pkg = await package(world)
    files = [("ok.txt", "text/plain", b"fine"), ("long.txt", "text/" + "x" * 300, b"no")]
    async with root_client(ctx) as client:
        r = await upload(client, pkg.package_id, files)
    assert r.status_code == 400, r.text
    assert "content_type is 305 characters long; at most 255" in r.json()["message"]
    listing = await ctx.objects.list_by_path(
        world.alice, pkg.package_id, "", is_prefix=True, no_recursive=False
    )
    assert listing.objects == []
