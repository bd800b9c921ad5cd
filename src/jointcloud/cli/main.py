"""The ``jcs`` command line."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from jointcloud.cli import (
    commands_admin,
    commands_catalog,
    commands_keys,
    commands_objects,
    commands_spaces,
    commands_transfers,
    commands_users,
)
from jointcloud.cli.common import CliError, GlobalOptions
from jointcloud.config import Settings


class JcsTyper(typer.Typer):
    """Turns a ``CliError`` anywhere into ``error: <Code>: <message>`` on
    stderr and exit status 1, instead of a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except CliError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr, flush=True)
            sys.exit(1)
        except UnicodeEncodeError:
            # An argument of bytes that are not UTF-8 (Python keeps them as
            # surrogates) fails where it is first sent, deep in httpx: named
            # here instead, as names and object paths are UTF-8 text.
            odd = [a for a in sys.argv[1:] if not _is_utf8(a)]
            if not odd:
                raise
            shown = ", ".join(
                f"'{os.fsencode(a).decode('utf-8', 'backslashreplace')}'" for a in odd
            )
            print(f"error: BadArgument: not UTF-8 text: {shown}", file=sys.stderr, flush=True)
            sys.exit(1)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


app = JcsTyper(no_args_is_help=True, add_completion=False, help="JointCloud storage")


@app.callback()
def main(
    ctx: typer.Context,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint", help="server URL (else $JCS_ENDPOINT, else http://127.0.0.1:7890)"
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="API key (else $JCS_API_KEY, else DATA_DIR/root.key)"),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            help="server data dir whose root.key to use (else $JCS_DATA_DIR, else ./jcs-data)",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="no progress bars")] = False,
) -> None:
    """JointCloud: one object store over the storage you own."""
    ctx.obj = GlobalOptions(endpoint=endpoint, api_key=api_key, data_dir=data_dir, quiet=quiet)


app.add_typer(commands_spaces.app, name="space")
commands_admin.app.add_typer(commands_users.app, name="user")
app.add_typer(commands_admin.app, name="admin")
app.add_typer(commands_catalog.bucket_app, name="bucket")
app.add_typer(commands_catalog.package_app, name="package")
app.add_typer(commands_transfers.app, name="sync")
commands_objects.register(app)
commands_keys.register(app)


@app.command()
def serve(
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="data directory")] = None,
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default SQLite)")
    ] = None,
    local_root: Annotated[
        list[str] | None,
        typer.Option(
            "--local-root",
            help="a directory that may hold Local user spaces (repeatable; "
            "DATA_DIR/spaces always may; else $JCS_LOCAL_ROOTS)",
        ),
    ] = None,
    allow_private_endpoints: Annotated[
        bool,
        typer.Option(
            "--allow-private-endpoints",
            help="let remote spaces use loopback/private/link-local endpoints "
            "(else $JCS_ALLOW_PRIVATE_ENDPOINTS; $JCS_ENDPOINT_ALLOW lists single ones)",
        ),
    ] = False,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            help="what this process does: api (serve the listeners), jobs (run the "
            "background jobs), or api,jobs (the default; else $JCS_ROLES); "
            "without api only /healthz and /metrics are served",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="this server's public URL, the satellite address in access grants "
            "(default http:// + --listen; else $JCS_PUBLIC_URL)",
        ),
    ] = None,
    s3_listen: Annotated[
        str | None,
        typer.Option(
            "--s3-listen",
            help="HOST:PORT of the S3 endpoint, or off for none "
            "(default 127.0.0.1:7891; else $JCS_S3_LISTEN)",
        ),
    ] = None,
    s3_public_url: Annotated[
        str | None,
        typer.Option(
            "--s3-public-url",
            help="the S3 endpoint's public URL handed out with credentials "
            "(default http:// + --s3-listen; else $JCS_S3_PUBLIC_URL)",
        ),
    ] = None,
    s3_domain: Annotated[
        list[str] | None,
        typer.Option(
            "--s3-domain",
            help="a domain of virtual-host addressing: BUCKET.DOMAIN names a bucket "
            "(repeatable; else $JCS_S3_DOMAINS)",
        ),
    ] = None,
    auth_token: Annotated[
        str | None,
        typer.Option(
            "--auth-token",
            help="operator token for GET /v1/access/{id} (other services); "
            "prefer $JCS_AUTH_TOKEN, a flag shows in the process list",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="processes serving the listeners on the same ports: this one and "
            "N-1 more (default 1; else $JCS_WORKERS)",
        ),
    ] = None,
) -> None:
    """Run the service (JCS v1 API, /metrics, background jobs) on the embedded defaults.

    A bad flag or JCS_* value is reported naming it, with exit status 2.
    """
    from jointcloud.api.host import ListenError
    from jointcloud.cli.serve import run_server
    from jointcloud.config import ConfigError
    from jointcloud.errors import MetadataUnavailable

    try:
        settings = Settings.load(
            data_dir,
            listen,
            database_url,
            local_roots=local_root,
            allow_private_endpoints=allow_private_endpoints,
            roles=role,
            public_url=public_url,
            s3_listen=s3_listen,
            s3_public_url=s3_public_url,
            auth_token=auth_token,
            s3_domains=s3_domain,
            workers=workers,
        )
        run_server(settings)
    except ConfigError as exc:
        print(f"error: configuration: {exc.message}", file=sys.stderr, flush=True)
        raise typer.Exit(2) from None
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(1) from None
    except MetadataUnavailable as exc:  # at start-up: nothing to serve without it
        print(f"error: {exc.message}", file=sys.stderr, flush=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
