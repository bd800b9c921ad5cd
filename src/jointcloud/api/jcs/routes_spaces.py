"""User spaces (§4.1–4.5)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jointcloud.api.jcs import views
from jointcloud.api.jcs.deps import ID, Body, Ctx, CurrentPrincipal, QueryID
from jointcloud.api.jcs.envelope import ok
from jointcloud.context import Context
from jointcloud.core.models import UserSpace
from jointcloud.core.paths import check_chars, check_length, check_segments
from jointcloud.core.userspaces import SpaceChanges

router = APIRouter()


def _view(ctx: Context, space: UserSpace) -> dict[str, Any]:
    return views.space(space, ctx.spaces.masked_credential(space))


LOCAL_PATH_MAX = 4096  # bytes: PATH_MAX of Linux


def _check_location(storage: Any, root_path: Any) -> None:
    """The text fields that name a place (``storage.*``, ``rootPath``): no
    control characters, no name over 255 bytes, no over-long path. Types and
    everything else are checked by the core, which names the field too."""
    if isinstance(storage, dict):
        for key, value in storage.items():
            if not isinstance(value, str):
                continue
            field = f"storage.{key}"
            check_chars(value, field)
            check_length(value, field, LOCAL_PATH_MAX)
            if key == "path":
                check_segments(value.split("/"), field)
    if isinstance(root_path, str):
        check_chars(root_path, "rootPath")
        check_length(root_path, "rootPath")
        check_segments(root_path.split("/"), "rootPath")


class SpaceCreate(Body):
    name: Any
    storage: Any
    credential: Any = None
    rootPath: Any = None


class SpaceUpdate(Body):
    userSpaceID: ID
    name: Any = None
    storage: Any = None
    credential: Any = None
    rootPath: Any = None
    state: Any = None  # "Normal" | "Draining"


# JCS field → SpaceChanges field; a field the body does not carry is kept.
_UPDATABLE = {
    "name": "name",
    "storage": "storage",
    "credential": "credential",
    "rootPath": "root_path",
    "state": "state",
}


class SpaceId(Body):
    userSpaceID: ID


class SpaceTest(Body):
    userSpaceID: ID | None = None
    storage: Any = None
    credential: Any = None
    rootPath: Any = None


@router.post("/v1/userSpace/create")
async def create(body: SpaceCreate, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    _check_location(body.storage, body.rootPath)
    space = await ctx.spaces.create(
        principal, body.name, body.storage, body.credential, body.rootPath
    )
    return ok({"userSpace": _view(ctx, space)})


@router.post("/v1/userSpace/update")
async def update(body: SpaceUpdate, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    given = body.model_fields_set
    changes = SpaceChanges(
        **{field: getattr(body, name) for name, field in _UPDATABLE.items() if name in given}
    )
    _check_location(body.storage if "storage" in given else None, body.rootPath)
    space = await ctx.spaces.update(principal, body.userSpaceID, changes)
    return ok({"userSpace": _view(ctx, space)})


@router.post("/v1/userSpace/drain")
async def drain(body: SpaceId, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    """Mark the space Draining: its blocks move to the owner's other spaces
    in the background, after which it can be deleted."""
    body.check_user(principal)
    space = await ctx.spaces.drain(principal, body.userSpaceID)
    return ok({"userSpace": _view(ctx, space)})


@router.post("/v1/userSpace/delete")
async def delete(body: SpaceId, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    await ctx.spaces.delete(principal, body.userSpaceID)
    return ok(None)


@router.get("/v1/userSpace/get")
async def get(userSpaceID: QueryID, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    return ok({"userSpace": _view(ctx, await ctx.spaces.get(principal, userSpaceID))})


@router.get("/v1/userSpace/list")
async def list_spaces(principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    spaces = await ctx.spaces.list(principal)
    return ok({"userSpaces": [_view(ctx, s) for s in spaces]})


@router.post("/v1/userSpace/test")
async def test(body: SpaceTest, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    _check_location(body.storage, body.rootPath)
    if body.userSpaceID is not None:
        latency = await ctx.spaces.test_existing(principal, body.userSpaceID)
    else:
        latency = await ctx.spaces.test_config(
            principal, body.storage, body.credential, body.rootPath
        )
    return ok({"ok": True, "latencyMs": round(latency, 2)})
