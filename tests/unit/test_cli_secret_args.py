"""Secrets the CLI takes can come from stdin (``-``) instead of the command
line, where they show in the process list (``/proc/PID/cmdline`` is
readable by every user of the machine) and land in the shell's history.

Found by review (2026-12-07): ``jcs grant create --key KEY``, ``jcs grant
passphrase --key KEY``, ``jcs key revoke|restrict|inspect KEY`` and ``jcs
space add --account-key`` / ``--credential`` had no other way to take the
key. ``--secret-access-key`` had ``JCS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jointcloud.cli import commands_keys, commands_spaces
from jointcloud.cli.common import CliError
from jointcloud.cli.main import app
from jointcloud.keys.caveats import APIKey, new_api_key
from jointcloud.keys.grant import parse_grant

PROJECT = "31ea0dde-5eb3-451d-ab83-dc2c2b9e6669"
SATELLITE = "http://127.0.0.1:7890"
PASSPHRASE = "correct horse battery staple"


def project_key() -> str:
    return new_api_key(b"\x01" * 32).serialize()


def run(*args: str, stdin: str) -> Any:
    return CliRunner().invoke(app, list(args), input=stdin)


def test_key_inspect_and_restrict_read_the_key_from_stdin() -> None:
    key = project_key()
    shown = run("key", "inspect", "-", stdin=key + "\n")
    assert shown.exit_code == 0, shown.output
    assert "API key" in shown.output and key not in shown.output

    narrowed = run("key", "restrict", "-", "--allow", "read", stdin=key + "\n")
    assert narrowed.exit_code == 0, narrowed.output
    text = narrowed.output.strip()
    assert text != key
    assert APIKey.parse(text).head == APIKey.parse(key).head


def test_an_empty_stdin_is_named() -> None:
    empty = run("key", "inspect", "-", stdin="")
    assert empty.exit_code == 1
    said = str(empty.exception)  # JcsTyper prints it; CliRunner keeps it raised
    assert "KEY_OR_GRANT" in said and "stdin" in said


def test_grant_create_reads_the_key_then_the_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def project_info(endpoint: str, key_text: str, bucket_id: int | None = None) -> dict[str, Any]:
        asked.append(key_text)
        return {"satellite": SATELLITE, "projectID": PROJECT}

    monkeypatch.setattr(commands_keys, "project_info", project_info)
    key = project_key()
    made = run(
        "grant", "create", "--key", "-", "--passphrase-stdin", stdin=f"{key}\n{PASSPHRASE}\n"
    )
    assert made.exit_code == 0, made.output
    assert asked == [key]
    grant = parse_grant(made.output.split()[0])
    assert grant.api_key.serialize() == key and grant.satellite_address == SATELLITE
    # the same passphrase given the usual way makes the same root key
    again = commands_keys.make_grant(SATELLITE, APIKey.parse(key), PASSPHRASE, PROJECT)
    assert parse_grant(again).root_key == grant.root_key


class _Client:
    def __init__(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    def create_space(
        self, name: str, storage: Any, credential: Any, root_path: Any
    ) -> dict[str, Any]:
        self.seen["credential"] = credential
        return {"name": name, "userSpaceID": 1, "storage": storage}


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    got: dict[str, Any] = {}

    @contextlib.contextmanager
    def open_client(_: Any) -> Iterator[_Client]:
        yield _Client(got)

    monkeypatch.setattr(commands_spaces, "open_client", open_client)
    yield got


@pytest.mark.parametrize(
    ("args", "stdin", "credential"),
    [
        (
            ["--type", "AzureBlob", "--account-name", "acct", "--container", "c"],
            "QXp1cmVLZXk=",
            {"type": "AzureKey", "accountKey": "QXp1cmVLZXk="},
        ),
        (
            ["--type", "S3", "--endpoint", "https://s3.example.com", "--bucket", "b"],
            "cloud-secret/abc",
            {"type": "AK", "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "cloud-secret/abc"},
        ),
        (
            ["--type", "S3", "--endpoint", "https://s3.example.com", "--bucket", "b"],
            '{"type": "AK", "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s"}',
            {"type": "AK", "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s"},
        ),
    ],
    ids=["account-key", "secret-access-key", "credential"],
)
def test_space_add_reads_the_credential_from_stdin(
    seen: dict[str, Any], args: list[str], stdin: str, credential: dict[str, str]
) -> None:
    option = {"AzureKey": ["--account-key", "-"]}.get(credential["type"])
    if option is None:
        option = (
            ["--credential", "-"]
            if stdin.startswith("{")
            else ["--access-key-id", "AKIAEXAMPLE", "--secret-access-key", "-"]
        )
    added = run("space", "add", "s", *args, *option, stdin=stdin + "\n")
    assert added.exit_code == 0, added.output
    assert seen["credential"] == credential


def test_a_service_account_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    """Found by review (2026-12-07): a binary file ended `jcs space add` in a
    UnicodeDecodeError traceback."""
    key_file = tmp_path / "key.p12"
    key_file.write_bytes(b"\x83\x00\xff binary")
    with pytest.raises(CliError) as caught:
        commands_spaces.build_credential(service_account=str(key_file))
    assert caught.value.message == (
        f"--service-account-file {key_file}: not a JSON key file (not UTF-8 text)"
    )
