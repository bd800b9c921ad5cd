"""Objects (§3): upload, download, list, move, delete, clone, multipart."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr
from starlette.requests import ClientDisconnect

from jointcloud.api.common.http import client_gone
from jointcloud.api.formdata import FormPart, StreamingForm, boundary_of, then_end
from jointcloud.api.jcs import views
from jointcloud.api.jcs.deps import (
    ID,
    INT64_MAX,
    INT64_MIN,
    MAX_IDS,
    Body,
    Ctx,
    CurrentPrincipal,
    QueryID,
    check_user_id,
)
from jointcloud.api.jcs.download import send_object
from jointcloud.api.jcs.envelope import ErrorEnvelope, ok
from jointcloud.core.authz import Principal
from jointcloud.core.commands import ObjectAddress, PackageRef
from jointcloud.core.multipart import MAX_PART_INDEX
from jointcloud.core.paths import object_path
from jointcloud.errors import BadArgument, InvalidPart
from jointcloud.turns import map_pieces_in_turns

router = APIRouter()

INFO_LIMIT = 64 * 1024


def _int_field(
    info: dict[str, Any], name: str, required: bool = True, minimum: int = 1
) -> int | None:
    """An integer of the 'info' part: an ID (positive) unless ``minimum`` says
    otherwise; never beyond int64."""
    value = info.get(name)
    if value is None:
        if required:
            raise BadArgument(f"info.{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadArgument(f"info.{name} must be an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise BadArgument(f"info.{name} is out of the int64 range")
    if value < minimum:
        raise BadArgument(f"info.{name} must be at least {minimum}")
    return value


async def _info_part(parts: AsyncIterator[FormPart], principal: Principal) -> dict[str, Any]:
    first = await anext(parts, None)
    if first is None or first.name != "info":
        raise BadArgument("the first form part must be named 'info'")
    raw = await first.read_all(INFO_LIMIT)
    try:
        info = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadArgument(f"the 'info' part is not valid JSON: {exc}") from exc
    except RecursionError:
        raise BadArgument("the 'info' part is nested too deeply") from None
    if not isinstance(info, dict):
        raise BadArgument("the 'info' part must be a JSON object")
    check_user_id(info.get("userID"), principal)
    return info


def _form(request: Request) -> AsyncIterator[FormPart]:
    boundary = boundary_of(request.headers.get("content-type"))
    return StreamingForm(request.stream(), boundary).parts()


Route = TypeVar("Route", bound=Callable[..., Awaitable[JSONResponse]])


def _gone(what: str) -> Callable[[Route], Route]:
    """A client gone mid-body (at any part of the form) is answered as a bad
    request nobody reads; whatever it sent was discarded, nothing kept."""

    def wrap(route: Route) -> Route:
        @functools.wraps(route)
        async def guarded(*args: Any, **kwargs: Any) -> JSONResponse:
            try:
                return await route(*args, **kwargs)
            except ClientDisconnect:
                raise BadArgument(f"the client disconnected before the {what} was sent") from None

        return cast(Route, guarded)

    return wrap


def _openapi_form(
    info: dict[str, Any], required: list[str], file: str, file_schema: dict[str, Any]
) -> dict[str, Any]:
    """A form route's body for /openapi.json: the form is read as a stream
    (not by FastAPI), so FastAPI cannot describe it. 'info' (JSON) first,
    then the file part(s)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "info": {"type": "object", "properties": info, "required": required},
                            file: file_schema,
                        },
                        "required": ["info", file],
                    },
                    "encoding": {"info": {"contentType": "application/json"}},
                }
            },
        }
    }


_BINARY = {"type": "string", "format": "binary"}
# One 'files' part per object, its filename the URL-encoded path.
UPLOAD_FORM = _openapi_form(
    {
        "packageID": {"type": "integer", "minimum": 1},
        "affinity": {"type": "integer", "minimum": 1},
        "redundancy": {"type": ["object", "null"]},
        "userID": {"type": "integer"},
    },
    ["packageID"],
    "files",
    {"type": "array", "items": _BINARY},
)


# Also at /object/upload: the path of the seed's own example request
# ("POST /object/upload HTTP/1.1", Host localhost:7890), as
# /v1/bucket/download is kept for the seed's spelling of §3.2.
@router.post("/v1/object/upload", openapi_extra=UPLOAD_FORM)
@router.post("/object/upload", openapi_extra=UPLOAD_FORM)
@_gone("upload")
async def upload(request: Request, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    parts = _form(request)
    info = await _info_part(parts, principal)
    package_id = _int_field(info, "packageID")
    affinity = _int_field(info, "affinity", required=False)
    assert package_id is not None

    cap = ctx.settings.max_upload_files
    content_types: dict[str, str] = {}  # as each file's part gave it

    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        count = 0
        async for part in parts:
            count += 1
            if count > cap:  # stored nothing of it; what came before is discarded
                raise BadArgument(await _too_many(parts, count, cap))
            if part.name != "files":
                raise BadArgument(f"unexpected form part {part.name!r}; expected 'files'")
            if not part.filename:
                raise BadArgument("a 'files' part has no filename")
            try:
                path = unquote(part.filename, errors="strict")
            except UnicodeDecodeError:
                raise BadArgument(
                    f"files filename {part.filename!r} is not URL-encoded UTF-8"
                ) from None
            if part.content_type:
                content_types[path] = part.content_type
            yield path, part.chunks()
        # The whole body is in. The server may have stopped reading the
        # socket (flow control); this resumes it, so the check before the
        # commit sees a client that closed the connection since.
        await client_still_there()

    async def client_still_there() -> None:
        if await client_gone(request.receive):
            raise ClientDisconnect()

    uploaded = await ctx.objects.upload(
        principal,
        package_id,
        files(),
        affinity=affinity,
        redundancy=info.get("redundancy"),
        before_commit=client_still_there,
        content_types=content_types,
    )
    return ok({"uploadeds": await map_pieces_in_turns(views.objs, uploaded)})


async def _too_many(parts: AsyncIterator[FormPart], count: int, cap: int) -> str:
    """The message for an upload over the file cap; counts the remaining parts
    (read and dropped, nothing stored) so it can say how many were sent."""
    try:
        async for _ in parts:
            count += 1
    except (BadArgument, ClientDisconnect):
        return (
            f"too many files in one upload: more than {cap} sent, at most {cap} "
            "allowed per request (max_upload_files); split the upload"
        )
    return (
        f"too many files in one upload: {count} sent, at most {cap} allowed per "
        "request (max_upload_files); split the upload"
    )


_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
# A download answers bytes, not the envelope (for /openapi.json; the
# errors are the envelopes of envelope.RESPONSES).
DOWNLOAD: dict[str, Any] = {
    "response_class": Response,
    "responses": {
        200: {"description": "the object's bytes (from offset, length of them)", "content": _BYTES},
        206: {"description": "the bytes a Range header asked for", "content": _BYTES},
        404: {"model": ErrorEnvelope, "description": "DataNotFound: no such object"},
        416: {"model": ErrorEnvelope, "description": "BadArgument: a Range past the end"},
    },
}


# One decorator per method: a GET+HEAD route would give both one operationId.
@router.get("/v1/object/download", **DOWNLOAD)
@router.head("/v1/object/download", **DOWNLOAD)
@router.get("/v1/bucket/download", **DOWNLOAD)
@router.head("/v1/bucket/download", **DOWNLOAD)
async def download(
    request: Request,
    objectID: QueryID,
    principal: CurrentPrincipal,
    ctx: Ctx,
    offset: int | None = None,
    length: int | None = None,
) -> Response:
    content = await ctx.objects.open(principal, objectID)
    return await send_object(request, ctx, content, offset, length)


@router.get("/v1/object/downloadByPath", **DOWNLOAD)
@router.head("/v1/object/downloadByPath", **DOWNLOAD)
async def download_by_path(
    request: Request,
    packageID: QueryID,
    path: str,
    principal: CurrentPrincipal,
    ctx: Ctx,
    offset: int | None = None,
    length: int | None = None,
) -> Response:
    content = await ctx.objects.open(principal, package_id=packageID, path=object_path(path))
    return await send_object(request, ctx, content, offset, length)


@router.get("/v1/object/listByPath")
async def list_by_path(
    request: Request,  # unused: the fast lane calls every endpoint with it
    packageID: QueryID,
    principal: CurrentPrincipal,
    ctx: Ctx,
    path: str = "",
    isPrefix: bool = False,
    noRecursive: bool = False,
    continuationToken: str | None = None,
    maxKeys: int = 1000,
) -> JSONResponse:
    listing = await ctx.objects.list_by_path(
        principal,
        packageID,
        path,
        is_prefix=isPrefix,
        no_recursive=noRecursive,
        token=continuationToken,
        max_keys=maxKeys,
    )
    data: dict[str, Any] = {
        "commonPrefixes": listing.common_prefixes,
        "objects": await map_pieces_in_turns(views.objs, listing.objects),
    }
    if listing.next_token:
        data["nextContinuationToken"] = listing.next_token
    return ok(data)


@router.get("/v1/object/getPackageObjects")
async def package_objects(
    packageID: QueryID, principal: CurrentPrincipal, ctx: Ctx
) -> JSONResponse:
    objs = await ctx.objects.package_objects(principal, packageID)
    return ok({"objects": await map_pieces_in_turns(views.objs, objs)})


class ObjectIds(Body):
    objectIDs: Annotated[list[ID], Field(max_length=MAX_IDS)]


@router.post("/v1/object/listByIDs")
async def list_by_ids(body: ObjectIds, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    found = await ctx.objects.by_ids(principal, body.objectIDs)
    return ok({"object": [views.maybe_obj(o) for o in found]})


class Moving(BaseModel):
    objectID: ID
    packageID: ID
    path: StrictStr


class MoveBody(Body):
    movings: Annotated[list[Moving], Field(max_length=MAX_IDS)]


@router.post("/v1/object/move")
async def move(body: MoveBody, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    done, failed = await ctx.objects.move(
        principal, [(m.objectID, m.packageID, m.path) for m in body.movings]
    )
    return ok(
        {
            "successes": done,
            "failures": [{"objectID": oid, "reason": why} for oid, why in failed],
        }
    )


@router.post("/v1/object/delete")
async def delete(body: ObjectIds, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    await ctx.objects.delete(principal, body.objectIDs)
    return ok(None)


class PathBody(Body):
    packageID: ID
    path: StrictStr


@router.post("/v1/object/deleteByPath")
async def delete_by_path(body: PathBody, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    await ctx.objects.delete_by_path(principal, body.packageID, object_path(body.path))
    return ok(None)


class Cloning(BaseModel):
    objectID: ID
    newPackageID: ID
    newPath: StrictStr


class CloneBody(Body):
    clonings: Annotated[list[Cloning], Field(max_length=MAX_IDS)]


@router.post("/v1/object/clone")
async def clone(body: CloneBody, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    made = await ctx.objects.clone(
        principal, [(c.objectID, c.newPackageID, c.newPath) for c in body.clonings]
    )
    return ok({"objects": [views.maybe_obj(o) for o in made]})


@router.post("/v1/object/newMultipartUpload")
async def new_multipart(body: PathBody, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    address = ObjectAddress(PackageRef.by_id(body.packageID), object_path(body.path))
    info = await ctx.multipart.new_linked(principal, address)
    return ok({"object": views.obj(info)})


# The part's bytes in one 'file' part.
PART_FORM = _openapi_form(
    {"objectID": {"type": "integer"}, "index": {"type": "integer", "minimum": 0}},
    ["objectID", "index"],
    "file",
    _BINARY,
)


@router.post("/v1/object/uploadPart", openapi_extra=PART_FORM)
@_gone("part")
async def upload_part(request: Request, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    parts = _form(request)
    info = await _info_part(parts, principal)
    object_id = _int_field(info, "objectID")
    index = _int_field(info, "index", minimum=0)
    assert object_id is not None and index is not None
    if index > MAX_PART_INDEX:
        raise BadArgument(f"index must be between 0 and {MAX_PART_INDEX}")
    part = await anext(parts, None)
    if part is None or part.name != "file":
        raise BadArgument("uploadPart needs a form part named 'file' after 'info'")
    # The part is recorded when its bytes end: only once the request did.
    body = then_end(part.chunks(), parts)
    await ctx.multipart.upload_part_linked(principal, object_id, index, body)
    return ok({})


# Part numbers start at 0 (core.multipart bounds them from above).
PartIndex = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]


class CompleteBody(Body):
    objectID: ID
    indexes: Annotated[list[PartIndex], Field(max_length=MAX_PART_INDEX + 1)]


@router.post("/v1/object/completeMultipartUpload")
async def complete_multipart(
    body: CompleteBody, principal: CurrentPrincipal, ctx: Ctx
) -> JSONResponse:
    body.check_user(principal)
    if not body.indexes:
        raise BadArgument("indexes must list at least one part")
    if len(set(body.indexes)) != len(body.indexes):
        raise BadArgument("indexes must not repeat a part")
    try:
        info = await ctx.multipart.complete_linked(principal, body.objectID, body.indexes)
    except InvalidPart as exc:
        raise BadArgument(f"indexes: {exc.message}") from exc
    return ok({"object": views.obj(info)})
