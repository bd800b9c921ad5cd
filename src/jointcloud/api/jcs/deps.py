"""Request-scoped dependencies: the context and the authenticated user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, StrictInt

from jointcloud.context import Context
from jointcloud.core.models import User
from jointcloud.errors import Forbidden


def get_ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def get_user(request: Request) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    ctx = get_ctx(request)
    return await ctx.accounts.authenticate(key.strip() if scheme.lower() == "bearer" else None)


Ctx = Annotated[Context, Depends(get_ctx)]
CurrentUser = Annotated[User, Depends(get_user)]


class Body(BaseModel):
    """Base of request bodies: unknown fields are ignored, ``userID`` is
    accepted for compatibility and must be the caller's own."""

    model_config = ConfigDict(extra="ignore")
    userID: StrictInt | None = None

    def check_user(self, user: User) -> None:
        if self.userID is not None and self.userID != user.user_id:
            raise Forbidden(f"userID {self.userID} is not the user of this API key")
