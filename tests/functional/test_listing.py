"""§3.4 listByPath, §3.5 getPackageObjects, listByIDs."""

from __future__ import annotations

import base64
import random
from typing import Any

from jcs_helpers import Api, assert_object

PATHS = [
    "a.txt",
    "a/b.txt",
    "a/c/d.txt",
    "a/c/e.txt",
    "a/z",
    "a-b",
    "a b",
    "aB",
    "A",
    "b/x",
    "b/y/z",
    "文",
    "~tilde",
]


def byte_order(paths: list[str]) -> list[str]:
    return sorted(paths, key=lambda p: p.encode())


async def listing(api: Api, package_id: int, path: str, **flags: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"packageID": package_id, "path": path}
    for k, v in flags.items():
        params[k] = str(v).lower() if isinstance(v, bool) else v
    data = await api.get("/v1/object/listByPath", **params)
    assert (
        {"commonPrefixes", "objects"}
        <= set(data)
        <= {
            "commonPrefixes",
            "objects",
            "nextContinuationToken",
        }
    ), data
    for o in data["objects"]:
        assert_object(o, package_id=package_id)
    return data


async def filled(api: Api) -> tuple[int, dict[str, dict[str, Any]]]:
    pid = await api.package("p")
    ups = await api.upload(pid, [(p, p.encode()) for p in PATHS])
    return pid, {o["path"]: o for o in ups}


async def test_list_exact_path(api: Api) -> None:
    pid, by_path = await filled(api)
    data = await listing(api, pid, "a/c/d.txt", isPrefix=False)
    assert data == {"commonPrefixes": [], "objects": [by_path["a/c/d.txt"]]}
    # The flag defaults to an exact match.
    assert (await listing(api, pid, "a.txt"))["objects"] == [by_path["a.txt"]]
    for missing in ("a", "a/c", "nothing", "A.txt"):
        data = await listing(api, pid, missing, isPrefix=False)
        assert data == {"commonPrefixes": [], "objects": []}, missing
    # No object path ends with '/', so asking for one exactly is a bad argument.
    msg = await api.fail(
        "GET",
        "/v1/object/listByPath",
        "BadArgument",
        400,
        params={"packageID": pid, "path": "a/", "isPrefix": "false"},
    )
    assert "path" in msg


async def test_list_prefix_recursive_in_byte_order(api: Api) -> None:
    pid, by_path = await filled(api)
    data = await listing(api, pid, "", isPrefix=True)
    assert [o["path"] for o in data["objects"]] == byte_order(PATHS)
    assert data["commonPrefixes"] == [] and "nextContinuationToken" not in data
    assert data["objects"][0] == by_path[data["objects"][0]["path"]]

    data = await listing(api, pid, "a/", isPrefix=True)
    assert [o["path"] for o in data["objects"]] == ["a/b.txt", "a/c/d.txt", "a/c/e.txt", "a/z"]
    # A prefix need not end at a '/'.
    data = await listing(api, pid, "a", isPrefix=True)
    assert [o["path"] for o in data["objects"]] == byte_order(
        [p for p in PATHS if p.startswith("a")]
    )
    data = await listing(api, pid, "a/c/d", isPrefix=True)
    assert [o["path"] for o in data["objects"]] == ["a/c/d.txt"]
    assert (await listing(api, pid, "q/", isPrefix=True))["objects"] == []
    # isPrefix with noRecursive=false is recursive.
    data = await listing(api, pid, "b/", isPrefix=True, noRecursive=False)
    assert [o["path"] for o in data["objects"]] == ["b/x", "b/y/z"]


async def test_list_prefix_no_recursive(api: Api) -> None:
    pid, _ = await filled(api)
    data = await listing(api, pid, "", isPrefix=True, noRecursive=True)
    top = [p for p in PATHS if "/" not in p]
    assert [o["path"] for o in data["objects"]] == byte_order(top)
    assert data["commonPrefixes"] == ["a/", "b/"]

    data = await listing(api, pid, "a/", isPrefix=True, noRecursive=True)
    assert [o["path"] for o in data["objects"]] == ["a/b.txt", "a/z"]
    assert data["commonPrefixes"] == ["a/c/"]

    data = await listing(api, pid, "a/c/", isPrefix=True, noRecursive=True)
    assert [o["path"] for o in data["objects"]] == ["a/c/d.txt", "a/c/e.txt"]
    assert data["commonPrefixes"] == []

    data = await listing(api, pid, "b", isPrefix=True, noRecursive=True)
    assert data["objects"] == [] and data["commonPrefixes"] == ["b/"]


async def page_through(
    api: Api, pid: int, path: str, max_keys: int, **flags: Any
) -> tuple[list[str], list[str], int]:
    objects: list[str] = []
    prefixes: list[str] = []
    token = None
    pages = 0
    while True:
        extra = {"continuationToken": token} if token else {}
        data = await listing(api, pid, path, isPrefix=True, maxKeys=max_keys, **flags, **extra)
        pages += 1
        assert 0 < len(data["objects"]) + len(data["commonPrefixes"]) <= max_keys, data
        objects += [o["path"] for o in data["objects"]]
        prefixes += data["commonPrefixes"]
        token = data.get("nextContinuationToken")
        if token is None:
            return objects, prefixes, pages
        assert isinstance(token, str) and token
        assert pages < 100


async def test_paging_with_continuation_token(api: Api) -> None:
    pid = await api.package("p")
    paths = [f"k/{i:03d}" for i in range(23)] + ["k-last", "j/first", "k/sub/x", "k/sub/y"]
    await api.upload(pid, [(p, b"") for p in paths])

    objects, prefixes, pages = await page_through(api, pid, "", 5)
    assert objects == byte_order(paths) and prefixes == []
    assert pages == 6  # 27 objects, 5 a page

    # Exactly a multiple of maxKeys: no empty page at the end.
    objects, _, pages = await page_through(api, pid, "k/", 5)
    assert objects == byte_order([p for p in paths if p.startswith("k/")])
    assert pages == 5

    # Without recursion a common prefix counts as one entry and never repeats.
    objects, prefixes, _ = await page_through(api, pid, "", 2, noRecursive=True)
    assert objects == ["k-last"]
    assert prefixes == ["j/", "k/"]
    objects, prefixes, _ = await page_through(api, pid, "k/", 4, noRecursive=True)
    assert objects == [f"k/{i:03d}" for i in range(23)]
    assert prefixes == ["k/sub/"]

    # One object at a time works as well.
    objects, _, pages = await page_through(api, pid, "k/sub/", 1)
    assert objects == ["k/sub/x", "k/sub/y"] and pages == 2


async def test_paging_argument_errors(api: Api) -> None:
    pid = await api.package("p")
    await api.upload(pid, [("x", b""), ("y", b"")])
    base = {"packageID": pid, "path": "", "isPrefix": "true"}
    for bad in (0, -1, 1001):
        msg = await api.fail(
            "GET", "/v1/object/listByPath", "BadArgument", 400, params={**base, "maxKeys": bad}
        )
        assert "maxKeys" in msg
    msg = await api.fail(
        "GET",
        "/v1/object/listByPath",
        "BadArgument",
        400,
        params={**base, "continuationToken": "not-a-token"},
    )
    assert "continuationToken" in msg
    # JSON nested deeper than the decoder goes (found by review: a 500),
    # and a token longer than any issued.
    deep = base64.urlsafe_b64encode(b"[" * 1100).decode()
    for token in (deep, "A" * 20_000):
        msg = await api.fail(
            "GET",
            "/v1/object/listByPath",
            "BadArgument",
            400,
            params={**base, "continuationToken": token},
        )
        assert "continuationToken" in msg
    await api.fail(
        "GET",
        "/v1/object/listByPath",
        "DataNotFound",
        404,
        params={**base, "packageID": 987654},
    )


async def test_get_package_objects(api: Api) -> None:
    pid, by_path = await filled(api)
    other = await api.package("other")
    await api.upload_one(other, "elsewhere", b"no")
    data = await api.get("/v1/object/getPackageObjects", packageID=pid)
    assert set(data) == {"objects"}
    assert [o["path"] for o in data["objects"]] == byte_order(PATHS)
    for o in data["objects"]:
        assert o == by_path[o["path"]]
        assert_object(o, path=o["path"], data=o["path"].encode(), package_id=pid)
    empty = await api.package("empty")
    assert await api.get("/v1/object/getPackageObjects", packageID=empty) == {"objects": []}
    await api.fail(
        "GET", "/v1/object/getPackageObjects", "DataNotFound", 404, params={"packageID": 987654}
    )


async def test_list_by_ids_is_aligned_with_nulls(api: Api) -> None:
    pid = await api.package("p")
    a, b = await api.upload(pid, [("a", b"1"), ("b", b"22")])
    await api.post("/v1/object/delete", {"objectIDs": [b["objectID"]]})
    ids = [b["objectID"], a["objectID"], 987654, a["objectID"]]
    data = await api.post("/v1/object/listByIDs", {"objectIDs": ids})
    assert set(data) == {"object"}
    assert data["object"] == [None, a, None, a]
    assert await api.post("/v1/object/listByIDs", {"objectIDs": []}) == {"object": []}


async def test_prefixes_are_literal(api: Api) -> None:
    """'%' and '_' in a prefix match only themselves (no LIKE wildcards)."""
    pid = await api.package("p")
    paths = ["a%b", "a_b", "axb", "a/b", "ab"]
    await api.upload(pid, [(p, b"") for p in paths])
    for prefix, expect in (("a_", ["a_b"]), ("a%", ["a%b"]), ("a/", ["a/b"]), ("ax", ["axb"])):
        data = await listing(api, pid, prefix, isPrefix=True)
        assert [o["path"] for o in data["objects"]] == expect, prefix


def expected_listing(
    paths: list[str], prefix: str, no_recursive: bool
) -> tuple[list[str], list[str]]:
    under = [p for p in paths if p.startswith(prefix)]
    if not no_recursive:
        return byte_order(under), []
    objects = [p for p in under if "/" not in p[len(prefix) :]]
    common = {prefix + p[len(prefix) :].split("/", 1)[0] + "/" for p in under if p not in objects}
    return byte_order(objects), byte_order(list(common))


async def test_paging_matches_a_model(api: Api) -> None:
    """Random paths whose characters sort around '/' ('-', '.' below it, '0' above),
    listed page by page in every mode: the pages join up to the model's answer."""
    rng = random.Random(20240624)
    alphabet = "ab-.0"
    paths: set[str] = set()
    while len(paths) < 60:
        segments = []
        for _ in range(rng.randint(1, 3)):
            seg = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
            segments.append("x" if seg in (".", "..") else seg)
        paths.add("/".join(segments))
    # A path may also be the "directory" of others ('a' and 'a/b'): both are objects.
    pid = await api.package("p")
    await api.upload(pid, [(p, b"") for p in sorted(paths)])
    all_paths = sorted(paths)

    for prefix in ("", "a", "b", "b/", "-", "-/", ".", "0", "zzz"):
        for no_recursive in (False, True):
            want_objects, want_prefixes = expected_listing(all_paths, prefix, no_recursive)
            for max_keys in (3, 1000):
                if not want_objects and not want_prefixes:
                    data = await listing(api, pid, prefix, isPrefix=True, maxKeys=max_keys)
                    assert data["objects"] == [] and "nextContinuationToken" not in data
                    continue
                objects, prefixes, _ = await page_through(
                    api, pid, prefix, max_keys, noRecursive=no_recursive
                )
                assert objects == want_objects, (prefix, no_recursive, max_keys)
                assert prefixes == want_prefixes, (prefix, no_recursive, max_keys)
