"""``jcs userkey``, ``jcs key`` and ``jcs grant``: account keys, project API
keys and access grants (formats in ``docs/keys.md``).

``key restrict`` and ``key inspect`` never contact the server: anyone holding
a key can narrow it, nobody can widen it. ``grant create`` asks the satellite
only for the project's UUID (the salt of the root key); the passphrase is read
from stdin and never leaves this machine. A key's or grant's text is printed
on stdout alone (for scripts), with a "shown once" warning on stderr.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from jointcloud.cli.client import JcsClient, open_client
from jointcloud.cli.common import (
    DEFAULT_ENDPOINT,
    CliConfig,
    CliError,
    GlobalOptions,
    err,
    normalise_endpoint,
    options_of,
    out,
    secret_from_stdin,
)

if TYPE_CHECKING:
    from jointcloud.keys.caveats import APIKey, KeyCaveat
    from jointcloud.keys.grant import Grant

userkey_app = typer.Typer(no_args_is_help=True, help="Your account keys (they act for you).")
key_app = typer.Typer(
    no_args_is_help=True, help="Project API keys: one bucket, narrowed by caveats."
)
grant_app = typer.Typer(
    no_args_is_help=True, help="Access grants: satellite + API key + passphrase-derived key."
)

BASIC = ("read", "write", "list", "delete")
KEY_OR_GRANT_HELP = "an API key or an access grant; - reads it from stdin"


def short_time(value: Any) -> str:
    return str(value or "")[:19].replace("T", " ")


def print_secret(text: str, warning: str = "the key: shown once; store it now") -> None:
    """The secret on stdout alone (for scripts); the warning on stderr."""
    out.print(text, soft_wrap=True, highlight=False, markup=False)
    err.print(Text(warning, style="yellow"), soft_wrap=True)


# -- parsing of restrictions -----------------------------------------------

_RELATIVE = re.compile(r"^\+\s*(\d+(?:\.\d+)?)\s*([smhdw])$", re.IGNORECASE)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(raw: str, option: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601 (a time without a zone is local time; ``Z`` is UTC) or a
    time from now: ``+30m``, ``+1h``, ``+7d`` (s, m, h, d, w)."""
    text = raw.strip()
    m = _RELATIVE.match(text)
    if m is not None:
        amount, unit = float(m.group(1)), m.group(2).lower()
        base = now if now is not None else datetime.now(UTC)
        try:
            return (base + timedelta(**{_UNIT[unit]: amount})).replace(microsecond=0)
        except OverflowError:  # no datetime lies past 9999-12-31
            raise CliError("BadArgument", f"{option} {raw!r} is past the year 9999") from None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            "BadArgument",
            f"{option} {raw!r} is not a time: use ISO 8601 (2025-06-30T18:00:00Z) "
            "or a time from now (+30m, +1h, +7d)",
        ) from None
    try:
        if value.tzinfo is None:
            value = value.astimezone()  # local time, made explicit
        return value.astimezone(UTC)
    except (OverflowError, ValueError):  # 0001-01-01 or 9999-12-31 moved across the zones
        raise CliError("BadArgument", f"{option} {raw!r} is out of range in UTC") from None


def split_list(raw: str | None) -> list[str]:
    if raw is None:
        return []
    return [part.strip() for part in raw.split(",") if part.strip()]


def parse_allow(raw: str | None) -> list[str]:
    """``read,write,list,delete`` (any subset, not empty); None: all four."""
    if raw is None:
        return list(BASIC)
    words = [w.lower() for w in split_list(raw)]
    for word in words:
        if word not in BASIC:
            raise CliError(
                "BadArgument",
                f"--allow: unknown permission {word!r} (use read, write, list, delete)",
            )
    if not words:
        raise CliError(
            "BadArgument", "--allow: empty permission set (name one of read, write, list, delete)"
        )
    return words


@dataclass(frozen=True)
class Restriction:
    """What the restriction options asked for, checked."""

    allow: list[str]
    packages: list[str]
    prefix: str
    not_before: datetime | None
    not_after: datetime | None

    def caveat(self) -> KeyCaveat:
        from jointcloud.errors import BadArgument
        from jointcloud.keys.caveats import CaveatPath, KeyCaveat

        paths = [CaveatPath(p, self.prefix) for p in self.packages]
        try:
            made = KeyCaveat.allowing(
                self.allow, paths=paths, not_before=self.not_before, not_after=self.not_after
            )
            made.validate()
        except BadArgument as exc:
            raise CliError("BadArgument", exc.message) from None
        return made

    @property
    def empty(self) -> bool:
        return (
            len(self.allow) == len(BASIC)
            and not self.packages
            and self.not_before is None
            and self.not_after is None
        )


def parse_restriction(
    packages: str | None,
    prefix: str | None,
    allow: str | None,
    not_before: str | None,
    not_after: str | None,
) -> Restriction:
    names = split_list(packages)
    if packages is not None and not names:
        raise CliError("BadArgument", "--packages: name at least one package")
    for name in names:
        if "/" in name:
            raise CliError(
                "BadArgument", f"--packages: {name!r} is not a package name (no '/' allowed)"
            )
    if prefix is not None and not names:
        raise CliError(
            "BadArgument", "--prefix needs --packages: a prefix is a path inside named packages"
        )
    now = datetime.now(UTC)
    nb = parse_time(not_before, "--not-before", now=now) if not_before is not None else None
    na = parse_time(not_after, "--not-after", now=now) if not_after is not None else None
    if nb is not None and na is not None and na < nb:
        raise CliError("BadArgument", "--not-after is before --not-before")
    return Restriction(parse_allow(allow), names, (prefix or "").lstrip("/"), nb, na)


PackagesOpt = Annotated[
    str | None,
    typer.Option("--packages", help="comma list of the packages (S3 buckets) the key may reach"),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option("--prefix", help="object path prefix inside each of --packages (e.g. photos/)"),
]
AllowOpt = Annotated[
    str | None,
    typer.Option("--allow", help="comma list of read, write, list, delete (default: all four)"),
]
NotBeforeOpt = Annotated[
    str | None,
    typer.Option("--not-before", help="valid from: ISO 8601 or +30m, +1h, +7d"),
]
NotAfterOpt = Annotated[
    str | None,
    typer.Option("--not-after", help="valid until: ISO 8601 or +30m, +1h, +7d"),
]


# -- keys and grants offline -------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    """A key or grant text, parsed offline."""

    key: APIKey
    grant: Grant | None = None


def parse_key_or_grant(text: str) -> Parsed:
    """An API key, else an access grant; if neither, say why for both."""
    from jointcloud.errors import BadArgument
    from jointcloud.keys.caveats import APIKey
    from jointcloud.keys.grant import parse_grant

    text = text.strip()
    if text.startswith("jcs_"):
        raise CliError(
            "BadArgument",
            "that is an account key (jcs_...): it cannot be restricted or inspected; "
            "make a project key with `jcs key create BUCKET --name N`",
        )
    try:
        return Parsed(APIKey.parse(text))
    except BadArgument as exc:
        as_key = exc.message
    try:
        grant = parse_grant(text)
    except BadArgument as exc:
        as_grant = exc.message
    else:
        return Parsed(grant.api_key, grant)
    raise CliError(
        "BadArgument",
        f"neither an API key nor an access grant (as a key: {as_key}; as a grant: {as_grant})",
    )


def parse_api_key(text: str, option: str) -> APIKey:
    parsed = parse_key_or_grant(text)
    if parsed.grant is not None:
        raise CliError("BadArgument", f"{option} is an access grant; give the API key")
    return parsed.key


def restrict_text(text: str, restriction: Restriction) -> str:
    from jointcloud.errors import BadArgument

    parsed = parse_key_or_grant(text)
    caveat = restriction.caveat()
    try:
        if parsed.grant is not None:
            return parsed.grant.restrict(caveat).serialize()
        return parsed.key.restrict(caveat).serialize()
    except BadArgument as exc:
        raise CliError("BadArgument", exc.message) from None


def describe(parsed: Parsed) -> list[tuple[str, str]]:
    """(label, value) lines for ``key inspect``: nothing secret."""
    key = parsed.key
    rows: list[tuple[str, str]] = [
        ("kind", "access grant" if parsed.grant is not None else "API key"),
        ("head", key.head.hex()),
    ]
    if parsed.grant is not None:
        g = parsed.grant
        rows.append(("satellite", g.satellite_address))
        rows.append(
            (
                "root key",
                "yes (derived from the passphrase)" if g.root_key is not None else "no",
            )
        )
        rows.append(("path cipher", g.path_cipher.name))
        if g.store_entries:
            rows.append(("prefix keys", str(len(g.store_entries))))
    caveats = key.caveats()
    rows.append(("caveats", str(len(caveats)) if caveats else "none (unrestricted)"))
    for i, cav in enumerate(caveats, start=1):
        rows.append((f"  {i}", cav.describe()))
    nb = key.not_before()
    if nb is not None:
        rows.append(("valid from", nb.isoformat()))
    na = key.not_after()
    if na is None:
        rows.append(("expires", "never"))
    else:
        state = " (expired)" if na < datetime.now(UTC) else ""
        rows.append(("expires", na.isoformat() + state))
    return rows


def read_passphrase(flag: bool, option: str = "--passphrase-stdin") -> str:
    """One line of stdin, without its newline; empty is an error."""
    if not flag:
        raise CliError(
            "BadArgument",
            f"a passphrase is required: pass {option} and write it on stdin "
            "(it never goes on the command line, nor to the server)",
        )
    line = sys.stdin.readline()
    passphrase = line.removesuffix("\n").removesuffix("\r")
    if not passphrase:
        raise CliError("BadArgument", "empty passphrase on stdin")
    return passphrase


def make_grant(satellite: str, key: APIKey, passphrase: str, project_uuid: str) -> str:
    from jointcloud.errors import BadArgument
    from jointcloud.keys.grant import new_grant

    try:
        return new_grant(satellite, key, passphrase, project_uuid).serialize()
    except BadArgument as exc:
        raise CliError("BadArgument", exc.message) from None


def endpoint_of(opts: GlobalOptions, override: str | None = None) -> str:
    """The server URL alone (no key needed): override, --endpoint, env, default."""
    raw = override or opts.endpoint or os.environ.get("JCS_ENDPOINT") or DEFAULT_ENDPOINT
    return normalise_endpoint(raw)


# -- jcs userkey ---------------------------------------------------------------


@userkey_app.command("create")
def userkey_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="a name to tell it apart")] = "",
) -> None:
    """Make another key for your account (printed once)."""
    with open_client(options_of(ctx)) as client:
        made = client.create_user_key(name)
    err.print(Text(f"user key {made.get('name') or '-'} (id {made['userKeyID']}) created"))
    print_secret(str(made["key"]))


@userkey_app.command("ls")
def userkey_ls(ctx: typer.Context) -> None:
    """Your account keys (a hint of each, never the key)."""
    with open_client(options_of(ctx)) as client:
        keys = client.list_user_keys()
    table = Table("id", "name", "hint", "created")
    for k in keys:
        table.add_row(
            str(k["userKeyID"]),
            Text(str(k.get("name") or "")),
            Text(str(k.get("hint") or "")),
            short_time(k.get("createTime")),
        )
    out.print(table)


@userkey_app.command("rm")
def userkey_rm(
    ctx: typer.Context, key_id: Annotated[int, typer.Argument(metavar="ID", help="key id")]
) -> None:
    """Delete one of your account keys (it stops working at once)."""
    with open_client(options_of(ctx)) as client:
        client.delete_user_key(key_id)
    out.print(Text(f"deleted user key {key_id}"))


# -- jcs key -------------------------------------------------------------------


@key_app.command("create")
def key_create(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Argument(help="the bucket (project) the key is for")],
    name: Annotated[str, typer.Option("--name", help="a name to tell it apart")],
) -> None:
    """Make a project API key for a bucket (printed once)."""
    with open_client(options_of(ctx)) as client:
        b = client.bucket(bucket.rstrip("/"))
        made = client.create_api_key(int(b["bucketID"]), name)
    err.print(Text(f"API key {made['name']} (id {made['apiKeyID']}) for bucket {b['name']}"))
    print_secret(str(made["key"]))


@key_app.command("ls")
def key_ls(ctx: typer.Context, bucket: Annotated[str, typer.Argument(help="bucket")]) -> None:
    """The project API keys of a bucket (never their text)."""
    with open_client(options_of(ctx)) as client:
        b = client.bucket(bucket.rstrip("/"))
        keys = client.list_api_keys(int(b["bucketID"]))
    table = Table("id", "name", "created")
    for k in keys:
        table.add_row(str(k["apiKeyID"]), Text(str(k["name"])), short_time(k.get("createTime")))
    out.print(table)


@key_app.command("rm")
def key_rm(
    ctx: typer.Context, key_id: Annotated[int, typer.Argument(metavar="ID", help="key id")]
) -> None:
    """Delete a project key: it and every key, grant and credential made from
    it stop working."""
    with open_client(options_of(ctx)) as client:
        client.delete_api_key(key_id)
    out.print(Text(f"deleted API key {key_id}"))


@key_app.command("revoke")
def key_revoke(
    ctx: typer.Context,
    key: Annotated[
        str,
        typer.Argument(metavar="KEY", help="a derived key (or a grant); - reads it from stdin"),
    ],
) -> None:
    """Revoke a restricted key (or a grant's key) and everything derived from
    it; the key it was derived from keeps working."""
    text = secret_from_stdin(key, "KEY").strip()
    if not text.startswith("jcs_"):
        parsed = parse_key_or_grant(text)
        text = parsed.key.serialize()
    with open_client(options_of(ctx)) as client:
        parent = client.revoke_api_key(text)
    out.print(
        Text(
            f"revoked; derived from API key {parent.get('name')} (id {parent.get('apiKeyID')}), "
            "which keeps working"
        )
    )


@key_app.command("restrict")
def key_restrict(
    key: Annotated[str, typer.Argument(metavar="KEY_OR_GRANT", help=KEY_OR_GRANT_HELP)],
    packages: PackagesOpt = None,
    prefix: PrefixOpt = None,
    allow: AllowOpt = None,
    not_before: NotBeforeOpt = None,
    not_after: NotAfterOpt = None,
) -> None:
    """Print a narrower key (or grant), offline. Without options: a copy that
    can be revoked on its own."""
    restriction = parse_restriction(packages, prefix, allow, not_before, not_after)
    text = secret_from_stdin(key, "KEY_OR_GRANT")
    out.print(restrict_text(text, restriction), soft_wrap=True, highlight=False, markup=False)


@key_app.command("inspect")
def key_inspect(
    key: Annotated[str, typer.Argument(metavar="KEY_OR_GRANT", help=KEY_OR_GRANT_HELP)],
) -> None:
    """What a key or grant allows, offline: head, caveats in words, satellite,
    expiry. Never its secret parts."""
    rows = describe(parse_key_or_grant(secret_from_stdin(key, "KEY_OR_GRANT")))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        indent = label.startswith(" ")
        shown = f"{label}." if indent else f"{label}:"
        out.print(Text(f"{shown:<{width + 2}}{value}"))


# -- jcs grant -----------------------------------------------------------------


def project_info(endpoint: str, key_text: str, bucket_id: int | None = None) -> dict[str, Any]:
    with JcsClient(CliConfig(endpoint=endpoint, api_key=key_text), timeout=60.0) as sat:
        return sat.project_info(bucket_id)


@grant_app.command("create")
def grant_create(
    ctx: typer.Context,
    key: Annotated[
        str,
        typer.Option(
            "--key", help="the project API key; - reads it from stdin (before the passphrase)"
        ),
    ],
    passphrase_stdin: Annotated[
        bool, typer.Option("--passphrase-stdin", help="read the passphrase from stdin (one line)")
    ] = False,
    satellite: Annotated[
        str | None,
        typer.Option("--satellite", help="the satellite (server) address (default: --endpoint)"),
    ] = None,
) -> None:
    """Make an access grant for a project key. The satellite tells the
    project's UUID; the root key is derived here from the passphrase."""
    key = secret_from_stdin(key, "--key")
    grant, _ = _grant_for(ctx, key, passphrase_stdin, satellite)
    print_secret(grant, "the grant is a bearer credential: keep it secret")


def _grant_for(
    ctx: typer.Context, key: str, passphrase_stdin: bool, satellite: str | None = None
) -> tuple[str, str]:
    """A grant of ``key`` with the passphrase read here, and the endpoint
    asked for the project's UUID."""
    api_key = parse_api_key(key, "--key")
    passphrase = read_passphrase(passphrase_stdin)
    endpoint = endpoint_of(options_of(ctx), satellite)
    info = project_info(endpoint, api_key.serialize())
    address = satellite.strip() if satellite else str(info["satellite"])
    return make_grant(address, api_key, passphrase, str(info["projectID"])), endpoint


@grant_app.command("passphrase")
def grant_passphrase(
    ctx: typer.Context,
    key: Annotated[
        str,
        typer.Option(
            "--key",
            help="an unrestricted API key of the project; - reads it from stdin "
            "(before the passphrase)",
        ),
    ],
    passphrase_stdin: Annotated[
        bool, typer.Option("--passphrase-stdin", help="read the passphrase from stdin (one line)")
    ] = False,
) -> None:
    """Fix the project's passphrase to this one, replacing the one its first
    grant fixed (a restricted key's holder may have made that grant first).
    Credentials of grants made with another passphrase stop working."""
    key = secret_from_stdin(key, "--key")
    grant, endpoint = _grant_for(ctx, key, passphrase_stdin)
    bearer = parse_api_key(key, "--key").serialize()
    with JcsClient(CliConfig(endpoint=endpoint, api_key=bearer), timeout=60.0) as sat:
        done = sat.set_passphrase(grant)
    print(f"the passphrase of project {done['name']} is set")


def register(app: typer.Typer) -> None:
    app.add_typer(userkey_app, name="userkey")
    app.add_typer(key_app, name="key")
    app.add_typer(grant_app, name="grant")
    from jointcloud.cli import commands_s3

    app.add_typer(commands_s3.app, name="s3")


__all__: Sequence[str] = ["register"]
