"""Support of the authorization matrix (``test_authz_matrix.py``): the
victim's world, the attackers' credentials, the routes of the v1 app, and
the leak check every answer of the matrix passes.

The victim is the ``admin`` user (the ``api`` fixture's client): two
projects with data (P and Q) and an empty one (E), project keys of each, a
second user key, a user space of their own and a sync task. The attacker is
``mallory``, a second user with a bucket and a project key of her own; the
restricted keys are all derived, offline, from the victim's key of P.

Every thing of the world carries the strings (names, paths, bytes, UUIDs,
key texts) and the id that would give it away, and a *group*: a row of the
matrix names the groups its credential may legitimately see (its *reach*);
everything else must never appear in an answer, unless the request itself
carried it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI
from jcs_helpers import Api, snapshot

from jointcloud.api.jcs.app import create_app
from jointcloud.context import Context
from jointcloud.keys.caveats import APIKey, CaveatPath, KeyCaveat
from jointcloud.keys.grant import new_grant

# The routes documented as public (docs/jcs-v1.md: "None of the three needs a
# key"), and FastAPI's other documentation pages beside /docs.
PUBLIC_ROUTES = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, walking included routers (which
    FastAPI >= 0.160 no longer flattens into ``app.routes``). A route of a
    kind this does not know fails, so none can be skipped silently."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(list(included.routes), prefix + route.include_context.prefix)
            elif hasattr(route, "path") and getattr(route, "methods", None):
                for method in route.methods:
                    found.add((method, prefix + route.path))
            else:
                raise AssertionError(f"a route of unknown kind: {route!r}")

    walk(list(app.routes), "")
    return found


def restrict(key: str, **caveat: Any) -> str:
    return APIKey.parse(key).restrict(KeyCaveat.allowing(**caveat)).serialize()


# --- the world --------------------------------------------------------------


@dataclass(frozen=True)
class Thing:
    """One thing of the victim's: what would betray it, and its group."""

    label: str
    group: str
    kind: str | None = None  # bucket, package, object, space, task, apikey, userkey
    id: int | None = None
    strings: tuple[str, ...] = ()


@dataclass
class World:
    tmp: Path
    # project P: packages A (objects in/ and out/) and D; project Q; empty E
    p: int
    p_name: str
    a: int
    a_name: str
    d: int
    d_name: str
    obj_in: int
    obj_out: int
    path_in: str
    path_out: str
    pending_in: int
    pending_out: int
    q: int
    e: int
    space: int  # the victim's own Local space (vic-space)
    space_path: Path
    task: int
    p_key: str
    p_key_id: int
    p_grant: str  # an access grant of p_key (its passphrase: set_passphrase's target)
    q_key: str
    e_key: str
    user_key: str  # a second user key of the victim's
    user_key_id: int
    root_key: str
    # mallory, the attacker
    mallory_id: int
    mallory_key: str
    mallory_project_key: str
    things: list[Thing] = field(default_factory=list)

    def secret_ids(self, reach: frozenset[str], exclude: set[int]) -> set[tuple[str, int]]:
        return {
            (t.kind, t.id)
            for t in self.things
            if t.kind is not None
            and t.id is not None
            and t.group not in reach
            and t.id not in exclude
        }


BYTES = {
    "in": b"VICTIM-BYTES-in-a-5e1f",
    "out": b"VICTIM-BYTES-out-b-9c2d",
    "doc": b"VICTIM-BYTES-doc-77aa",
    "q": b"VICTIM-BYTES-q-3b0e",
}


async def _data(r: httpx.Response) -> Any:
    assert r.status_code == 200, (r.request.url, r.text)
    body = r.json()
    assert body["code"] == "OK", body
    return body["data"]


async def spread_ids(api: Api, buckets: int = 10, packages: int = 30) -> None:
    """Burn bucket and package ids (never reused) so that the ids of the
    world's buckets, packages and objects differ: an id in an answer then
    says which thing it is."""
    scratch = await api.bucket("scratch-ids")
    for _ in range(packages):
        pid = await api.package("scratch", bucket_id=scratch)
        await api.post("/v1/package/delete", {"packageID": pid})
    for _ in range(buckets):
        bid = await api.bucket("scratch-more")
        await api.post("/v1/bucket/delete", {"bucketID": bid})
    await api.post("/v1/bucket/delete", {"bucketID": scratch})


async def build_world(api: Api, ctx: Context, root_key: str, gen: int = 0) -> World:
    """The victim's things and mallory's, with as little data as will do.
    ``gen`` tells the names of a world built after another one apart."""
    tmp = api.tmp_path
    v = f"vic{gen or ''}"
    things: list[Thing] = []

    def add(label: str, group: str, kind: str | None, id_: int | None, *strings: str) -> None:
        things.append(Thing(label, group, kind, id_, tuple(s for s in strings if s)))

    space_path = tmp / f"{v}-space"
    made = await api.post(
        "/v1/userSpace/create",
        {"name": f"{v}-space", "storage": {"type": "Local", "path": str(space_path)}},
    )
    space = int(made["userSpace"]["userSpaceID"])
    api.spaces[space] = space_path
    for sid, path in api.spaces.items():
        add(f"space {sid}", "account", "space", sid, str(path))
    add("space name", "account", None, None, f"{v}-space")
    # A directory to import from and the victim's pending sync task.
    (space_path / f"{v}-syncsrc").mkdir(parents=True)
    (space_path / f"{v}-syncsrc" / f"{v}-imported.txt").write_bytes(b"VICTIM-BYTES-import-41c3")
    add("import file", "account", None, None, f"{v}-imported.txt", "VICTIM-BYTES-import-41c3")
    task = (
        await api.post(
            "/v1/spaceSync/createTask",
            {
                "srcUserSpaceID": space,
                "srcPath": f"{v}-syncsrc",
                "dests": [{"userSpaceID": space, "path": f"{v}-syncdst"}],
                "mode": "full",
                "trigger": {"type": "interval", "seconds": 3600},
            },
        )
    )["task"]
    add("task", "account", "task", task["taskID"], f"{v}-syncsrc", f"{v}-syncdst")

    buckets = {}
    for group, name in (("P", f"{v}-proj"), ("Q", f"{v}-other"), ("E", f"{v}-empty")):
        b = (await api.post("/v1/bucket/create", {"name": name}))["bucket"]
        buckets[group] = b
        add(f"bucket {name}", group, "bucket", b["bucketID"], name, b["projectID"])
    p, q, e = (int(buckets[g]["bucketID"]) for g in "PQE")
    a = await api.package(f"{v}-photos", bucket_id=p)
    d = await api.package(f"{v}-docs", bucket_id=p)
    qp = await api.package(f"{v}-qpkg", bucket_id=q)
    add("package vic-photos", "A", "package", a, f"{v}-photos")
    add("package vic-docs", "D", "package", d, f"{v}-docs")
    add("package vic-qpkg", "Q", "package", qp, f"{v}-qpkg")
    path_in, path_out = f"in/{v}-a.txt", f"out/{v}-b.txt"
    o_in, o_out = await api.upload(a, [(path_in, BYTES["in"]), (path_out, BYTES["out"])])
    o_doc = await api.upload_one(d, f"{v}-cv.txt", BYTES["doc"])
    o_q = await api.upload_one(qp, f"{v}-q.txt", BYTES["q"])
    for group, o, raw in (
        ("in", o_in, BYTES["in"]),
        ("out", o_out, BYTES["out"]),
        ("doc", o_doc, BYTES["doc"]),
        ("Q", o_q, BYTES["q"]),
    ):
        add(f"object {o['path']}", group, "object", o["objectID"], o["path"], o["fileHash"])
        add(f"bytes of {o['path']}", f"{group}-bytes", None, None, raw.decode())
    pending = {}
    for group, mp_path in (("in", f"in/{v}-pending"), ("out", f"out/{v}-pending")):
        made = await api.post("/v1/object/newMultipartUpload", {"packageID": a, "path": mp_path})
        oid = int(made["object"]["objectID"])
        r = await api.upload_part(oid, 0, b"VICTIM-BYTES-part-" + group.encode())
        assert r.status_code == 200, r.text
        pending[group] = oid
        add(f"pending {mp_path}", group, "object", oid, mp_path)
        add(f"part of {mp_path}", f"{group}-bytes", None, None, "VICTIM-BYTES-part-" + group)

    keys = {}
    for group, bucket in (("pkey", p), ("qkey", q), ("ekey", e)):
        name = f"{v}-{group}"
        made = (await api.post("/v1/apiKey/create", {"bucketID": bucket, "name": name}))["apiKey"]
        keys[group] = made
        add(f"API key {name}", group, "apikey", made["apiKeyID"], name, made["key"])
    user_key = (await api.post("/v1/userKey/create", {"name": f"{v}-ukey"}))["userKey"]
    add(f"user key {v}-ukey", "account", "userkey", user_key["userKeyID"], f"{v}-ukey")
    add("user key text", "account", None, None, user_key["key"], user_key["hint"])
    for k in (await api.get("/v1/userKey/list"))["userKeys"]:
        add(f"user key {k['userKeyID']}", "account", "userkey", k["userKeyID"])
    add("root key", "account", None, None, root_key)

    # mallory: a user of her own, a bucket and a project key of it.
    mallory, mkey = await ctx.add_user(f"mallory{gen or ''}")
    async with client(ctx) as c:
        h = {"Authorization": f"Bearer {mkey}"}
        mb = await _data(await c.post("/v1/bucket/create", json={"name": f"mal{gen}-b"}, headers=h))
        mbid = mb["bucket"]["bucketID"]
        mk = await _data(
            await c.post("/v1/apiKey/create", json={"bucketID": mbid, "name": "mal-k"}, headers=h)
        )
        info = await _data(await c.get("/v1/project/info", headers=bearer(keys["pkey"]["key"])))
    p_grant = new_grant(
        info["satellite"], APIKey.parse(keys["pkey"]["key"]), "matrix passphrase", info["projectID"]
    ).serialize()
    return World(
        tmp=tmp,
        p=p,
        p_name=f"{v}-proj",
        a=a,
        a_name=f"{v}-photos",
        d_name=f"{v}-docs",
        d=d,
        obj_in=o_in["objectID"],
        obj_out=o_out["objectID"],
        path_in=path_in,
        path_out=path_out,
        pending_in=pending["in"],
        pending_out=pending["out"],
        q=q,
        e=e,
        space=space,
        space_path=space_path,
        task=int(task["taskID"]),
        p_key=keys["pkey"]["key"],
        p_key_id=int(keys["pkey"]["apiKeyID"]),
        p_grant=p_grant,
        q_key=keys["qkey"]["key"],
        e_key=keys["ekey"]["key"],
        user_key=user_key["key"],
        user_key_id=int(user_key["userKeyID"]),
        root_key=root_key,
        mallory_id=mallory.user_id,
        mallory_key=mkey,
        mallory_project_key=mk["apiKey"]["key"],
        things=things,
    )


def client(ctx: Context) -> httpx.AsyncClient:
    """An in-process client that sends no key unless told."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx, background=False)),
        base_url="http://jcs.test",
        timeout=60,
    )


def bearer(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def time_keys(p_key: str) -> tuple[str, str]:
    now = datetime.now(UTC)
    expired = restrict(p_key, not_after=now - timedelta(minutes=5))
    not_yet = restrict(p_key, not_before=now + timedelta(hours=1))
    return expired, not_yet


def wrong_prefix_key(w: World) -> str:
    """Everything, but only under ``in/`` of package A."""
    return restrict(w.p_key, paths=[CaveatPath(w.a_name, "in/")])


def wrong_package_key(w: World) -> str:
    """Everything, but only in package D."""
    return restrict(w.p_key, paths=[CaveatPath(w.d_name)])


# --- the victim's state ------------------------------------------------------


async def victim_state(api: Api, c: httpx.AsyncClient, w: World) -> dict[str, Any]:
    """What the victim can observe: the catalog and contents, spaces and
    block files (``jcs_helpers.snapshot``), their keys and tasks, and which
    of their keys still work."""
    state = await snapshot(api)
    for b in (w.p, w.q, w.e):
        state[f"keys{b}"] = await api.get("/v1/apiKey/list", bucketID=b)
    state["userKeys"] = await api.get("/v1/userKey/list")
    state["tasks"] = await api.get("/v1/spaceSync/listTasks")
    for label, key in (
        ("p", w.p_key),
        ("q", w.q_key),
        ("e", w.e_key),
        ("user", w.user_key),
        ("root", w.root_key),
    ):
        r = await c.get("/v1/bucket/listAll", headers=bearer(key))
        state[f"works:{label}"] = r.status_code
    state["import dir"] = sorted(
        (str(f.relative_to(w.space_path)), hashlib.sha256(f.read_bytes()).hexdigest())
        for f in w.space_path.rglob("*")
        if f.is_file() and "jcs" not in f.relative_to(w.space_path).parts
    )
    return state


# --- the leak check -----------------------------------------------------------

ID_FIELDS = {
    "bucketID": "bucket",
    "packageID": "package",
    "newPackageID": "package",
    "objectID": "object",
    "successes": "object",
    "userSpaceID": "space",
    "srcUserSpaceID": "space",
    "affinity": "space",
    "taskID": "task",
    "apiKeyID": "apikey",
    "userKeyID": "userkey",
}
MESSAGE_IDS = [
    ("bucket", re.compile(r"\bbuckets? (\d+)")),
    ("package", re.compile(r"\bpackages? (\d+)")),
    ("object", re.compile(r"\bobjects? (\d+)")),
    ("object", re.compile(r"objects not found: ([\d, ]+)")),
    ("space", re.compile(r"user spaces? (\d+)")),
    ("task", re.compile(r"\btasks? (\d+)")),
    ("apikey", re.compile(r"API key (\d+)")),
    ("userkey", re.compile(r"user key (\d+)")),
]


def ints_in(value: Any) -> Iterator[int]:
    """Every integer a request carries (JSON, query, form ``info``)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, str):
        yield from (int(x) for x in re.findall(r"\d+", value))
    elif isinstance(value, dict):
        for v in value.values():
            yield from ints_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from ints_in(v)


def _ids_in_data(value: Any, kind: str | None = None) -> Iterator[tuple[str, int]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _ids_in_data(v, ID_FIELDS.get(k))
    elif isinstance(value, list):
        for v in value:
            yield from _ids_in_data(v, kind)
    elif isinstance(value, int) and not isinstance(value, bool) and kind is not None:
        yield kind, value


def leaks(
    w: World, reach: frozenset[str], request: httpx.Request, response: httpx.Response
) -> list[str]:
    """What of the victim's outside ``reach`` the answer gives away."""
    sent = unquote(str(request.url)) + " " + request.content.decode("utf-8", "replace")
    sent += " " + request.headers.get("authorization", "")
    exclude = set(ints_in(str(request.url.query, "ascii")))
    try:
        exclude |= set(ints_in(json.loads(request.content))) if request.content else set()
    except ValueError:  # a form: the ints of its text
        exclude |= set(ints_in(request.content.decode("utf-8", "replace")))
    answer = response.text if request.method != "HEAD" else ""
    answer += "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    found = []
    for t in w.things:
        if t.group in reach:
            continue
        for s in t.strings:
            if s not in sent and s in answer:
                found.append(f"{t.label}: {s!r}")
    secret = w.secret_ids(reach, exclude)
    body: Any = None
    if request.method != "HEAD" and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        body = response.json()
    if isinstance(body, dict):
        for kind, value in _ids_in_data(body.get("data")):
            if (kind, value) in secret:
                found.append(f"{kind} id {value} in data")
        message = str(body.get("message", ""))
        for kind, pattern in MESSAGE_IDS:
            for m in pattern.finditer(message):
                for value in (int(x) for x in re.findall(r"\d+", m.group(1))):
                    if (kind, value) in secret:
                        found.append(f"{kind} id {value} in message")
    return found
