"""Request-scoped dependencies: the context and the authenticated user."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.core.models import User
from jointcloud.errors import BadArgument, Forbidden, Unauthorized


def context_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def get_ctx(request: Request) -> Context:
    # async so FastAPI does not hop to a worker thread for it on every request
    return context_of(request)


def _bearer_key(request: Request) -> str:
    sent = request.headers.getlist("authorization")
    if len(sent) > 1:
        # Which one counts is the sender's guess: a proxy in front may have
        # checked the other (fuzzing, 2026-12-06: the first one was used).
        raise BadArgument(f"{len(sent)} Authorization headers: send one")
    header = sent[0] if sent else ""
    scheme, _, key = header.partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return key


async def get_user(request: Request) -> User:
    return await context_of(request).accounts.authenticate(_bearer_key(request))


async def get_principal(request: Request) -> Principal:
    """Who the request's key stands for; every core call is made with it."""
    return await context_of(request).accounts.principal(_bearer_key(request))


# IDs are positive int64 on the wire and in the database: a larger (or a
# negative) number is a BadArgument naming the field, not an overflow deep in
# the database driver.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ID = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]
QueryID = Annotated[int, Query(ge=1, le=INT64_MAX)]
# Lists of IDs in one request (listByIDs, delete, move, clone).
MAX_IDS = 1000

Ctx = Annotated[Context, Depends(get_ctx)]
CurrentUser = Annotated[User, Depends(get_user)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class Body(BaseModel):
    """Base of request bodies: unknown fields are ignored, ``userID`` is
    accepted for compatibility and must be the caller's own."""

    model_config = ConfigDict(extra="ignore")
    userID: StrictInt | None = None

    def check_user(self, user: User | Principal) -> None:
        check_user_id(self.userID, user)


def check_user_id(user_id: object, user: User | Principal) -> None:
    """A ``userID`` in a request body is accepted only if it is the caller's
    (``user``: the principal, or the user, the request's key stands for)."""
    if user_id is not None and user_id != user.user_id:
        raise Forbidden(f"userID {user_id} is not the user of this API key")


def query_not_utf8(query_string: bytes) -> str | None:
    """What in a raw query string is not UTF-8 once percent-decoded (a
    message naming the parameter), or None when all of it is. Starlette
    decodes such bytes to U+FFFD, which names another object: the fuzzing
    pass of 2026-12-06 had ``downloadByPath?path=%FF`` serve the object
    named U+FFFD. The gateway and the S3 endpoint refuse such text too."""
    if b"%" not in query_string and query_string.isascii():
        return None  # the usual query: nothing to decode
    for pair in query_string.split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        try:
            name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return "a query parameter name is not valid UTF-8"
        try:
            unquote_to_bytes(raw_value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return f"query parameter {name!r} is not valid UTF-8"
    return None


def single_query_values(request: Request) -> None:
    """Every v1 query parameter is one value: one given twice is refused
    rather than read as its last (``objectID=36&objectID=2`` downloaded 2);
    and it is UTF-8 text (``query_not_utf8``)."""
    bad = query_not_utf8(request.scope.get("query_string", b""))
    if bad is not None:
        raise BadArgument(bad)
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise BadArgument(f"query parameter {name!r} is given more than once")
        seen.add(name)
