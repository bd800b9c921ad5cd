"""The ``jcs`` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from jointcloud.config import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="JointCloud storage")


@app.command()
def serve(
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="data directory")] = None,
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default SQLite)")
    ] = None,
) -> None:
    """Run the service (JCS v1 API) on the embedded defaults."""
    from jointcloud.cli.serve import run_server

    run_server(Settings.load(data_dir, listen, database_url))


if __name__ == "__main__":
    app()
