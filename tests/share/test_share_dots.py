"""Keys with ``.``, ``..`` or empty parts (S3 keys are opaque): every link
the share pages write, and the legacy redirect, still name the same key
after a browser has normalised the URL (WHATWG removes dot segments, their
``%2E`` forms too)."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

import pytest
from share_support import World

from jointcloud.api.share.pages import url_path

DOT_KEYS = ("../x", "a/./b", ".", "a/..", "../../y/z", "c/../d")
_DOT = re.compile(r"^(\.|%2e)$", re.IGNORECASE)
_DOTDOT = re.compile(r"^(\.|%2e){2}$", re.IGNORECASE)


def as_browser(href: str) -> str:
    """``href``'s path as a browser requests it: dot segments (``.``,
    ``..`` and their percent-encoded forms) removed, per the WHATWG URL
    standard's path parser; the query kept."""
    parts = urlsplit(href)
    out: list[str] = []
    segments = parts.path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if _DOTDOT.match(seg):
            if len(out) > 0:
                out.pop()
            if last:
                out.append("")
        elif _DOT.match(seg):
            if last:
                out.append("")
        else:
            out.append(seg)
    path = "/" + "/".join(out)
    return path + ("?" + parts.query if parts.query else "")


def links(html: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', html)]


def test_as_browser_matches_whatwg() -> None:
    assert as_browser("/s/a/b/../x") == "/s/a/x"
    assert as_browser("/s/a/b/%2E%2E/x?y") == "/s/a/x?y"
    assert as_browser("/s/a/b/.%2e/") == "/s/a/"
    assert as_browser("/s/a/b/./x/.") == "/s/a/b/x/"
    assert as_browser("/s/a/b//x") == "/s/a/b//x"


@pytest.mark.parametrize("key", [*DOT_KEYS, "a//b", "/lead", "..x/.y", "..."])
def test_url_path_survives_a_browser_and_decodes_to_the_key(key: str) -> None:
    path = url_path("s", "acc", "docs", key)
    assert as_browser(path) == path
    assert unquote(path) == "/s/acc/docs/" + key
    # what needs no care is written as before
    assert url_path("s", "acc", "docs", "sub dir/x?.txt") == "/s/acc/docs/sub%20dir/x%3F.txt"


async def test_object_pages_and_raw_of_dot_keys(world: World) -> None:
    access = await world.public()
    for key in (*DOT_KEYS, "a//b"):
        await world.put(key, f"body of {key}".encode(), "text/plain")
    for key in (*DOT_KEYS, "a//b"):
        page_url = as_browser(url_path("s", access, "docs", key))
        r = await world.client.get(page_url)
        assert r.status_code == 200, (key, page_url)
        assert f"body of {key}" in r.text
        hrefs = [as_browser(h) for h in links(r.text)]
        raw = next(h for h in hrefs if h.startswith("/raw/") and h.endswith("?download"))
        r = await world.client.get(raw)
        assert r.status_code == 200 and r.content == f"body of {key}".encode(), (key, raw)
        # every breadcrumb leads to a listing of a prefix of the key
        for crumb in (h for h in hrefs if h.startswith("/s/")):
            r = await world.client.get(crumb)
            assert r.status_code == 200, (key, crumb)


async def test_listing_links_of_dot_keys_lead_to_them(world: World) -> None:
    access = await world.public()
    for key in DOT_KEYS:
        await world.put(key, f"body of {key}".encode(), "text/plain")
    seen: dict[str, bytes] = {}
    todo = [f"/s/{access}/docs/?list"]
    visited: set[str] = set()
    while todo:
        url = todo.pop()
        if url in visited:
            continue
        visited.add(url)
        r = await world.client.get(url)
        assert r.status_code == 200, url
        for href in (as_browser(h) for h in links(r.text)):
            if href.startswith("/raw/") and href.endswith("?download"):
                got = await world.client.get(href)
                assert got.status_code == 200, href
                seen[unquote(href.removesuffix("?download")).split("/", 4)[4]] = got.content
            elif "?download-kind=zip" in href:
                assert (await world.client.get(href)).status_code == 200, href
            elif href.endswith("/") and href.startswith(f"/s/{access}/docs"):
                todo.append(href + "?list")
    assert seen == {key: f"body of {key}".encode() for key in DOT_KEYS}


async def test_legacy_redirect_of_dot_keys(world: World) -> None:
    access = await world.public()
    for key in DOT_KEYS:
        await world.put(key, f"body of {key}".encode(), "text/plain")
        r = await world.client.get(f"/{access}/{quote('docs/' + key, safe='')}?q=1")
        assert r.status_code == 308
        location = r.headers["location"]
        assert as_browser(location) == location, location
        assert location.endswith("?q=1")
        r = await world.client.get(location)
        assert r.status_code == 200 and f"body of {key}" in r.text, (key, location)
