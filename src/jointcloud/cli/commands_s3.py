"""``jcs s3 credentials``: S3 credentials for a bucket in one command.

With the CLI's account key: a new project key for the bucket, restricted as
asked (offline), an access grant with a root key derived here from the
passphrase on stdin, registered with the auth service (``POST /v1/access``
on the same server); prints the access key id, secret and S3 endpoint and
ready-to-paste AWS CLI and rclone configuration. Deleting the project key
(``jcs key rm ID``, named in the output) ends the credentials.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.text import Text

from jointcloud.cli.client import open_client
from jointcloud.cli.commands_keys import (
    AllowOpt,
    NotAfterOpt,
    PackagesOpt,
    PrefixOpt,
    make_grant,
    parse_api_key,
    parse_restriction,
    project_info,
    read_passphrase,
)
from jointcloud.cli.common import CliError, err, options_of, out

app = typer.Typer(no_args_is_help=True, help="S3 credentials for the S3 endpoint.")


def config_text(access_key_id: str, secret_key: str, endpoint: str, profile: str) -> str:
    """The credentials and the AWS CLI and rclone configuration for them."""
    return "\n".join(
        [
            f"access key id:  {access_key_id}",
            f"secret key:     {secret_key}",
            f"endpoint:       {endpoint}",
            "",
            f"# AWS CLI (v1.29+ or v2.13+), profile {profile}:",
            f"aws configure set aws_access_key_id {access_key_id} --profile {profile}",
            f"aws configure set aws_secret_access_key {secret_key} --profile {profile}",
            f"aws configure set region us-east-1 --profile {profile}",
            f"aws configure set endpoint_url {endpoint} --profile {profile}",
            f"# then: aws s3 ls --profile {profile}",
            "",
            "# rclone (rclone config file):",
            f"[{profile}]",
            "type = s3",
            "provider = Other",
            f"access_key_id = {access_key_id}",
            f"secret_access_key = {secret_key}",
            f"endpoint = {endpoint}",
            "region = us-east-1",
        ]
    )


@app.command("credentials")
def credentials(
    ctx: typer.Context,
    bucket: Annotated[str, typer.Argument(help="the bucket (project) the credentials are for")],
    packages: PackagesOpt = None,
    prefix: PrefixOpt = None,
    allow: AllowOpt = None,
    not_after: NotAfterOpt = None,
    public: Annotated[
        bool, typer.Option("--public", help="also serve share links without a signature")
    ] = False,
    passphrase_stdin: Annotated[
        bool,
        typer.Option(
            "--passphrase-stdin", help="read the project passphrase from stdin (required)"
        ),
    ] = False,
    profile: Annotated[
        str, typer.Option("--profile", help="profile / remote name in the printed configuration")
    ] = "jcs",
) -> None:
    """Make S3 credentials for a bucket: project key, restriction, grant and
    registration with the auth service, in one go."""
    restriction = parse_restriction(packages, prefix, allow, None, not_after)
    caveat = None if restriction.empty else restriction.caveat()  # checked before any request
    passphrase = read_passphrase(passphrase_stdin)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open_client(options_of(ctx)) as client:
        b = client.bucket(bucket.rstrip("/"))
        made = client.create_api_key(int(b["bucketID"]), f"s3 credentials {stamp}")
        key_id = int(made["apiKeyID"])
        try:
            key = parse_api_key(str(made["key"]), "the new key")
            if caveat is not None:
                key = key.restrict(caveat)
            info = project_info(client.endpoint, key.serialize())
            grant = make_grant(str(info["satellite"]), key, passphrase, str(info["projectID"]))
            access = client.register_access(grant, public=public)
        except BaseException:
            # Leave no key behind that nobody holds.
            try:
                client.delete_api_key(key_id)
            except CliError:
                err.print(Text(f"could not delete the new API key {key_id}: jcs key rm {key_id}"))
            raise
    out.print(
        Text(
            config_text(
                str(access["access_key_id"]),
                str(access["secret_key"]),
                str(access["endpoint"]),
                profile,
            )
        )
    )
    err.print(
        Text(
            f"the secret key is shown once; these credentials hang on API key "
            f"{made['name']!r} (id {key_id}): `jcs key rm {key_id}` ends them"
        ),
        style="yellow",
        soft_wrap=True,
    )
