"""``jcs serve``: open the context, bootstrap on first start, run uvicorn."""

from __future__ import annotations

import asyncio
import logging
import sys

import structlog
import uvicorn

from jointcloud.api.app import create_app
from jointcloud.config import Settings, parse_listen
from jointcloud.context import Context
from jointcloud.redundancy.erasure import apply_malloc_tuning


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def serve(settings: Settings) -> None:
    host, port = parse_listen(settings.listen)
    ctx = await Context.open(settings)
    try:
        key = await ctx.bootstrap()
        if key is not None:
            # Printed once, on first start; it is also in root.key (mode 0600).
            print(f"root API key (saved to {settings.data_dir / 'root.key'}): {key}", flush=True)
        config = uvicorn.Config(
            create_app(ctx),
            host=host,
            port=port,
            http="httptools",
            loop="none",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        print(f"jcs serving on http://{host}:{port} (data dir {settings.data_dir})", flush=True)
        await server.serve()
    finally:
        await ctx.close()


def run_server(settings: Settings) -> None:
    # Multi-MiB segment buffers churn glibc's heap; see redundancy/erasure.py.
    apply_malloc_tuning()
    configure_logging()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:
        asyncio.run(serve(settings))
