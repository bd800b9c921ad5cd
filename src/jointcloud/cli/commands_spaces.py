"""``jcs space``: the storage backends (user spaces) objects are spread over."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from jointcloud.cli.client import JsonObj, open_client
from jointcloud.cli.common import (
    CliError,
    options_of,
    out,
    parse_json_object,
    secret_from_stdin,
)

app = typer.Typer(no_args_is_help=True, help="User spaces: the storage objects are spread over.")

STORAGE_TYPES = ("Local", "S3", "OSS", "OBS", "COS", "AzureBlob", "GCS")


def build_storage(
    kind: str | None,
    *,
    path: str | None = None,
    endpoint: str | None = None,
    bucket: str | None = None,
    region: str | None = None,
    path_style: bool | None = None,
    account_name: str | None = None,
    container: str | None = None,
) -> JsonObj:
    """The ``storage`` object from the per-field options (the server checks
    that the fields a type needs are there and names any that is missing)."""
    if kind is None:
        raise CliError("BadArgument", "give --type (one of " + ", ".join(STORAGE_TYPES) + ")")
    fields: dict[str, Any] = {
        "path": path,
        "endpoint": endpoint,
        "bucket": bucket,
        "region": region,
        "pathStyle": path_style,
        "accountName": account_name,
        "container": container,
    }
    if kind == "Local" and path is not None:
        # The server wants an absolute path; a relative one means "from here".
        fields["path"] = os.path.abspath(Path(path).expanduser())
    storage: JsonObj = {"type": kind}
    storage.update({k: v for k, v in fields.items() if v is not None})
    return storage


def build_credential(
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    account_key: str | None = None,
    service_account: str | None = None,
) -> JsonObj | None:
    if access_key_id is not None or secret_access_key is not None:
        return {
            "type": "AK",
            "accessKeyId": access_key_id or "",
            "secretAccessKey": secret_access_key or "",
        }
    if account_key is not None:
        return {"type": "AzureKey", "accountKey": account_key}
    if service_account is not None:
        try:
            text = Path(service_account).expanduser().read_text()
        except OSError as exc:
            raise CliError(
                "BadArgument", f"--service-account-file {service_account}: {exc.strerror}"
            ) from exc
        except UnicodeDecodeError:  # a binary file given by mistake: no traceback
            raise CliError(
                "BadArgument",
                f"--service-account-file {service_account}: not a JSON key file (not UTF-8 text)",
            ) from None
        return {"type": "GCSServiceAccount", "json": text}
    return None


def location(space: JsonObj) -> str:
    """Where a space keeps its data, without any credential."""
    st = space.get("storage") or {}
    kind = st.get("type")
    if kind == "Local":
        where = str(st.get("path", ""))
    elif kind == "AzureBlob":
        where = f"{st.get('accountName', '')}/{st.get('container', '')}"
    elif kind == "GCS":
        where = f"gs://{st.get('bucket', '')}"
    else:
        where = f"{st.get('endpoint', '')} {st.get('bucket', '')}".strip()
    root = space.get("rootPath")
    return f"{where} ({root})" if root else where


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="a name for the space")],
    kind: Annotated[
        str | None,
        typer.Option("--type", help="Local, S3, OSS, OBS, COS, AzureBlob or GCS"),
    ] = None,
    path: Annotated[str | None, typer.Option(help="Local: the directory")] = None,
    endpoint: Annotated[str | None, typer.Option(help="S3/OSS/OBS/COS/Azure endpoint URL")] = None,
    bucket: Annotated[str | None, typer.Option(help="S3/OSS/OBS/COS/GCS bucket")] = None,
    region: Annotated[str | None, typer.Option(help="region")] = None,
    path_style: Annotated[
        bool | None, typer.Option("--path-style/--virtual-host", help="S3 addressing")
    ] = None,
    account_name: Annotated[str | None, typer.Option(help="AzureBlob account")] = None,
    container: Annotated[str | None, typer.Option(help="AzureBlob container")] = None,
    access_key_id: Annotated[str | None, typer.Option(help="AK credential: key id")] = None,
    secret_access_key: Annotated[
        str | None,
        typer.Option(
            help="AK credential: secret (- reads it from stdin; or env JCS_SECRET_ACCESS_KEY)"
        ),
    ] = None,
    account_key: Annotated[
        str | None, typer.Option(help="AzureBlob account key (- reads it from stdin)")
    ] = None,
    service_account_file: Annotated[
        str | None, typer.Option(help="GCS: a service-account key JSON file")
    ] = None,
    root_path: Annotated[
        str | None, typer.Option(help="folder inside the storage (default jcs)")
    ] = None,
    storage_json: Annotated[
        str | None, typer.Option("--storage", help="the whole storage object as JSON")
    ] = None,
    credential_json: Annotated[
        str | None,
        typer.Option(
            "--credential", help="the whole credential object as JSON (- reads it from stdin)"
        ),
    ] = None,
) -> None:
    """Register a storage backend as a user space."""
    if storage_json is not None:
        storage = parse_json_object(storage_json, "--storage")
    else:
        storage = build_storage(
            kind,
            path=path,
            endpoint=endpoint,
            bucket=bucket,
            region=region,
            path_style=path_style,
            account_name=account_name,
            container=container,
        )
    if secret_access_key is None and access_key_id is not None:
        secret_access_key = os.environ.get("JCS_SECRET_ACCESS_KEY")
    # A secret on the command line shows in the process list and the
    # shell's history: each may be given as -, one line of stdin.
    if secret_access_key is not None:
        secret_access_key = secret_from_stdin(secret_access_key, "--secret-access-key")
    if account_key is not None:
        account_key = secret_from_stdin(account_key, "--account-key")
    credential = (
        parse_json_object(secret_from_stdin(credential_json, "--credential"), "--credential")
        if credential_json is not None
        else build_credential(
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            account_key=account_key,
            service_account=service_account_file,
        )
    )
    with open_client(options_of(ctx)) as client:
        space = client.create_space(name, storage, credential, root_path)
    out.print(
        Text(f"added user space {space['name']} (id {space['userSpaceID']}, {location(space)})")
    )


@app.command("ls")
def ls(ctx: typer.Context) -> None:
    """List user spaces (credentials are never shown)."""
    with open_client(options_of(ctx)) as client:
        spaces = client.list_spaces()
    from rich.table import Table

    table = Table("id", "name", "type", "location", "state", "latency")
    for s in spaces:
        latency = s.get("latencyMs")
        table.add_row(
            str(s["userSpaceID"]),
            Text(str(s["name"])),
            Text(str((s.get("storage") or {}).get("type", "?"))),
            Text(location(s)),
            Text(str(s.get("state", ""))),
            "-" if latency is None else f"{float(latency):.1f} ms",
        )
    out.print(table)


@app.command("test")
def test(
    ctx: typer.Context,
    space: Annotated[str, typer.Argument(metavar="NAME|ID", help="the space's name or id")],
) -> None:
    """Check a space: connect, write, read back and delete a probe object."""
    with open_client(options_of(ctx)) as client:
        found = client.find_space(space)
        latency = client.test_space(int(found["userSpaceID"]))
    out.print(Text(f"user space {found['name']} is OK ({latency:.1f} ms)"))


@app.command("drain")
def drain(
    ctx: typer.Context,
    space: Annotated[str, typer.Argument(metavar="NAME|ID", help="the space's name or id")],
) -> None:
    """Mark a space for removal: new data avoids it and its blocks move to your
    other spaces in the background; remove it with 'jcs space rm' once empty."""
    with open_client(options_of(ctx)) as client:
        found = client.find_space(space)
        got = client.drain_space(int(found["userSpaceID"]))
    out.print(
        Text(
            f"user space {got['name']} (id {got['userSpaceID']}) is {got['state']}: "
            "its blocks move to your other spaces in the background "
            f"(progress: jcs admin jobs); then: jcs space rm {got['name']}"
        )
    )


@app.command("undrain")
def undrain(
    ctx: typer.Context,
    space: Annotated[str, typer.Argument(metavar="NAME|ID", help="the space's name or id")],
) -> None:
    """Stop draining a space: it takes new data again."""
    with open_client(options_of(ctx)) as client:
        found = client.find_space(space)
        got = client.update_space(int(found["userSpaceID"]), state="Normal")
    out.print(Text(f"user space {got['name']} (id {got['userSpaceID']}) is {got['state']}"))


@app.command("rm")
def rm(
    ctx: typer.Context,
    space: Annotated[str, typer.Argument(metavar="NAME|ID", help="the space's name or id")],
) -> None:
    """Remove a user space that holds no data."""
    with open_client(options_of(ctx)) as client:
        found = client.find_space(space)
        client.delete_space(int(found["userSpaceID"]))
    out.print(Text(f"removed user space {found['name']} (id {found['userSpaceID']})"))
