"""The auth service, as the published one speaks it (storj edge's authservice).

``POST /v1/access {"access_grant", "public"?}`` registers a grant and answers
``{"access_key_id", "secret_key", "endpoint"}``; ``GET /v1/access/{id}``
answers ``{"access_grant", "secret_key", "public"}`` to other services that
send the operator token (``--auth-token``) as ``Authorization: Bearer``, and
is closed when the server has none. Errors are plain text with the status,
as edge writes them; every domain error maps to its status in ``STATUS``.
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


async def _body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise errors.BadArgument(f"request body larger than {MAX_BODY} bytes")
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > MAX_BODY:
            raise errors.BadArgument(f"request body larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise errors.BadArgument("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise errors.BadArgument("request body must be a JSON object")
    return body


def create_app(ctx: Context, metrics: HttpMetrics | None = None) -> Observability:
    async def new_access(request: Request) -> Response:
        try:
            body = await _body(request)
            public = body.get("public", False)
            if not isinstance(public, bool):
                raise errors.BadArgument("public must be true or false")
            made = await ctx.access.register(body.get("access_grant"), public=public)
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
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return PlainTextResponse("unauthorized\n", status_code=401)
        try:
            found = await ctx.access.resolve(request.path_params["access_key_id"])
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
    return Observability(app, protocol=PROTOCOL, metrics=metrics or HttpMetrics())
