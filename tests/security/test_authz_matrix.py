"""The authorization matrix (issue 11): every credential that must not reach
the victim's things × every v1 endpoint, on SQLite and PostgreSQL.

Rows (credentials): no key; mallory's user key; mallory's project key; the
victim's key of ANOTHER project (Q) aimed at P; a key of P missing the one
permission the endpoint needs; an expired key; a not-yet-valid key; a child
of a revoked parent; a key whose prefix does not cover the object; a key for
another package. Columns: every route of ``create_app(ctx)``, enumerated
from the app (a route without an entry in ``ENDPOINTS`` fails
``test_every_route_is_in_the_matrix``), except the documented public ones.

Each cell checks the refusal (status and code), that the answer gives away
nothing of the victim's outside the credential's reach (names, paths, bytes,
UUIDs, key texts, ids not in the request: ``matrix_support.leaks``), and,
row by row, that the victim's state is unchanged. ``test_positive_controls``
shows that the properly scoped key succeeds on every endpoint, so the matrix
cannot pass by refusing everything.

Findings of this matrix that are bugs in src are listed in ``KNOWN``: the
matrix reports them as expected failures and fails when one is fixed (so the
entry is removed) or a new one appears.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from jcs_helpers import Api, file_parts, info_part, multipart
from matrix_support import (
    BYTES,
    PUBLIC_ROUTES,
    World,
    app_routes,
    bearer,
    build_world,
    client,
    leaks,
    restrict,
    spread_ids,
    time_keys,
    victim_state,
    wrong_package_key,
    wrong_prefix_key,
)

from jointcloud.api.jcs.app import create_app
from jointcloud.context import Context

# --- the columns ----------------------------------------------------------------

Build = Callable[[World, str], dict[str, Any]]
Refused = Callable[[Any], bool]


def form(parts: list[tuple[str, str | None, bytes]]) -> dict[str, Any]:
    body, ctype = multipart(parts)
    return {"content": body, "headers": {"Content-Type": ctype}}


def q(**params: Any) -> Build:
    return lambda w, _: {"params": {k: v(w) if callable(v) else v for k, v in params.items()}}


def js(make: Callable[[World], dict[str, Any]]) -> Build:
    return lambda w, _: {"json": make(w)}


@dataclass(frozen=True)
class Endpoint:
    """How to aim a route at the victim's things: ``op`` picks the key of the
    missing-caveat row (the one permission it lacks); ``inband`` says how a
    200 answer shows a refusal (lists with None, move failures); ``own``
    names the rows for which a 200 on the caller's own scope is right."""

    method: str
    path: str
    op: str  # read, write, list, delete (account-level endpoints: write)
    build: Build
    inband: Refused | None = None
    own: frozenset[str] = field(default_factory=frozenset)


OWN_LISTINGS = frozenset({"other_user", "other_user_project", "other_project"})
IN_P = frozenset({"wrong_prefix", "wrong_package"})
PROJECT_KEYS_OF_P = frozenset({"missing_caveat", "wrong_prefix", "wrong_package"})


def none_listed(key: str) -> Refused:
    return lambda data: data == {key: [None]}


def move_failed(data: Any) -> bool:
    return bool(data["successes"] == [] and len(data["failures"]) == 1)


def _download(path: str) -> list[Endpoint]:
    build = q(objectID=lambda w: w.obj_out)
    return [Endpoint(m, path, "read", build) for m in ("GET", "HEAD")]


ENDPOINTS: list[Endpoint] = [
    # §1 buckets
    Endpoint(
        "POST",
        "/v1/bucket/create",
        "write",
        js(lambda w: {"name": "intruder-bucket"}),
        own=frozenset({"other_user"}),
    ),
    Endpoint("GET", "/v1/bucket/getByName", "read", q(name=lambda w: w.p_name), own=IN_P),
    Endpoint("GET", "/v1/bucket/listAll", "list", q(), own=OWN_LISTINGS | IN_P),
    Endpoint(
        "POST", "/v1/bucket/update", "write", js(lambda w: {"bucketID": w.p, "redundancy": None})
    ),
    Endpoint("POST", "/v1/bucket/delete", "delete", js(lambda w: {"bucketID": w.p})),
    # §2 packages
    Endpoint(
        "POST",
        "/v1/package/create",
        "write",
        js(lambda w: {"bucketID": w.p, "name": "intruder-pkg"}),
    ),
    Endpoint(
        "GET",
        "/v1/package/get",
        "read",
        q(packageID=lambda w: w.a),
        own=frozenset({"wrong_prefix"}),
    ),
    Endpoint(
        "GET",
        "/v1/package/getByFullName",
        "read",
        q(bucketName=lambda w: w.p_name, packageName=lambda w: w.a_name),
        own=frozenset({"wrong_prefix"}),
    ),
    Endpoint("GET", "/v1/package/listBucketPackages", "list", q(bucketID=lambda w: w.p), own=IN_P),
    Endpoint(
        "POST",
        "/v1/package/update",
        "write",
        js(lambda w: {"packageID": w.a, "redundancy": {"type": "rep", "repCount": 2}}),
    ),
    Endpoint("POST", "/v1/package/delete", "delete", js(lambda w: {"packageID": w.a})),
    Endpoint(
        "POST",
        "/v1/package/clone",
        "write",
        js(lambda w: {"packageID": w.a, "bucketID": w.p, "name": "intruder-clone"}),
    ),
    # §3 objects
    *[
        Endpoint(
            "POST",
            path,
            "write",
            lambda w, _: form(
                [info_part({"packageID": w.a}), *file_parts([("out/intruder.txt", b"intruder")])]
            ),
        )
        for path in ("/v1/object/upload", "/object/upload")  # the seed's example spelling
    ],
    *_download("/v1/object/download"),
    *_download("/v1/bucket/download"),
    *[
        Endpoint(
            m,
            "/v1/object/downloadByPath",
            "read",
            q(packageID=lambda w: w.a, path=lambda w: w.path_out),
        )
        for m in ("GET", "HEAD")
    ],
    Endpoint(
        "GET",
        "/v1/object/listByPath",
        "list",
        q(packageID=lambda w: w.a, path="out/", isPrefix="true"),
    ),
    Endpoint(
        "GET",
        "/v1/object/getPackageObjects",
        "list",
        q(packageID=lambda w: w.a),
        own=frozenset({"wrong_prefix"}),
    ),
    Endpoint(
        "POST",
        "/v1/object/listByIDs",
        "read",
        js(lambda w: {"objectIDs": [w.obj_out]}),
        inband=none_listed("object"),
    ),
    Endpoint(
        "POST",
        "/v1/object/move",
        "delete",
        js(
            lambda w: {
                "movings": [{"objectID": w.obj_out, "packageID": w.a, "path": "out/moved.txt"}]
            }
        ),
        inband=move_failed,
    ),
    Endpoint("POST", "/v1/object/delete", "delete", js(lambda w: {"objectIDs": [w.obj_out]})),
    Endpoint(
        "POST",
        "/v1/object/deleteByPath",
        "delete",
        js(lambda w: {"packageID": w.a, "path": w.path_out}),
    ),
    Endpoint(
        "POST",
        "/v1/object/clone",
        "read",
        js(
            lambda w: {
                "clonings": [
                    {"objectID": w.obj_out, "newPackageID": w.a, "newPath": "out/cloned.txt"}
                ]
            }
        ),
        inband=none_listed("objects"),
    ),
    Endpoint(
        "POST",
        "/v1/object/newMultipartUpload",
        "write",
        js(lambda w: {"packageID": w.a, "path": "out/intruder-mp"}),
    ),
    Endpoint(
        "POST",
        "/v1/object/uploadPart",
        "write",
        lambda w, _: form(
            [info_part({"objectID": w.pending_out, "index": 1}), ("file", "part", b"intruder")]
        ),
    ),
    Endpoint(
        "POST",
        "/v1/object/completeMultipartUpload",
        "write",
        js(lambda w: {"objectID": w.pending_out, "indexes": [0]}),
    ),
    # §4 user spaces, import and export
    Endpoint(
        "POST",
        "/v1/userSpace/create",
        "write",
        js(
            lambda w: {
                "name": "intruder-space",
                "storage": {"type": "Local", "path": str(w.tmp / "intruder-space")},
            }
        ),
        own=frozenset({"other_user"}),
    ),
    Endpoint(
        "POST",
        "/v1/userSpace/update",
        "write",
        js(lambda w: {"userSpaceID": w.space, "name": "intruder-name"}),
    ),
    Endpoint("POST", "/v1/userSpace/drain", "write", js(lambda w: {"userSpaceID": w.space})),
    Endpoint("POST", "/v1/userSpace/delete", "write", js(lambda w: {"userSpaceID": w.space})),
    Endpoint("GET", "/v1/userSpace/get", "write", q(userSpaceID=lambda w: w.space)),
    Endpoint("GET", "/v1/userSpace/list", "write", q(), own=frozenset({"other_user"})),
    Endpoint("POST", "/v1/userSpace/test", "write", js(lambda w: {"userSpaceID": w.space})),
    Endpoint(
        "POST",
        "/v1/userSpace/createPackage",
        "write",
        js(
            lambda w: {
                "userSpaceID": w.space,
                "path": "vic-syncsrc",
                "bucketID": w.p,
                "name": "intruder-import",
            }
        ),
    ),
    Endpoint(
        "POST",
        "/v1/userSpace/downloadPackage",
        "write",
        js(lambda w: {"packageID": w.a, "userSpaceID": w.space, "rootPath": "intruder-export"}),
    ),
    # §5 sync tasks
    Endpoint(
        "POST",
        "/v1/spaceSync/createTask",
        "write",
        js(
            lambda w: {
                "srcUserSpaceID": w.space,
                "srcPath": "vic-syncsrc",
                "dests": [{"userSpaceID": w.space, "path": "intruder-dst"}],
                "mode": "full",
            }
        ),
    ),
    Endpoint("GET", "/v1/spaceSync/getTask", "write", q(taskID=lambda w: w.task)),
    Endpoint("GET", "/v1/spaceSync/listTasks", "write", q(), own=frozenset({"other_user"})),
    Endpoint("POST", "/v1/spaceSync/cancelTask", "write", js(lambda w: {"taskID": w.task})),
    # keys
    Endpoint(
        "POST",
        "/v1/userKey/create",
        "write",
        js(lambda w: {"name": "intruder-key"}),
        own=frozenset({"other_user"}),
    ),
    Endpoint("GET", "/v1/userKey/list", "write", q(), own=frozenset({"other_user"})),
    Endpoint("POST", "/v1/userKey/delete", "write", js(lambda w: {"userKeyID": w.user_key_id})),
    Endpoint(
        "POST",
        "/v1/apiKey/create",
        "write",
        js(lambda w: {"bucketID": w.p, "name": "intruder-apikey"}),
    ),
    Endpoint("GET", "/v1/apiKey/list", "write", q(bucketID=lambda w: w.p)),
    Endpoint("POST", "/v1/apiKey/delete", "write", js(lambda w: {"apiKeyID": w.p_key_id})),
    # The code's rule (core/projectkeys.py): a project key may revoke any key
    # of its own project whose text it holds (holding the text is holding
    # the key); the target is a fresh child of the victim's key for each row.
    Endpoint(
        "POST",
        "/v1/apiKey/revoke",
        "write",
        lambda w, child: {"json": {"key": child}},
        own=PROJECT_KEYS_OF_P,
    ),
    # Fixing a project's passphrase takes an unrestricted key of that project,
    # as the caller and in the grant (the victim's own here).
    Endpoint("POST", "/v1/project/passphrase", "write", js(lambda w: {"accessGrant": w.p_grant})),
    # A project key is answered about its own project, whatever bucketID says,
    # and whatever its caveats forbid but their time (the published
    # satellite's ActionProjectInfo): a key that may not read makes a grant.
    Endpoint(
        "GET",
        "/v1/project/info",
        "read",
        q(bucketID=lambda w: w.p),
        own=frozenset({"other_user_project", "other_project", "missing_caveat"}) | IN_P,
    ),
]

# --- the rows -------------------------------------------------------------------------

ROWS = [
    "no_key",
    "other_user",
    "other_user_project",
    "other_project",
    "missing_caveat",
    "expired",
    "not_yet_valid",
    "revoked_parent",
    "wrong_prefix",
    "wrong_package",
]

# What each row's credential may legitimately see (matrix_support groups).
P_NAMES = frozenset({"P", "A", "D", "in", "out", "doc", "pkey"})
REACH: dict[str, frozenset[str]] = {
    "other_project": frozenset({"Q", "qkey"}),
    "missing_caveat": P_NAMES,  # names and ids of P, not its bytes
    "wrong_prefix": frozenset({"P", "A", "in", "in-bytes", "pkey"}),
    "wrong_package": frozenset({"P", "D", "doc", "doc-bytes", "pkey"}),
}
# The one permission a missing-caveat key lacks, per endpoint op.
LACKS = {"read", "write", "list", "delete"}


def expected(row: str, ep: Endpoint) -> set[str]:
    """The outcomes a cell may have: 401, 403, 404 (DataNotFound or
    TaskNotFound), inband (200 that shows the refusal), own (200 on the
    caller's own scope)."""
    if row in ("no_key", "revoked_parent"):
        return {"401"}
    if row in ep.own:
        return {"own"}
    if ep.inband is not None:
        return {"inband"}
    if row == "other_user":
        return {"404"}  # nothing of another user exists for her
    if row == "other_user_project":
        return {"403", "404"}  # by bucket id: another project; by other ids: not hers
    if row in ("other_project", "wrong_package", "wrong_prefix"):
        # Out of the key's scope: refused when the request named it, not
        # found when it gave only an id (a refusal would confirm it exists).
        return {"403", "404"}
    return {"403"}  # the victim's own project keys: their caveat refuses


# Findings (bugs in src): (row, method, path) -> what is wrong. Each entry
# is an expected failure of its cell; when one is fixed, remove it.
F1 = (
    "a key limited to a prefix of a package deletes or re-encodes the whole package: "
    "PackageService.delete/set_redundancy authorize with path=None, which "
    "authz._path_allowed lets through"
)
F3 = (
    "a key limited to some packages changes or deletes its project (bucket): "
    "BucketService.set_redundancy/delete authorize without a package, so caveat paths "
    "are not checked; bucket/delete then answers 409 naming every package of the project"
)
F5 = (
    "apiKey/revoke ignores the time window of the caller's key: ProjectKeyService.revoke "
    "never calls authorize, and only authorize checks not_before/not_after"
)
F6_PATH = "the refusal names an object path outside the key's prefix (request gave an id)"
F6_PKG = "the refusal names a package outside the key's caveat (request gave an id)"
F6_PROJ = "the refusal names the id of the victim's other project (not in the request)"


def _known() -> dict[tuple[str, str, str], str]:
    # F1-F6 were fixed: whole-package and whole-bucket acts need a caveat
    # reaching all of it (authz ``whole``), revocation is authorized, and
    # refusals of things named by id say "not found" without names.
    return {}


KNOWN = _known()


def outcome(ep: Endpoint, r: httpx.Response) -> str:
    if r.status_code == 200:
        if ep.inband is not None and ep.method != "HEAD" and ep.inband(r.json()["data"]):
            return "inband"
        return "own"
    if ep.method == "HEAD":
        return str(r.status_code)
    code = r.json().get("code")
    known = {
        401: {"Unauthorized"},
        403: {"Forbidden"},
        404: {"DataNotFound", "TaskNotFound"},
    }
    if r.status_code in known and code in known[r.status_code]:
        return str(r.status_code)
    return f"{r.status_code} {code}"


@dataclass
class Credentials:
    keys: dict[str, str | None]
    missing: dict[str, str]  # op -> a key of P without that permission

    def for_cell(self, row: str, ep: Endpoint) -> str | None:
        if row == "missing_caveat":
            return self.missing[ep.op]
        return self.keys[row]


async def credentials(api: Api, w: World) -> Credentials:
    expired, not_yet = time_keys(w.p_key)
    parent = restrict(w.p_key, allow={"read", "write", "list", "delete"})
    child = restrict(parent, allow={"read", "list", "write", "delete"})
    await api.post("/v1/apiKey/revoke", {"key": parent})
    keys: dict[str, str | None] = {
        "no_key": None,
        "other_user": w.mallory_key,
        "other_user_project": w.mallory_project_key,
        "other_project": w.q_key,
        "expired": expired,
        "not_yet_valid": not_yet,
        "revoked_parent": child,
        "wrong_prefix": wrong_prefix_key(w),
        "wrong_package": wrong_package_key(w),
    }
    missing = {op: restrict(w.p_key, allow=LACKS - {op}) for op in LACKS}
    return Credentials(keys, missing)


def describe(ep: Endpoint, req: httpx.Request, r: httpx.Response) -> str:
    body = req.content.decode("utf-8", "replace")
    if len(body) > 300:
        body = body[:300] + "…"
    shown = "" if ep.method == "HEAD" else r.text[:400]
    return f"{req.method} {req.url.raw_path.decode()} {body} -> {r.status_code} {shown}"


# Cells that would destroy the world if wrongly allowed run last in a row.
DESTRUCTIVE = {
    "/v1/package/delete",
    "/v1/bucket/delete",
    "/v1/userSpace/delete",
    "/v1/apiKey/delete",
    "/v1/userKey/delete",
}
ORDER = sorted(ENDPOINTS, key=lambda ep: ep.path in DESTRUCTIVE)


async def test_refusal_matrix(api: Api, ctx: Context, root_key: str) -> None:
    await spread_ids(api)
    gen = 0
    w = await build_world(api, ctx, root_key)
    creds = await credentials(api, w)
    problems: dict[tuple[str, str, str], str] = {}
    cells = 0
    async with client(ctx) as c:
        for row in ROWS:
            reach = REACH.get(row, frozenset())
            before = await victim_state(api, c, w)
            child = restrict(w.p_key, allow={"read", "list"})  # this row's revocation target
            for ep in ORDER:
                cells += 1
                kw = ep.build(w, child)
                headers = {**kw.pop("headers", {}), **bearer(creds.for_cell(row, ep))}
                r = await c.request(ep.method, ep.path, headers=headers, **kw)
                got = outcome(ep, r)
                where = (row, ep.method, ep.path)
                want = expected(row, ep)
                if got not in want:
                    problems[where] = f"{got} (want {want}): {describe(ep, r.request, r)}"
                    continue
                leaked = leaks(w, reach, r.request, r)
                if leaked:
                    problems[where] = f"leaks {leaked}: {describe(ep, r.request, r)}"
            if row not in PROJECT_KEYS_OF_P:  # those may revoke it (see ENDPOINTS)
                r = await c.get("/v1/bucket/listAll", headers=bearer(child))
                if r.status_code != 200:
                    problems[(row, "*", "revocation target")] = f"revoked: {r.text}"
            after = await victim_state(api, c, w)
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            if changed:
                problems[(row, "*", "victim state")] = f"changed: {changed}"
                gen += 1  # the next row gets an intact world
                w = await build_world(api, ctx, root_key, gen)
                creds = await credentials(api, w)
    assert cells == len(ROWS) * len(ENDPOINTS)
    unexpected = {k: v for k, v in problems.items() if k not in KNOWN}
    fixed = sorted(k for k in KNOWN if k not in problems)
    report = "\n".join(f"{k}: {v}" for k, v in sorted(unexpected.items()))
    assert not unexpected, f"{len(unexpected)} cells fail:\n{report}"
    assert not fixed, f"known findings no longer seen (remove them from KNOWN): {fixed}"


def test_every_route_is_in_the_matrix() -> None:
    """A new route cannot be forgotten: each one has a column, or is public."""
    routes = app_routes(create_app(cast(Context, None), background=False))
    covered = {(ep.method, ep.path) for ep in ENDPOINTS}
    missing = {r for r in routes if r[1] not in PUBLIC_ROUTES} - covered
    assert not missing, f"routes without a column in ENDPOINTS: {sorted(missing)}"
    stale = covered - routes
    assert not stale, f"columns for routes the app does not have: {sorted(stale)}"
    assert len(covered) == len(ENDPOINTS)  # no route twice


async def test_positive_controls(api: Api, ctx: Context, root_key: str) -> None:
    """The properly scoped key succeeds on every endpoint (so the matrix
    cannot pass by refusing everything): the narrowest key that should
    work — the prefix key on its own objects, the project key on its
    project, the user key on the account — and the public routes need none."""
    w = await build_world(api, ctx, root_key)
    narrow = wrong_prefix_key(w)  # everything under A/in/
    covered: set[tuple[str, str]] = set()

    async with client(ctx) as c:

        async def call(key: str | None, method: str, path: str, **kw: Any) -> Any:
            headers = {**kw.pop("headers", {}), **bearer(key)}
            r = await c.request(method, path, headers=headers, **kw)
            assert r.status_code == 200, (method, path, r.status_code, r.text)
            covered.add((method, path))
            if method == "HEAD" or path in PUBLIC_ROUTES:
                return r
            if r.headers["content-type"].startswith("application/json"):
                body = r.json()
                assert body["code"] == "OK", body
                return body["data"]
            return r.content

        # The prefix key, within its prefix.
        data = await call(narrow, "GET", "/v1/bucket/getByName", params={"name": w.p_name})
        assert data["bucket"]["bucketID"] == w.p
        data = await call(narrow, "GET", "/v1/bucket/listAll")
        assert [b["bucketID"] for b in data["buckets"]] == [w.p]
        data = await call(narrow, "GET", "/v1/project/info", params={"bucketID": w.p})
        assert data["bucketID"] == w.p
        data = await call(narrow, "GET", "/v1/package/get", params={"packageID": w.a})
        assert data["package"]["name"] == w.a_name
        names = {"bucketName": w.p_name, "packageName": w.a_name}
        data = await call(narrow, "GET", "/v1/package/getByFullName", params=names)
        assert data["package"]["packageID"] == w.a
        data = await call(narrow, "GET", "/v1/package/listBucketPackages", params={"bucketID": w.p})
        assert [p["packageID"] for p in data["packages"]] == [w.a]
        data = await call(narrow, "GET", "/v1/object/getPackageObjects", params={"packageID": w.a})
        assert [o["path"] for o in data["objects"]] == [w.path_in]
        listing: dict[str, Any] = {"packageID": w.a, "path": "in/", "isPrefix": "true"}
        data = await call(narrow, "GET", "/v1/object/listByPath", params=listing)
        assert [o["path"] for o in data["objects"]] == [w.path_in]
        for path in ("/v1/object/download", "/v1/bucket/download"):
            assert await call(narrow, "GET", path, params={"objectID": w.obj_in}) == BYTES["in"]
            await call(narrow, "HEAD", path, params={"objectID": w.obj_in})
        by_path: dict[str, Any] = {"packageID": w.a, "path": w.path_in}
        got = await call(narrow, "GET", "/v1/object/downloadByPath", params=by_path)
        assert got == BYTES["in"]
        await call(narrow, "HEAD", "/v1/object/downloadByPath", params=by_path)
        data = await call(narrow, "POST", "/v1/object/listByIDs", json={"objectIDs": [w.obj_in]})
        assert data["object"][0]["path"] == w.path_in
        up = form([info_part({"packageID": w.a}), *file_parts([("in/up.txt", b"up")])])
        data = await call(narrow, "POST", "/v1/object/upload", **up)
        up_id = data["uploadeds"][0]["objectID"]
        up = form([info_part({"packageID": w.a}), *file_parts([("in/up2.txt", b"up")])])
        await call(narrow, "POST", "/object/upload", **up)  # the seed's example spelling
        part = form([info_part({"objectID": w.pending_in, "index": 1}), ("file", "p", b"x")])
        await call(narrow, "POST", "/v1/object/uploadPart", **part)
        body = {"objectID": w.pending_in, "indexes": [0, 1]}
        data = await call(narrow, "POST", "/v1/object/completeMultipartUpload", json=body)
        assert data["object"]["fileHash"].startswith("Comp")
        body = {"packageID": w.a, "path": "in/new-mp"}
        await call(narrow, "POST", "/v1/object/newMultipartUpload", json=body)
        cloning = {"objectID": w.obj_in, "newPackageID": w.a, "newPath": "in/cloned.txt"}
        data = await call(narrow, "POST", "/v1/object/clone", json={"clonings": [cloning]})
        cloned = data["objects"][0]["objectID"]
        moving = {"objectID": up_id, "packageID": w.a, "path": "in/moved.txt"}
        data = await call(narrow, "POST", "/v1/object/move", json={"movings": [moving]})
        assert data["successes"] == [up_id]
        body = {"packageID": w.a, "path": "in/moved.txt"}
        await call(narrow, "POST", "/v1/object/deleteByPath", json=body)
        await call(narrow, "POST", "/v1/object/delete", json={"objectIDs": [cloned]})

        # The project key, on its project.
        pkey = w.p_key
        await call(pkey, "POST", "/v1/bucket/update", json={"bucketID": w.p, "redundancy": None})
        body = {"bucketID": w.p, "name": "vic-scratch"}
        scratch = (await call(pkey, "POST", "/v1/package/create", json=body))["package"]
        sid = scratch["packageID"]
        body = {"packageID": sid, "redundancy": {"type": "none"}}
        await call(pkey, "POST", "/v1/package/update", json=body)
        body = {"packageID": sid, "bucketID": w.p, "name": "vic-scratch2"}
        copy = (await call(pkey, "POST", "/v1/package/clone", json=body))["package"]
        await call(pkey, "POST", "/v1/package/delete", json={"packageID": copy["packageID"]})
        child = restrict(pkey, allow={"read"})
        data = await call(pkey, "POST", "/v1/apiKey/revoke", json={"key": child})
        assert data["apiKey"]["apiKeyID"] == w.p_key_id
        await call(w.e_key, "POST", "/v1/bucket/delete", json={"bucketID": w.e})
        data = await call(pkey, "POST", "/v1/project/passphrase", json={"accessGrant": w.p_grant})
        assert data["bucketID"] == w.p

        # The user key, on the account.
        root = w.root_key
        await call(root, "POST", "/v1/bucket/create", json={"name": "vic-new"})
        body = {"bucketID": w.p, "name": "vic-new-key"}
        made = (await call(root, "POST", "/v1/apiKey/create", json=body))["apiKey"]
        listed = await call(root, "GET", "/v1/apiKey/list", params={"bucketID": w.p})
        assert made["apiKeyID"] in [k["apiKeyID"] for k in listed["apiKeys"]]
        await call(root, "POST", "/v1/apiKey/delete", json={"apiKeyID": made["apiKeyID"]})
        made = (await call(root, "POST", "/v1/userKey/create", json={"name": "vic-k2"}))["userKey"]
        listed = await call(root, "GET", "/v1/userKey/list")
        assert made["userKeyID"] in [k["userKeyID"] for k in listed["userKeys"]]
        await call(root, "POST", "/v1/userKey/delete", json={"userKeyID": made["userKeyID"]})
        body = {"name": "vic-new-space", "storage": {"type": "Local", "path": str(w.tmp / "ns")}}
        space = (await call(root, "POST", "/v1/userSpace/create", json=body))["userSpace"]
        ns = {"userSpaceID": space["userSpaceID"]}
        await call(root, "GET", "/v1/userSpace/get", params=ns)
        await call(root, "POST", "/v1/userSpace/update", json={**ns, "name": "vic-renamed"})
        await call(root, "POST", "/v1/userSpace/test", json=ns)
        await call(root, "POST", "/v1/userSpace/drain", json=ns)
        await call(root, "POST", "/v1/userSpace/delete", json=ns)
        listed = await call(root, "GET", "/v1/userSpace/list")
        assert w.space in [s["userSpaceID"] for s in listed["userSpaces"]]
        body = {"userSpaceID": w.space, "path": "vic-syncsrc", "bucketID": w.p, "name": "vic-imp"}
        data = await call(root, "POST", "/v1/userSpace/createPackage", json=body)
        assert data["objectCount"] == 1
        body = {"packageID": w.a, "userSpaceID": w.space, "rootPath": "vic-export"}
        data = await call(root, "POST", "/v1/userSpace/downloadPackage", json=body)
        assert data["objectCount"] >= 1
        body = {
            "srcUserSpaceID": w.space,
            "srcPath": "vic-syncsrc",
            "dests": [{"userSpaceID": w.space, "path": "vic-dst2"}],
            "mode": "full",
            "trigger": {"type": "interval", "seconds": 3600},
        }
        await call(root, "POST", "/v1/spaceSync/createTask", json=body)
        data = await call(root, "GET", "/v1/spaceSync/getTask", params={"taskID": w.task})
        assert data["task"]["taskID"] == w.task
        data = await call(root, "GET", "/v1/spaceSync/listTasks")
        assert w.task in [t["taskID"] for t in data["tasks"]]
        await call(root, "POST", "/v1/spaceSync/cancelTask", json={"taskID": w.task})

        # The public routes need no key and show nothing of anybody's.
        for path in sorted(PUBLIC_ROUTES):
            r = await call(None, "GET", path)
            assert not leaks(w, frozenset(), r.request, r), path

    routes = app_routes(create_app(ctx, background=False))
    assert routes - {r for r in routes if r[1] in PUBLIC_ROUTES} <= covered, sorted(
        routes - covered
    )
