"""User keys and project API keys (docs/jcs-v1.md, "Keys").

A key's text is in the one response that creates it and nowhere else:
listings show a hint (user keys) or nothing of it (project keys)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jointcloud.api.jcs.deps import ID, Body, Ctx, CurrentPrincipal
from jointcloud.api.jcs.envelope import ok
from jointcloud.api.jcs.views import ts
from jointcloud.core.models import UserKey

router = APIRouter()


class UserKeyCreate(Body):
    name: Any = ""


class UserKeyId(Body):
    userKeyID: ID


def _user_key(k: UserKey) -> dict[str, Any]:
    return {"userKeyID": k.key_id, "name": k.name, "hint": k.hint, "createTime": ts(k.create_time)}


@router.post("/v1/userKey/create")
async def user_key_create(
    body: UserKeyCreate, principal: CurrentPrincipal, ctx: Ctx
) -> JSONResponse:
    body.check_user(principal)
    key, text = await ctx.accounts.new_key(principal, body.name or "")
    return ok({"userKey": {**_user_key(key), "key": text}})


@router.get("/v1/userKey/list")
async def user_key_list(principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    return ok({"userKeys": [_user_key(k) for k in await ctx.accounts.list_keys(principal)]})


@router.post("/v1/userKey/delete")
async def user_key_delete(body: UserKeyId, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    await ctx.accounts.delete_key_by_id(principal, body.userKeyID)
    return ok()
