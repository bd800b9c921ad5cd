"""ASGI applications and the lifespan that owns the context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from jointcloud.api.jcs import routes_catalog, routes_objects, routes_spaces
from jointcloud.api.jcs.envelope import HANDLERS
from jointcloud.context import Context
from jointcloud.core.gc import collect_garbage
from jointcloud.logs import ensure_logging

log = structlog.get_logger(__name__)


async def _gc_loop(ctx: Context) -> None:
    while True:
        await asyncio.sleep(ctx.settings.gc_interval)
        try:
            report = await collect_garbage(ctx.db, ctx.store, ctx.settings.gc_delay)
            if report.layouts:
                log.info("gc", layouts=report.layouts, blocks=report.blocks)
        except Exception as exc:  # keep serving; the next round retries
            log.warning("gc round failed", error=str(exc))


def create_app(ctx: Context, *, background: bool = True) -> FastAPI:
    ensure_logging()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_gc_loop(ctx)) if background else None
        app.state.ready = True
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="JointCloud JCS v1 API",
        version="1",
        lifespan=lifespan,
        exception_handlers=HANDLERS,
    )
    app.state.ctx = ctx
    app.state.ready = False
    for module in (routes_catalog, routes_objects, routes_spaces):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app
