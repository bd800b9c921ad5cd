"""Import and export (§4.6, §4.7) and sync tasks (§5); rules in docs/sync.md."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Body as JsonBody
from fastapi.responses import JSONResponse

from jointcloud.api.jcs import views
from jointcloud.api.jcs.deps import Ctx, CurrentUser, check_user_id
from jointcloud.api.jcs.envelope import ok
from jointcloud.core.models import User
from jointcloud.core.transfer import TaskView
from jointcloud.errors import BadArgument

router = APIRouter()
_DIGITS = re.compile(r"[0-9]{1,30}")

# The bodies are validated field by field in the core (messages name the
# field, e.g. "dests[1].path"); here only "is it a JSON object".
Payload = Annotated[Any, JsonBody()]


def _object(payload: Any, user: User) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadArgument("the request body must be a JSON object")
    check_user_id(payload.get("userID"), user)
    return payload


def _task(view: TaskView) -> dict[str, Any]:
    return views.task(view.task, view.failures)


@router.post("/v1/userSpace/createPackage")
async def create_package(payload: Payload, user: CurrentUser, ctx: Ctx) -> JSONResponse:
    answer = await ctx.transfers.create_import(user.user_id, _object(payload, user))
    data: dict[str, Any] = {"package": views.package(answer.package)}
    if answer.task is not None:
        data["task"] = _task(answer.task)
    else:
        data.update(objectCount=answer.object_count, totalSize=answer.total_size)
    return ok(data)


@router.post("/v1/userSpace/downloadPackage")
async def download_package(payload: Payload, user: CurrentUser, ctx: Ctx) -> JSONResponse:
    answer = await ctx.transfers.create_export(user.user_id, _object(payload, user))
    if answer.task is not None:
        return ok({"task": _task(answer.task)})
    return ok({"objectCount": answer.object_count, "totalSize": answer.total_size})


@router.post("/v1/spaceSync/createTask")
async def create_task(payload: Payload, user: CurrentUser, ctx: Ctx) -> JSONResponse:
    view = await ctx.transfers.create_sync(user.user_id, _object(payload, user))
    return ok({"task": _task(view)})


@router.get("/v1/spaceSync/getTask")
async def get_task(user: CurrentUser, ctx: Ctx, taskID: str | None = None) -> JSONResponse:
    # A query parameter is text: digits become the integer the core checks
    # (positive, int64); anything else is refused there, naming taskID.
    task_id: object = int(taskID) if taskID is not None and _DIGITS.fullmatch(taskID) else taskID
    return ok({"task": _task(await ctx.transfers.get(user.user_id, task_id))})


@router.get("/v1/spaceSync/listTasks")
async def list_tasks(user: CurrentUser, ctx: Ctx) -> JSONResponse:
    tasks = await ctx.transfers.list(user.user_id)
    return ok({"tasks": [_task(t) for t in tasks]})


@router.post("/v1/spaceSync/cancelTask")
async def cancel_task(payload: Payload, user: CurrentUser, ctx: Ctx) -> JSONResponse:
    body = _object(payload, user)
    await ctx.transfers.cancel(user.user_id, body.get("taskID"))
    return ok(None)
