"""Link sharing in a real browser: Playwright driving Debian's Chromium
(``/usr/bin/chromium``; scripts/install.sh --test installs it) against the
share app served by uvicorn on a loopback port in the test's event loop.
Opens a share page and sees the image preview, clicks download and compares
the bytes, opens a listing and clicks into an item, downloads a zip; the
screenshots are kept under the test's tmp dir (their paths are printed)."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
import uvicorn
from share_support import World

from jointcloud.api.share.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
async_api = pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/install.sh --test)"
)


def png(width: int, height: int) -> bytes:
    """A real RGB PNG: a gradient, so a decoded image has its size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(
        b"\0" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def downloaded(download: object) -> bytes:
    path = await download.path()  # type: ignore[attr-defined]
    return await asyncio.to_thread(Path(path).read_bytes)


@pytest.fixture
async def served(world: World) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(world.ctx), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_share_pages_in_chromium(world: World, served: str, tmp_path: Path) -> None:
    image = png(64, 48)
    blob = os.urandom(300_000)
    await world.put("photos/cat.png", image)
    await world.put("set/a.txt", b"hello from a <b>shared</b> file")
    await world.put("set/blob.bin", blob)
    await world.put("set/sub/c.txt", b"deeper")
    access = await world.public()
    shots: list[Path] = []

    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = await browser.new_context(accept_downloads=True)
            page = await context.new_page()

            # a share page with its image preview
            r = await page.goto(f"{served}/s/{access}/docs/photos/cat.png")
            assert r is not None and r.status == 200
            assert await page.text_content("#name") == "cat.png"
            preview = page.locator("img#preview")
            await preview.wait_for()
            await page.wait_for_function(
                "() => document.querySelector('img#preview').complete", timeout=10_000
            )
            width = await preview.evaluate("img => img.naturalWidth")
            height = await preview.evaluate("img => img.naturalHeight")
            assert (width, height) == (64, 48)
            shots.append(tmp_path / "share-image-page.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)

            # the download button gives the very bytes
            async with page.expect_download() as info:
                await page.click("#download")
            download = await info.value
            assert download.suggested_filename == "cat.png"
            assert await downloaded(download) == image

            # a listing, then into an item
            r = await page.goto(f"{served}/s/{access}/docs/set/")
            assert r is not None and r.status == 200
            shots.append(tmp_path / "share-listing.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)
            await page.click("a.item:text-is('a.txt')")
            await page.wait_for_url(f"{served}/s/{access}/docs/set/a.txt")
            assert await page.text_content("#name") == "a.txt"
            assert await page.text_content("pre#preview") == "hello from a <b>shared</b> file"
            shots.append(tmp_path / "share-text-page.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)
            async with page.expect_download() as info:
                await page.click("#download")
            assert await downloaded(await info.value) == (b"hello from a <b>shared</b> file")

            # the zip of the folder
            await page.goto(f"{served}/s/{access}/docs/set/")
            async with page.expect_download() as info:
                await page.click("#zip")
            download = await info.value
            assert download.suggested_filename == "set.zip"
            data = await downloaded(download)
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                assert sorted(z.namelist()) == ["a.txt", "blob.bin", "sub/c.txt"]
                assert z.read("blob.bin") == blob

            # a link that does not work says why
            r = await page.goto(f"{served}/s/{access}/docs/nothing-here.txt")
            assert r is not None and r.status == 404
            assert "nothing-here.txt" in (await page.text_content("main") or "")
            shots.append(tmp_path / "share-not-found.png")
            await page.screenshot(path=str(shots[-1]), full_page=True)
        finally:
            await browser.close()

    for shot in shots:
        assert shot.stat().st_size > 1000
        print(f"screenshot: {shot}")


async def test_dot_segment_keys_in_chromium(world: World, served: str) -> None:
    """Keys with ``..``, ``.`` and empty parts: the legacy redirect and the
    listing's links reach them in a browser, which removes dot segments
    (``%2E%2E`` too) from every URL it is given."""
    bodies = {key: f"body of {key}".encode() for key in ("../x", "a/./b", "a//b")}
    for key, body in bodies.items():
        await world.put(key, body, "text/plain")
    access = await world.public()

    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = await browser.new_context(accept_downloads=True)
            page = await context.new_page()

            # the form /shareUrl returns, redirected
            r = await page.goto(f"{served}/{access}/{quote('docs/../x', safe='')}")
            assert r is not None and r.status == 200
            assert await page.text_content("#name") == "x"
            assert await page.text_content("pre#preview") == "body of ../x"

            # the listing, into "../", then its file and its download
            await page.goto(f"{served}/s/{access}/docs/")
            await page.click("a.item:text-is('../')")
            await page.wait_for_url(f"{served}/s/{access}/docs%2F../")
            await page.click("a.item:text-is('x')")
            assert await page.text_content("pre#preview") == "body of ../x"
            async with page.expect_download() as info:
                await page.click("#download")
            assert await downloaded(await info.value) == bodies["../x"]

            # "a/./b" and "a//b", both from the listing of "a/"
            for label, key in (("./", "a/./b"), ("/", "a//b")):
                await page.goto(f"{served}/s/{access}/docs/a/")
                await page.click(f"a.item:text-is('{label}')")
                await page.click("a.item:text-is('b')")
                assert await page.text_content("pre#preview") == f"body of {key}"
        finally:
            await browser.close()
