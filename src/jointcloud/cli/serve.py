"""``jcs serve``: open the context, bootstrap on first start, run uvicorn."""

from __future__ import annotations

import asyncio

import uvicorn

from jointcloud.api.app import create_app
from jointcloud.config import Settings, parse_listen
from jointcloud.context import Context
from jointcloud.logs import configure_logging
from jointcloud.redundancy.erasure import apply_malloc_tuning


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
    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:
        asyncio.run(serve(settings))
