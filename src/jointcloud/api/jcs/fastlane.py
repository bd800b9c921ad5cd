"""The hottest v1 routes without FastAPI's per-request machinery.

Why: a 4 KiB download spent about 60 % of its 1.3 ms of CPU in FastAPI's
routing, dependency solving and middleware stack, and the route's own work
(key, database, bytes) was the rest (pyinstrument, in-process, 2026-12-03).
Object stores live on small objects, so uploads and downloads take a
shorter way in; so do listings by path, where FastAPI was a seventh of a
1,000-object listing's CPU (py-spy, 2026-12-04).

What: a pure ASGI layer between ``Observability`` and FastAPI. A request
in the plain shape of one of the routes below (its method and exact path,
each query parameter the route reads given at most once, the query UTF-8,
IDs and byte counts as plain decimal numbers in range) is answered by
calling the route's own endpoint function with the values FastAPI would
have passed. Anything else (a parameter missing, repeated or malformed,
a root path, every other route) goes to FastAPI unchanged. FastAPI stays the definition
of these routes: its validation answers every malformed request, and its
OpenAPI document describes them. An error raised by the key check or the
endpoint is answered by the same exception handlers (``envelope.HANDLERS``),
so a client cannot tell which way its request went.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from jointcloud.api.jcs import routes_objects
from jointcloud.api.jcs.deps import get_ctx, get_principal, query_not_utf8
from jointcloud.api.jcs.envelope import HANDLERS

# The longest decimal number taken here: every 18-digit number is below
# 2**63, so an ID of the fast lane never needs FastAPI's range check.
MAX_DIGITS = 18

Arguments = dict[str, Any]
Endpoint = Callable[..., Awaitable[Response]]


def _number(raw: str, minimum: int) -> int | None:
    if not (0 < len(raw) <= MAX_DIGITS) or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value >= minimum else None


# How a route reads one query parameter: a required ID (>= 1), a required
# text (as given), an optional byte count (>= 0, None when absent); and,
# left out when absent so that the endpoint's default applies, an optional
# text, flag (exactly "true" or "false") or number (>= 0).
Kind = Literal["id", "text", "count", "opt_text", "flag", "number"]
OPTIONAL: frozenset[Kind] = frozenset({"opt_text", "flag", "number"})
FLAGS = {"true": True, "false": False}


class _Plain:
    """One route's plain shape: which query parameters it reads and how."""

    def __init__(self, endpoint: Endpoint, *params: tuple[str, Kind]) -> None:
        self.endpoint = endpoint
        self.params = params

    def arguments(self, request: Request) -> Arguments | None:
        """The endpoint's query arguments, or None: leave it to FastAPI."""
        query = request.query_params
        if len(query.multi_items()) != len(query):
            return None  # a name given twice, read or not: refused there
        if query_not_utf8(request.scope.get("query_string", b"")) is not None:
            return None  # text that is not UTF-8: refused there too
        if not self.params:
            return {}
        args: Arguments = {}
        for name, kind in self.params:
            given = query.getlist(name)
            if len(given) > 1:
                return None
            if not given:
                if kind in OPTIONAL:
                    continue
                if kind != "count":
                    return None
                args[name] = None
            elif kind in ("text", "opt_text"):
                args[name] = given[0]
            elif kind == "flag":
                flag = FLAGS.get(given[0])
                if flag is None:
                    return None
                args[name] = flag
            else:
                value = _number(given[0], 1 if kind == "id" else 0)
                if value is None:
                    return None
                args[name] = value
        return args


_DOWNLOAD = _Plain(
    routes_objects.download, ("objectID", "id"), ("offset", "count"), ("length", "count")
)
_BY_PATH = _Plain(
    routes_objects.download_by_path,
    ("packageID", "id"),
    ("path", "text"),
    ("offset", "count"),
    ("length", "count"),
)
_UPLOAD = _Plain(routes_objects.upload)
_LIST = _Plain(
    routes_objects.list_by_path,
    ("packageID", "id"),
    ("path", "opt_text"),
    ("isPrefix", "flag"),
    ("noRecursive", "flag"),
    ("continuationToken", "opt_text"),
    ("maxKeys", "number"),
)

ROUTES: dict[tuple[str, str], _Plain] = {
    **{
        (method, path): _DOWNLOAD
        for method in ("GET", "HEAD")
        for path in ("/v1/object/download", "/v1/bucket/download")
    },
    ("GET", "/v1/object/downloadByPath"): _BY_PATH,
    ("HEAD", "/v1/object/downloadByPath"): _BY_PATH,
    ("POST", "/v1/object/upload"): _UPLOAD,
    ("POST", "/object/upload"): _UPLOAD,
    ("GET", "/v1/object/listByPath"): _LIST,
}


async def _answer_error(request: Request, exc: Exception) -> Response:
    """The response FastAPI's exception handlers give for ``exc``."""
    for cls in type(exc).__mro__:
        handler = HANDLERS.get(cls)
        if handler is not None:
            response: Response = await handler(request, exc)
            return response
    raise exc  # not an Exception subclass FastAPI would handle either


class FastLane:
    """Plain requests of the hot routes straight to their endpoints."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and not scope.get("root_path"):
            route = ROUTES.get((scope["method"], scope["path"]))
        if route is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        args = route.arguments(request)
        if args is None:
            await self.app(scope, receive, send)
            return
        scope["jcs.operation"] = scope["path"]  # the route's template: its metrics label
        try:
            principal = await get_principal(request)
            ctx = await get_ctx(request)
            response = await route.endpoint(request, principal=principal, ctx=ctx, **args)
        except Exception as exc:
            response = await _answer_error(request, exc)
        await response(scope, receive, send)
