"""/s pages: an object's page (name, size, type, preview, download button),
listings with breadcrumbs and per-item links, index.html, paging, and
hostile names escaped everywhere."""

from __future__ import annotations

import html
import io
import re
import zipfile
from urllib.parse import quote

import pytest
from share_support import World

from jointcloud.api.share import app as share_app


def links(text: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', text)]


@pytest.mark.pg
async def test_image_page(world: World) -> None:
    await world.put("photos/cat.png", b"\x89PNG" + b"\0" * 2044)
    access = await world.public()
    r = await world.client.get(f"/s/{access}/docs/photos/cat.png")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "sandbox" in csp and "allow-scripts" not in csp and "script-src" not in csp
    assert '<h1 id="name">cat.png</h1>' in r.text
    assert "2.0 KiB" in r.text and "image/png" in r.text
    raw = f"/raw/{access}/docs/photos/cat.png"
    assert f'<img id="preview" src="{raw}"' in r.text
    assert f"{raw}?download" in links(r.text)
    assert "<script" not in r.text


@pytest.mark.parametrize(
    ("name", "tag"),
    [("clip.mp4", "<video"), ("song.mp3", "<audio"), ("paper.pdf", "<iframe")],
)
async def test_media_previews(world: World, name: str, tag: str) -> None:
    await world.put(name, b"0123456789")
    access = await world.public()
    r = await world.client.get(f"/s/{access}/docs/{name}")
    assert r.status_code == 200
    assert f'{tag} id="preview"' in r.text
    assert 'id="download"' in r.text


async def test_text_preview_is_escaped_and_capped(world: World) -> None:
    hostile = "<script>alert('x')</script>&amp;"
    await world.put("notes.txt", hostile.encode())
    await world.put("page.html", b"<html><body onload=alert(1)>hi</body></html>")
    await world.put("long.txt", b"a" * 70_000 + b"TAIL")
    access = await world.public()
    r = await world.client.get(f"/s/{access}/docs/notes.txt")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;amp;" in r.text
    assert "<script" not in r.text
    r = await world.client.get(f"/s/{access}/docs/page.html")
    assert "&lt;body onload=alert(1)&gt;" in r.text  # HTML shown as text, never rendered
    assert "<body onload" not in r.text
    r = await world.client.get(f"/s/{access}/docs/long.txt")
    assert "TAIL" not in r.text
    assert "first 64 KiB" in r.text
    assert r.text.count("a" * 1000) >= 60


async def test_hostile_names_are_escaped(world: World) -> None:
    key = "<script>alert(1)</script>/\"'><img src=x onerror=alert(2)>.txt"
    await world.put(key, b"boo")
    access = await world.public()
    from urllib.parse import quote

    url = f"/s/{access}/docs/{quote(key)}"
    r = await world.client.get(url)
    assert r.status_code == 200
    for page in (r.text, (await world.client.get(f"/s/{access}/docs/")).text):
        assert "<script>" not in page and "<img src=x" not in page
        assert "&lt;script&gt;" in page
    listing = await world.client.get(f"/s/{access}/docs/{quote('<script>alert(1)</script>/')}")
    assert listing.status_code == 200
    assert "&lt;img src=x onerror=alert(2)&gt;.txt" in listing.text
    hrefs = links(listing.text)
    item = next(h for h in hrefs if h.startswith(f"/s/{access}/docs/%3Cscript") and "onerror" in h)
    r = await world.client.get(item)
    assert r.status_code == 200 and "boo" in r.text
    raw = next(h for h in hrefs if h.startswith("/raw/"))
    assert (await world.client.get(raw)).content == b"boo"


@pytest.mark.pg
async def test_listing_breadcrumbs_and_links(world: World) -> None:
    for path in ("a/b/one.txt", "a/b/two.txt", "a/b/c/deep.txt", "a/top.txt", "root.txt"):
        await world.put(path, path.encode())
    access = await world.public()
    r = await world.client.get(f"/s/{access}/docs/a/b/")
    assert r.status_code == 200
    text = r.text
    crumbs = re.search(r'<nav class="crumbs">(.*?)</nav>', text)
    assert crumbs is not None
    assert links(crumbs.group(1)) == [f"/s/{access}/docs/", f"/s/{access}/docs/a/"]
    assert "<strong>b/</strong>" in crumbs.group(1)
    hrefs = links(text)
    assert f"/s/{access}/docs/a/b/c/" in hrefs
    assert f"/s/{access}/docs/a/b/one.txt" in hrefs
    assert f"/raw/{access}/docs/a/b/two.txt?download" in hrefs
    assert f"/s/{access}/docs/a/b/?download-kind=zip" in hrefs
    assert "top.txt" not in text and "deep.txt" not in text
    # the bucket's root, with the empty key as well
    for url in (f"/s/{access}/docs/", f"/s/{access}/docs"):
        r = await world.client.get(url)
        assert r.status_code == 200
        assert f"/s/{access}/docs/a/" in links(r.text) and "root.txt" in r.text
    # a folder named without its slash
    r = await world.client.get(f"/s/{access}/docs/a/b")
    assert r.status_code == 303  # as edge: http.StatusSeeOther
    assert r.headers["location"] == f"/s/{access}/docs/a/b/"
    # an item's page leads back through its breadcrumbs
    r = await world.client.get(f"/s/{access}/docs/a/b/one.txt")
    assert f"/s/{access}/docs/a/b/" in links(r.text)


async def test_listing_pages(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(share_app, "PAGE_SIZE", 2)
    for i in range(5):
        await world.put(f"p/{i}.txt", b"x")
    access = await world.public()
    seen: list[str] = []
    url: str | None = f"/s/{access}/docs/p/"
    while url is not None:
        r = await world.client.get(url)
        assert r.status_code == 200
        seen += re.findall(r'class="item" href="[^"]*">([^<]*)</a>', r.text)
        nxt = re.search(r'<a id="next" href="([^"]*)"', r.text)
        url = html.unescape(nxt.group(1)) if nxt else None
    assert seen == [f"{i}.txt" for i in range(5)]


async def test_index_html_is_shown_as_its_page(world: World) -> None:
    await world.put("site/index.html", b"<h1>Welcome</h1>")
    await world.put("site/other.txt", b"x")
    access = await world.public()
    r = await world.client.get(f"/s/{access}/docs/site/")
    assert r.status_code == 200
    assert '<h1 id="name">index.html</h1>' in r.text
    assert "&lt;h1&gt;Welcome&lt;/h1&gt;" in r.text and "<h1>Welcome" not in r.text
    r = await world.client.get(f"/s/{access}/docs/site/?list")
    assert "other.txt" in r.text and "index.html" in r.text


async def test_missing_object_page(world: World) -> None:
    access = await world.public()
    r = await world.client.get(f"/s/{access}/docs/none.txt")
    assert r.status_code == 404
    assert "none.txt" in r.text
    r = await world.client.get(f"/s/{access}/nobucket/")
    assert r.status_code == 403  # outside the access: it learns nothing of it
    whole = await world.public(world.grant)
    r = await world.client.get(f"/s/{whole}/nobucket/")
    assert r.status_code == 404


async def test_buckets_page(world: World) -> None:
    await world.ctx.packages.create(world.owner, world.project.bucket_id, "other")
    access = await world.public(world.grant)
    r = await world.client.get(f"/s/{access}/")
    assert r.status_code == 200
    assert f"/s/{access}/docs/" in links(r.text) and f"/s/{access}/other/" in links(r.text)
    one = await world.public()  # the "docs" bucket only
    r = await world.client.get(f"/s/{one}/")
    assert f"/s/{one}/docs/" in links(r.text) and "other" not in r.text


async def test_a_level_above_the_shared_prefix_is_not_called_listing_only(world: World) -> None:
    """A read and list link to ``a/`` shown at the bucket's root (the
    breadcrumb above it) lists ``a/`` and nothing readable, but the link
    does read: it once said "This link allows listing only", and the root's
    breadcrumb had an empty item after the bucket's name."""
    await world.put("a/one.txt", b"1")
    await world.put("b/two.txt", b"2")
    access = await world.public(world.restricted(paths=["a/"]))
    r = await world.client.get(f"/s/{access}/docs/")
    assert r.status_code == 200
    assert f"/s/{access}/docs/a/" in links(r.text) and "b/" not in r.text
    assert "listing only" not in r.text
    crumbs = re.search(r'<nav class="crumbs">(.*?)</nav>', r.text)
    assert crumbs is not None
    assert re.findall(r"<strong>(.*?)</strong>", crumbs.group(1)) == ["docs"]
    assert "<strong></strong>" not in r.text
    r = await world.client.get(f"/s/{access}/docs/a/")
    assert f"/raw/{access}/docs/a/one.txt?download" in links(r.text)
    # A link that may only list still says so, at every level.
    listing = await world.public(world.restricted(allow=["list"], paths=["a/"]))
    for url in (f"/s/{listing}/docs/", f"/s/{listing}/docs/a/"):
        assert "listing only" in (await world.client.get(url)).text


async def test_the_bucket_root_pages_and_zips_like_any_folder(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: at a bucket's root the next-page and zip links named
    ``/s/<access>/<bucket>//…`` (the prefix "/"), so the rest of the root
    could not be reached and its zip held nothing."""
    monkeypatch.setattr(share_app, "PAGE_SIZE", 2)
    names = [f"{i}.txt" for i in range(5)]
    for name in names:
        await world.put(name, name.encode())
    access = await world.public()
    seen: list[str] = []
    url: str | None = f"/s/{access}/docs/"
    while url is not None:
        r = await world.client.get(url)
        assert r.status_code == 200, url
        seen += re.findall(r'class="item" href="[^"]*">([^<]*)</a>', r.text)
        nxt = re.search(r'<a id="next" href="([^"]*)"', r.text)
        url = html.unescape(nxt.group(1)) if nxt else None
        assert url is None or url.startswith(f"/s/{access}/docs/?cursor="), url
    assert seen == names
    r = await world.client.get(f"/s/{access}/docs/")
    zip_href = html.unescape(re.findall(r'<a class="button" id="zip" href="([^"]*)"', r.text)[0])
    assert zip_href == f"/s/{access}/docs/?download-kind=zip"
    r = await world.client.get(zip_href)
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert sorted(z.namelist()) == names
        assert all(z.read(n) == n.encode() for n in names)


async def test_what_is_not_there_is_not_found(world: World) -> None:
    await world.put("a.txt", b"a")
    await world.put("only-marker/", b"")
    access = await world.public()
    for url in (
        f"/s/{access}/docs/nosuch/",
        f"/s/{access}/docs/nosuch/?download-kind=zip",
        f"/raw/{access}/docs/a.txt?download-kind=zip",  # a file is no folder to zip
        f"/raw/{access}//docs/a.txt",  # an empty bucket name
        f"/s/{access}//docs/",
    ):
        r = await world.client.get(url)
        assert r.status_code == 404, url
        assert "text/html" in r.headers["content-type"]
    # a folder that holds only its marker exists, and the marker is the
    # folder itself: no entry of it, no download link that would fail
    r = await world.client.get(f"/s/{access}/docs/only-marker/")
    assert r.status_code == 200
    assert re.findall(r'class="item" href="[^"]*">([^<]*)</a>', r.text) == []
    assert "/raw/" not in r.text
    r = await world.client.get(f"/s/{access}/docs/only-marker/?download-kind=zip")
    assert r.status_code == 200  # as its listing: the folder is there, with nothing in it


async def test_names_that_reorder_themselves_are_shown_as_they_are(world: World) -> None:
    """Found by review: ``rtl\\u202egnp.exe`` was shown as "rtlexe.png"."""
    key = "rtl\u202egnp.exe"
    await world.put(key, b"MZ")
    access = await world.public()
    listing = (await world.client.get(f"/s/{access}/docs/")).text
    page = (await world.client.get(f"/s/{access}/docs/{quote(key)}")).text
    for text in (listing, page):
        assert "\u202e" not in text
        assert "rtl\\u202egnp.exe" in text
    # joiners are part of names (emoji, Persian) and stay
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467.jpg"
    await world.put(family, b"x")
    assert family in (await world.client.get(f"/s/{access}/docs/")).text
