"""Import and export (§4.6, §4.7) and sync tasks (§5); rules in docs/sync.md."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Body as JsonBody
from fastapi.responses import JSONResponse

from jointcloud.api.jcs import transfers, views
from jointcloud.api.jcs.deps import INT64_MAX, Ctx, CurrentPrincipal, check_user_id
from jointcloud.api.jcs.envelope import ok
from jointcloud.core.authz import Principal
from jointcloud.core.transfer.service import MAX_DESTS
from jointcloud.core.transfer.spec import MAX_INTERVAL
from jointcloud.errors import BadArgument

router = APIRouter()
_DIGITS = re.compile(r"[0-9]{1,30}")

# The bodies are parsed field by field in api/jcs/transfers.py (messages
# name the field, e.g. "dests[1].path"); here only "is it a JSON object".
Payload = Annotated[Any, JsonBody()]


# ... and their shapes are declared here for /openapi.json (what
# transfers.py takes; its bounds in docs/jcs-v1.md, "Limits").
_ID: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": INT64_MAX}
_SIZE: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
_WORDS: dict[str, Any] = {"type": "array", "items": {"type": "string", "minLength": 1}}
_FILTER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "minSize": _SIZE,
        "maxSize": _SIZE,
        "includeExt": _WORDS,
        "excludeExt": _WORDS,
        "includePaths": _WORDS,
        "excludePaths": _WORDS,
    },
    "additionalProperties": False,
}
_TRIGGER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["once", "interval", "window"]},
        "seconds": {"type": "integer", "minimum": 1, "maximum": MAX_INTERVAL},
        "start": {"type": "string", "description": "HH:MM"},
        "end": {"type": "string", "description": "HH:MM"},
        "timezone": {"type": "string", "description": "an IANA zone; default UTC"},
    },
    "required": ["type"],
}


def _json_body(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    """openapi_extra: the JSON object a transfer endpoint takes."""
    properties = {"userID": {"type": "integer"}, **properties}
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


IMPORT_BODY = _json_body(
    ["userSpaceID", "path", "bucketID", "name"],
    userSpaceID=_ID,
    path={"type": "string"},
    bucketID=_ID,
    name={"type": "string"},
    redundancy={"type": ["object", "null"]},
    affinity=_ID,
    filter=_FILTER,
    **{"async": {"type": "boolean"}},
)
EXPORT_BODY = _json_body(
    ["packageID", "userSpaceID", "rootPath"],
    packageID=_ID,
    userSpaceID=_ID,
    rootPath={"type": "string"},
    filter=_FILTER,
    **{"async": {"type": "boolean"}},
)
SYNC_BODY = _json_body(
    ["srcUserSpaceID", "srcPath", "dests"],
    srcUserSpaceID=_ID,
    srcPath={"type": "string"},
    dests={
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_DESTS,
        "items": {
            "type": "object",
            "properties": {"userSpaceID": _ID, "path": {"type": "string"}},
            "required": ["userSpaceID", "path"],
        },
    },
    mode={"type": "string", "enum": ["full", "diff"]},
    compare={"type": "string", "enum": ["sizeMtime", "hash"]},
    trigger=_TRIGGER,
    filter=_FILTER,
    deleteSource={"type": "boolean"},
)
CANCEL_BODY = _json_body(["taskID"], taskID=_ID)


def _object(payload: Any, principal: Principal) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadArgument("the request body must be a JSON object")
    check_user_id(payload.get("userID"), principal)
    return payload


@router.post("/v1/userSpace/createPackage", openapi_extra=IMPORT_BODY)
async def create_package(payload: Payload, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    cmd = transfers.import_command(_object(payload, principal))
    answer = await ctx.transfers.create_import(principal, cmd)
    data: dict[str, Any] = {"package": views.package(answer.package)}
    if answer.task is not None:
        data["task"] = transfers.task(answer.task)
    else:
        data.update(objectCount=answer.object_count, totalSize=answer.total_size)
    return ok(data)


@router.post("/v1/userSpace/downloadPackage", openapi_extra=EXPORT_BODY)
async def download_package(payload: Payload, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    cmd = transfers.export_command(_object(payload, principal))
    answer = await ctx.transfers.create_export(principal, cmd)
    if answer.task is not None:
        return ok({"task": transfers.task(answer.task)})
    return ok({"objectCount": answer.object_count, "totalSize": answer.total_size})


@router.post("/v1/spaceSync/createTask", openapi_extra=SYNC_BODY)
async def create_task(payload: Payload, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    cmd = transfers.sync_command(_object(payload, principal))
    return ok({"task": transfers.task(await ctx.transfers.create_sync(principal, cmd))})


def _integer_id(schema: dict[str, Any]) -> None:
    """/openapi.json shows taskID as what it must be: the text is read here
    (transfers.task_id), but only a positive int64 is taken."""
    schema.clear()
    schema.update(type="integer", minimum=1, maximum=INT64_MAX, title="Taskid")


TaskIdText = Annotated[str, Query(json_schema_extra=_integer_id)]


@router.get("/v1/spaceSync/getTask")
async def get_task(principal: CurrentPrincipal, ctx: Ctx, taskID: TaskIdText) -> JSONResponse:
    # A query parameter is text: digits become the integer that is checked
    # (positive, int64); anything else is refused, naming taskID.
    raw: object = int(taskID) if _DIGITS.fullmatch(taskID) else taskID
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


@router.post("/v1/spaceSync/cancelTask", openapi_extra=CANCEL_BODY)
async def cancel_task(payload: Payload, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body = _object(payload, principal)
    await ctx.transfers.cancel(principal, transfers.task_id(body.get("taskID")))
    return ok(None)
