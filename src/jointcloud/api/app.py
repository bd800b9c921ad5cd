"""ASGI applications and the lifespan that owns the context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from jointcloud.api.jcs import routes_catalog, routes_objects, routes_spaces, routes_transfers
from jointcloud.api.jcs.envelope import HANDLERS
from jointcloud.context import Context
from jointcloud.jobs.registry import build_jobs
from jointcloud.jobs.runner import JobRunner
from jointcloud.logs import ensure_logging

log = structlog.get_logger(__name__)


def create_app(ctx: Context, *, background: bool = True) -> FastAPI:
    ensure_logging()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = JobRunner(ctx.db, build_jobs(ctx)) if background else None
        task = asyncio.create_task(runner.run_forever()) if runner else None
        app.state.ready = True
        try:
            yield
        finally:
            if runner is not None and task is not None:
                runner.stop()
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
    for module in (routes_catalog, routes_objects, routes_spaces, routes_transfers):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app
