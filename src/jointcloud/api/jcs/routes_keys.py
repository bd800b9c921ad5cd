"""User keys and project API keys (docs/jcs-v1.md, "Keys").

A key's text is in the one response that creates it and nowhere else:
listings show a hint (user keys) or nothing of it (project keys)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jointcloud.api.jcs.deps import ID, Body, Ctx, CurrentPrincipal, QueryID
from jointcloud.api.jcs.envelope import ok
from jointcloud.api.jcs.views import ts
from jointcloud.core.models import ProjectKey, UserKey
from jointcloud.errors import BadArgument

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


class ApiKeyCreate(Body):
    bucketID: ID
    name: Any


class ApiKeyId(Body):
    apiKeyID: ID


class ApiKeyRevoke(Body):
    key: Any


def _api_key(k: ProjectKey) -> dict[str, Any]:
    return {
        "apiKeyID": k.key_id,
        "bucketID": k.bucket_id,
        "name": k.name,
        "createTime": ts(k.create_time),
    }


@router.post("/v1/apiKey/create")
async def api_key_create(body: ApiKeyCreate, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    key, text = await ctx.project_keys.create(principal, body.bucketID, body.name)
    return ok({"apiKey": {**_api_key(key), "key": text}})


@router.get("/v1/apiKey/list")
async def api_key_list(bucketID: QueryID, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    keys = await ctx.project_keys.list(principal, bucketID)
    return ok({"apiKeys": [_api_key(k) for k in keys]})


@router.post("/v1/apiKey/delete")
async def api_key_delete(body: ApiKeyId, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    await ctx.project_keys.delete(principal, body.apiKeyID)
    return ok()


@router.post("/v1/apiKey/revoke")
async def api_key_revoke(body: ApiKeyRevoke, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    if not isinstance(body.key, str) or not body.key:
        raise BadArgument("key must be the text of the API key to revoke")
    revoked = await ctx.project_keys.revoke(principal, body.key)
    return ok({"apiKey": _api_key(revoked)})


@router.get("/v1/project/info")
async def project_info(
    principal: CurrentPrincipal, ctx: Ctx, bucketID: QueryID | None = None
) -> JSONResponse:
    """What a grant's maker needs: the project's UUID (the salt of the root
    key) and this server's satellite address."""
    info = await ctx.access.project_info(principal, bucketID)
    return ok(
        {
            "projectID": info.project_uuid,
            "bucketID": info.bucket_id,
            "name": info.name,
            "satellite": ctx.settings.satellite_url(),
        }
    )


class ProjectPassphrase(Body):
    accessGrant: Any = None


@router.post("/v1/project/passphrase")
async def project_passphrase(
    body: ProjectPassphrase, principal: CurrentPrincipal, ctx: Ctx
) -> JSONResponse:
    """Fix the project's passphrase to the grant's (docs/auth-service.md)."""
    info = await ctx.access.set_passphrase(principal, body.accessGrant)
    return ok({"projectID": info.project_uuid, "bucketID": info.bucket_id, "name": info.name})
