"""``jcs bucket`` and ``jcs package``: the namespace above objects."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from jointcloud.cli.client import open_client
from jointcloud.cli.common import options_of, out, parse_package, parse_redundancy

bucket_app = typer.Typer(no_args_is_help=True, help="Buckets: the top of the namespace.")
package_app = typer.Typer(no_args_is_help=True, help="Packages: the sets of objects in a bucket.")

RedundancyOpt = Annotated[
    str | None,
    typer.Option(
        "--redundancy",
        help='default policy for uploads: JSON ({"type":"ec","k":4,"n":6}) or none, rep:N, ec:K,N',
    ),
]


POLICY_HELP = 'JSON ({"type":"ec","k":4,"n":6}) or none, rep:N, ec:K,N'


def policy_text(policy: Any) -> str:
    if not isinstance(policy, dict):
        return "-"
    kind = policy.get("type")
    if kind == "rep":
        return f"rep({policy.get('repCount')})"
    if kind == "ec":
        return f"ec({policy.get('k')},{policy.get('n')})"
    return str(kind)


def short_time(value: Any) -> str:
    return str(value or "")[:19].replace("T", " ")


@bucket_app.command("create")
def bucket_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="bucket name")],
    redundancy: RedundancyOpt = None,
) -> None:
    """Create a bucket."""
    with open_client(options_of(ctx)) as client:
        b = client.create_bucket(name, parse_redundancy(redundancy))
    out.print(Text(f"created bucket {b['name']} (id {b['bucketID']})"))


@bucket_app.command("ls")
def bucket_ls(ctx: typer.Context) -> None:
    """List buckets."""
    with open_client(options_of(ctx)) as client:
        buckets = client.list_buckets()
    from rich.table import Table

    table = Table("id", "name", "redundancy", "created")
    for b in buckets:
        table.add_row(
            str(b["bucketID"]),
            Text(str(b["name"])),
            policy_text(b.get("redundancy")),
            short_time(b.get("createTime")),
        )
    out.print(table)


@bucket_app.command("set-redundancy")
def bucket_set_redundancy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="bucket name")],
    policy: Annotated[str, typer.Argument(metavar="POLICY", help=POLICY_HELP)],
) -> None:
    """Change a bucket's default policy; the objects of its packages that
    inherit it are re-encoded in the background."""
    redundancy = parse_redundancy(policy, "POLICY")
    with open_client(options_of(ctx)) as client:
        b = client.bucket(name)
        got = client.set_bucket_redundancy(int(b["bucketID"]), redundancy)
    out.print(
        Text(
            f"bucket {got['name']}: redundancy {policy_text(got.get('redundancy'))}; "
            "its objects are re-encoded in the background (progress: jcs admin jobs)"
        )
    )


@bucket_app.command("rm")
def bucket_rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="bucket name")],
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="delete its packages (and objects) first")
    ] = False,
) -> None:
    """Delete a bucket (it must be empty, unless -r)."""
    with open_client(options_of(ctx)) as client:
        b = client.bucket(name)
        if recursive:
            for p in client.list_packages(int(b["bucketID"])):
                client.delete_package(int(p["packageID"]))
        client.delete_bucket(int(b["bucketID"]))
    out.print(Text(f"deleted bucket {name}"))


@package_app.command("create")
def package_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE")],
    redundancy: RedundancyOpt = None,
) -> None:
    """Create a package in a bucket."""
    bucket, package = parse_package(name)
    with open_client(options_of(ctx)) as client:
        b = client.bucket(bucket)
        p = client.create_package(int(b["bucketID"]), package, parse_redundancy(redundancy))
    out.print(Text(f"created package {bucket}/{p['name']} (id {p['packageID']})"))


@package_app.command("ls")
def package_ls(ctx: typer.Context, bucket: Annotated[str, typer.Argument(help="bucket")]) -> None:
    """List the packages of a bucket."""
    with open_client(options_of(ctx)) as client:
        b = client.bucket(bucket.rstrip("/"))
        packages = client.list_packages(int(b["bucketID"]))
    from rich.table import Table

    table = Table("id", "name", "redundancy", "created")
    for p in packages:
        table.add_row(
            str(p["packageID"]),
            Text(str(p["name"])),
            policy_text(p.get("redundancy")),
            short_time(p.get("createTime")),
        )
    out.print(table)


@package_app.command("set-redundancy")
def package_set_redundancy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE")],
    policy: Annotated[
        str, typer.Argument(metavar="POLICY", help=POLICY_HELP + "; inherit: the bucket's")
    ],
) -> None:
    """Change a package's policy; its objects are re-encoded in the background."""
    bucket, package = parse_package(name)
    redundancy = None if policy.strip() == "inherit" else parse_redundancy(policy, "POLICY")
    with open_client(options_of(ctx)) as client:
        p = client.package(bucket, package)
        got = client.set_package_redundancy(int(p["packageID"]), redundancy)
    shown = policy_text(got.get("redundancy")) if redundancy is not None else "inherited"
    out.print(
        Text(
            f"package {bucket}/{got['name']}: redundancy {shown}; "
            "its objects are re-encoded in the background (progress: jcs admin jobs)"
        )
    )


@package_app.command("rm")
def package_rm(
    ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE")]
) -> None:
    """Delete a package and every object in it."""
    bucket, package = parse_package(name)
    with open_client(options_of(ctx)) as client:
        p = client.package(bucket, package)
        client.delete_package(int(p["packageID"]))
    out.print(Text(f"deleted package {bucket}/{package}"))


@package_app.command("clone")
def package_clone(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE")],
    dst: Annotated[str, typer.Argument(metavar="BUCKET/NEW")],
) -> None:
    """Copy a package (objects share their stored data; nothing is re-uploaded)."""
    sb, sp = parse_package(src)
    db, dp = parse_package(dst)
    with open_client(options_of(ctx)) as client:
        p = client.package(sb, sp)
        target = client.bucket(db)
        made = client.clone_package(int(p["packageID"]), int(target["bucketID"]), dp)
    out.print(Text(f"cloned {sb}/{sp} to {db}/{made['name']} (id {made['packageID']})"))
