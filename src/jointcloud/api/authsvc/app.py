"""The auth service, as the published one speaks it (storj edge's authservice).

``POST /v1/access {"access_grant", "public"?}`` registers a grant and answers
``{"access_key_id", "secret_key", "endpoint"}``; ``GET /v1/access/{id}``
answers ``{"access_grant", "secret_key", "public"}`` to other services that
send the operator token (``--auth-token``) as ``Authorization: Bearer``, and
is closed when the server has none. Errors are plain text with the status,
as edge writes them; every domain error maps to its status in ``STATUS``,
and a body edge could not decode is 413 (too large) or 422 (``BadBody``).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from jointcloud import errors
from jointcloud.api.common.observability import HttpMetrics, Observability
from jointcloud.context import Context
from jointcloud.keys.credentials import parse_access_key_id

PROTOCOL = "authsvc"
PREFIX = "/v1/access"
MAX_BODY = 64 * 1024  # a grant is a few hundred bytes; caveats add a little each

# Ordered: the first matching class wins.
STATUS: list[tuple[type[errors.DomainError], int]] = [
    (errors.BadArgument, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.MetadataUnavailable, 503),
    (errors.ServerBusy, 503),
]


def error(exc: errors.DomainError) -> Response:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return PlainTextResponse(exc.message + "\n", status_code=status)
    return PlainTextResponse(exc.message + "\n", status_code=500)


def _cors(response: Response) -> Response:
    # Browsers make credentials too (edge allows it the same way).
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = (
        "Content-Type, Accept, Accept-Language, Content-Language, Content-Length, Accept-Encoding"
    )
    return response


class BadBody(Exception):
    """A body edge's ``newAccess`` cannot decode: 413 past the size limit,
    422 for what ``json.Decoder`` refuses (not JSON, not an object, a field
    of the wrong type); a grant that decodes but is no grant stays 400."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _too_large() -> BadBody:
    return BadBody(f"request body larger than {MAX_BODY} bytes", 413)


async def _body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise _too_large()
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > MAX_BODY:
            raise _too_large()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise BadBody("request body must be a JSON object", 422) from None
    if not isinstance(body, dict):
        raise BadBody("request body must be a JSON object", 422)
    return body


def _fields(body: dict[str, Any]) -> tuple[object, bool]:
    """``access_grant`` and ``public`` as Go decodes them into a string and a
    bool: null is the zero value, another type a 422."""
    grant = body.get("access_grant")
    if grant is not None and not isinstance(grant, str):
        raise BadBody("access_grant must be a string", 422)
    public = body.get("public")
    if public is not None and not isinstance(public, bool):
        raise BadBody("public must be true or false", 422)
    return ("" if grant is None else grant), bool(public)


def create_app(ctx: Context, metrics: HttpMetrics | None = None) -> Observability:
    async def new_access(request: Request) -> Response:
        try:
            grant, public = _fields(await _body(request))
            made = await ctx.access.register(grant, public=public)
        except BadBody as exc:
            return _cors(PlainTextResponse(exc.message + "\n", status_code=exc.status))
        except errors.DomainError as exc:
            return _cors(error(exc))
        except ClientDisconnect:  # gone mid-body: nobody reads an answer, nothing was made
            return PlainTextResponse("the client disconnected\n", status_code=400)
        return _cors(
            JSONResponse(
                {
                    "access_key_id": made.access_key_id,
                    "secret_key": made.secret_key,
                    "endpoint": made.endpoint,
                }
            )
        )

    async def preflight(_: Request) -> Response:
        return _cors(Response(status_code=200))

    async def get_access(request: Request) -> Response:
        token = ctx.settings.auth_token
        if token is None:
            return PlainTextResponse(
                "closed: this server was started without --auth-token\n", status_code=403
            )
        given = request.headers.getlist("authorization")
        sent = given[0] if len(given) == 1 else ""  # two: which one counts is a guess
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return PlainTextResponse("unauthorized\n", status_code=401)
        try:  # a malformed id is a bad request, as edge's FromBase32 makes it
            access_key_id = parse_access_key_id(request.path_params["access_key_id"])
        except errors.BadArgument as exc:
            return PlainTextResponse(f"invalid access key id: {exc.message}\n", status_code=400)
        try:
            found = await ctx.access.resolve(access_key_id)
        except errors.DomainError as exc:
            return error(exc)
        return JSONResponse(
            {"access_grant": found.grant, "secret_key": found.secret_key, "public": found.public}
        )

    app = Starlette(
        routes=[
            Route(PREFIX, new_access, methods=["POST"]),
            Route(PREFIX, preflight, methods=["OPTIONS"]),
            Route(PREFIX + "/{access_key_id}", get_access, methods=["GET"]),
        ]
    )
    # A slash too many is a plain 404, not a 307 to a URL made from the
    # client's Host header (fuzzing pass, 2026-12-06).
    app.router.redirect_slashes = False
    return Observability(app, protocol=PROTOCOL, metrics=metrics or HttpMetrics())
