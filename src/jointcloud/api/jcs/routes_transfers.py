"""Import and export (§4.6, §4.7) and sync tasks (§5); rules in docs/sync.md."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Body as JsonBody
from fastapi.responses import JSONResponse

from jointcloud.api.jcs import transfers, views
from jointcloud.api.jcs.deps import Ctx, CurrentPrincipal, check_user_id
from jointcloud.api.jcs.envelope import ok
from jointcloud.core.authz import Principal
from jointcloud.errors import BadArgument

router = APIRouter()
_DIGITS = re.compile(r"[0-9]{1,30}")

# The bodies are parsed field by field in api/jcs/transfers.py (messages
# name the field, e.g. "dests[1].path"); here only "is it a JSON object".
Payload = Annotated[Any, JsonBody()]


def _object(payload: Any, principal: Principal) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadArgument("the request body must be a JSON object")
    check_user_id(payload.get("userID"), principal)
    return payload


@router.post("/v1/userSpace/createPackage")
async def create_package(payload: Payload, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    cmd = transfers.import_command(_object(payload, principal))
    answer = await ctx.transfers.create_import(principal, cmd)
    data: dict[str, Any] = {"package": views.package(answer.package)}
    if answer.task is not None:
        data["task"] = transfers.task(answer.task)
    else:
        data.update(objectCount=answer.object_count, totalSize=answer.total_size)
    return ok(data)


@router.post("/v1/userSpace/downloadPackage")
async def download_package(payload: Payload, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    cmd = transfers.export_command(_object(payload, principal))
    answer = await ctx.transfers.create_export(principal, cmd)
    if answer.task is not None:
        return ok({"task": transfers.task(answer.task)})
    return ok({"objectCount": answer.object_count, "totalSize": answer.total_size})


@router.post("/v1/spaceSync/createTask")
async def create_task(payload: Payload, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    cmd = transfers.sync_command(_object(payload, principal))
    return ok({"task": transfers.task(await ctx.transfers.create_sync(principal, cmd))})


@router.get("/v1/spaceSync/getTask")
async def get_task(
    principal: CurrentPrincipal, ctx: Ctx, taskID: str | None = None
) -> JSONResponse:
    # A query parameter is text: digits become the integer that is checked
    # (positive, int64); anything else is refused, naming taskID.
    raw: object = int(taskID) if taskID is not None and _DIGITS.fullmatch(taskID) else taskID
    view = await ctx.transfers.get(principal, transfers.task_id(raw))
    return ok({"task": transfers.task(view)})


@router.get("/v1/spaceSync/listTasks")
async def list_tasks(
    principal: CurrentPrincipal,
    ctx: Ctx,
    continuationToken: str | None = None,
    maxTasks: int = 1000,
) -> JSONResponse:
    page = await ctx.transfers.list(principal, token=continuationToken, max_tasks=maxTasks)
    data: dict[str, Any] = {"tasks": [transfers.task(t) for t in page.tasks]}
    if page.next_token:
        data["nextContinuationToken"] = page.next_token
    return ok(data)


@router.post("/v1/spaceSync/cancelTask")
async def cancel_task(payload: Payload, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body = _object(payload, principal)
    await ctx.transfers.cancel(principal, transfers.task_id(body.get("taskID")))
    return ok(None)
