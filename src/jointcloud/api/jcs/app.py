"""The JCS v1 API as one ASGI application (``/v1/...`` and ``/healthz``).

It only translates HTTP to core calls: the context it serves is opened and
closed, and the background jobs are run, by the host (``api/host.py``).
Every request passes the shared observability middleware (request id,
metrics) before anything else, so even a 500 carries its ``X-Request-ID``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from jointcloud.api.common.observability import HttpMetrics, Observability
from jointcloud.api.jcs import (
    routes_catalog,
    routes_keys,
    routes_objects,
    routes_spaces,
    routes_transfers,
)
from jointcloud.api.jcs.deps import single_query_values
from jointcloud.api.jcs.envelope import HANDLERS, RESPONSES
from jointcloud.api.jcs.fastlane import FastLane
from jointcloud.context import Context
from jointcloud.logs import ensure_logging

PROTOCOL = "jcs"


class JcsApi(FastAPI):
    """FastAPI with the observability middleware outside its whole stack
    (outside the error handlers, which answer unexpected errors with 500)
    and the fast lane of the hot routes (``fastlane``) inside it."""

    metrics: HttpMetrics
    fast_lane = True

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        if self.fast_lane:
            inner = FastLane(inner)
        return Observability(inner, protocol=PROTOCOL, metrics=self.metrics)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the key every endpoint needs
        (``deps.get_principal`` reads it without FastAPI's security classes,
        so FastAPI does not know of it)."""
        if self.openapi_schema:
            return self.openapi_schema
        doc = super().openapi()  # cached in self.openapi_schema: completed once, here
        doc.setdefault("components", {})["securitySchemes"] = {
            "APIKey": {"type": "http", "scheme": "bearer"}
        }
        doc["security"] = [{"APIKey": []}]
        return doc


def create_app(
    ctx: Context,
    *,
    background: bool = False,
    metrics: HttpMetrics | None = None,
    fast_lane: bool = True,
) -> JcsApi:
    """The JCS v1 app over ``ctx``. ``metrics``: the host's instruments
    (default: instruments of its own). ``background`` must be False: jobs
    are the host's (``jcs serve --role jobs``), or a test's own runner.
    ``fast_lane=False`` sends every request through FastAPI (the tests
    compare both ways)."""
    if background:
        raise ValueError("the JCS app runs no jobs: the host does (api/host.py)")
    ensure_logging()
    app = JcsApi(
        title="JointCloud JCS v1 API",
        version="1",
        exception_handlers=HANDLERS,
        # The envelopes every route answers, in /openapi.json (not FastAPI's 422).
        responses=RESPONSES,
        dependencies=[Depends(single_query_values)],
        # A path with a slash too many is a 404 in the envelope, not a 307 to
        # a URL made from the client's Host header (fuzzing pass, 2026-12-06).
        redirect_slashes=False,
        # Requests are measured by Observability (/metrics); FastAPI's own
        # OpenTelemetry hooks would look for a provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.metrics = metrics if metrics is not None else HttpMetrics()
    app.fast_lane = fast_lane
    app.state.ctx = ctx
    for module in (routes_catalog, routes_keys, routes_objects, routes_spaces, routes_transfers):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app
