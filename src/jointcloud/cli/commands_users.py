"""``jcs admin user``: the operator manages users on the server machine.

A new user's first key is printed once and never again (only its hash is
kept); ``disable`` stops every key, project key and credential of the user
on every server process within seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from jointcloud.cli.commands_admin import DataDir, DbUrl, _run, _settings
from jointcloud.cli.common import err, out

if TYPE_CHECKING:
    from jointcloud.context import Context
    from jointcloud.core.models import User, UserRecord

app = typer.Typer(no_args_is_help=True, help="Users of this server.")

Name = Annotated[str, typer.Argument(help="user name")]


def _print_key(key: str) -> None:
    """The key on stdout (for scripts); the warning on stderr."""
    out.print(key, soft_wrap=True, highlight=False)
    err.print("[yellow]shown once: store it now; only its hash is kept[/yellow]")


@app.command("add")
def add(
    ctx: typer.Context, name: Name, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Create a user with a first key and a local space of their own."""

    async def body(context: Context) -> tuple[User, str]:
        return await context.add_user(name)

    user, key = _run(_settings(ctx, data_dir, database_url), body)
    err.print(f"user {user.name!r} created (id {user.user_id})", markup=False)
    _print_key(key)


@app.command("ls")
def list_users(ctx: typer.Context, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Every user, whether disabled, and how many keys they have."""

    async def body(context: Context) -> list[UserRecord]:
        return await context.accounts.list_users()

    table = Table("id", "name", "state", "keys", "created")
    for u in _run(_settings(ctx, data_dir, database_url), body):
        table.add_row(
            str(u.user_id),
            Text(u.name),  # a name like "bob[ops]" is not markup
            "disabled" if u.disabled else "active",
            str(u.key_count),
            u.create_time.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


def _set_disabled(
    ctx: typer.Context, name: str, disabled: bool, data_dir: str | None, database_url: str | None
) -> None:
    async def body(context: Context) -> User:
        return await context.accounts.set_disabled(name, disabled)

    user = _run(_settings(ctx, data_dir, database_url), body)
    err.print(f"user {user.name!r} {'disabled' if disabled else 'enabled'}", markup=False)


@app.command("disable")
def disable(
    ctx: typer.Context, name: Name, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Stop every key of the user (their data stays)."""
    _set_disabled(ctx, name, True, data_dir, database_url)


@app.command("enable")
def enable(
    ctx: typer.Context, name: Name, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Let a disabled user's keys work again."""
    _set_disabled(ctx, name, False, data_dir, database_url)


@app.command("key")
def key(
    ctx: typer.Context, name: Name, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Issue the user another key (printed once)."""

    async def body(context: Context) -> str:
        return await context.accounts.new_key_for(name)

    _print_key(_run(_settings(ctx, data_dir, database_url), body))
