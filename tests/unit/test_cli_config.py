"""The CLI's path parsing and configuration resolution (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jointcloud.cli.commands_keys import parse_time
from jointcloud.cli.common import (
    DEFAULT_ENDPOINT,
    CliError,
    GlobalOptions,
    RemotePath,
    format_size,
    normalise_endpoint,
    parse_package,
    parse_redundancy,
    parse_remote,
    parse_size,
    resolve_config,
)
from jointcloud.cli.main import app

# -- remote paths ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("b/p", RemotePath("b", "p", "")),
        ("b/p/", RemotePath("b", "p", "")),
        ("b/p/x.txt", RemotePath("b", "p", "x.txt")),
        ("b/p/a/b/c.txt", RemotePath("b", "p", "a/b/c.txt")),
        ("b/p/dir/", RemotePath("b", "p", "dir/")),
        ("photos/2024/holiday/a.jpg", RemotePath("photos", "2024", "holiday/a.jpg")),
        ("b/p/日本語/ファイル 1.txt", RemotePath("b", "p", "日本語/ファイル 1.txt")),
        ("b/p/100% #1?.txt", RemotePath("b", "p", "100% #1?.txt")),
    ],
)
def test_parse_remote(raw: str, expected: RemotePath) -> None:
    assert parse_remote(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "b", "b/", "/b/p", "/b/p/x", "b//x", "b/p/a//b", "b/p/../x", "b/p/./x", "b/p/a/.."],
)
def test_parse_remote_rejects(raw: str) -> None:
    with pytest.raises(CliError) as info:
        parse_remote(raw)
    assert info.value.code == "BadArgument"
    assert repr(raw) in info.value.message


def test_parse_remote_need_path() -> None:
    assert parse_remote("b/p/x", need_path=True).path == "x"
    with pytest.raises(CliError, match="names a package"):
        parse_remote("b/p/", need_path=True)


def test_remote_path_properties() -> None:
    whole = parse_remote("b/p")
    assert whole.is_prefix and whole.dir_prefix == "" and whole.basename == ""
    assert whole.join("x/y") == "x/y"
    assert str(whole) == "b/p"

    obj = parse_remote("b/p/a/b.txt")
    assert not obj.is_prefix and obj.dir_prefix == "a/b.txt/" and obj.basename == "b.txt"
    assert str(obj) == "b/p/a/b.txt"

    folder = parse_remote("b/p/a/dir/")
    assert folder.is_prefix and folder.dir_prefix == "a/dir/" and folder.basename == "dir"
    assert folder.join("f") == "a/dir/f"


def test_parse_package() -> None:
    assert parse_package("bucket/pkg") == ("bucket", "pkg")
    assert parse_package("bucket/pkg/") == ("bucket", "pkg")
    for bad in ("bucket", "bucket/pkg/path", "/pkg"):
        with pytest.raises(CliError):
            parse_package(bad)


# -- configuration -----------------------------------------------------------


def write_key(data_dir: Path, key: str = "jcs_from_file") -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "root.key").write_text(key + "\n")
    return data_dir


def test_options_win_over_env_and_data_dir(tmp_path: Path) -> None:
    data = write_key(tmp_path / "data")
    env = {"JCS_ENDPOINT": "http://env:1", "JCS_API_KEY": "jcs_env", "JCS_DATA_DIR": str(data)}
    opts = GlobalOptions(endpoint="http://opt:2/", api_key="jcs_opt", data_dir=str(data))
    cfg = resolve_config(opts, env)
    assert (cfg.endpoint, cfg.api_key) == ("http://opt:2", "jcs_opt")


def test_env_wins_over_data_dir(tmp_path: Path) -> None:
    data = write_key(tmp_path / "data")
    env = {"JCS_ENDPOINT": "http://env:1", "JCS_API_KEY": "jcs_env"}
    cfg = resolve_config(GlobalOptions(data_dir=str(data)), env)
    assert (cfg.endpoint, cfg.api_key) == ("http://env:1", "jcs_env")


def test_each_setting_resolves_on_its_own(tmp_path: Path) -> None:
    data = write_key(tmp_path / "data")
    cfg = resolve_config(GlobalOptions(data_dir=str(data)), {"JCS_ENDPOINT": "http://env:1"})
    assert (cfg.endpoint, cfg.api_key) == ("http://env:1", "jcs_from_file")
    cfg = resolve_config(GlobalOptions(endpoint="http://opt:2"), {"JCS_API_KEY": "jcs_env"})
    assert (cfg.endpoint, cfg.api_key) == ("http://opt:2", "jcs_env")


def test_data_dir_gives_the_key_and_the_default_endpoint(tmp_path: Path) -> None:
    data = write_key(tmp_path / "data", "  jcs_spaced  ")
    cfg = resolve_config(GlobalOptions(data_dir=str(data)), {})
    assert (cfg.endpoint, cfg.api_key) == (DEFAULT_ENDPOINT, "jcs_spaced")
    # JCS_DATA_DIR when --data-dir is absent
    cfg = resolve_config(GlobalOptions(), {"JCS_DATA_DIR": str(data)})
    assert cfg.api_key == "jcs_spaced"


def test_default_data_dir_is_jcs_data_in_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_key(tmp_path / "jcs-data", "jcs_cwd")
    monkeypatch.chdir(tmp_path)
    assert resolve_config(GlobalOptions(), {}).api_key == "jcs_cwd"


def test_empty_env_values_count_as_unset(tmp_path: Path) -> None:
    data = write_key(tmp_path / "data")
    env = {"JCS_ENDPOINT": "", "JCS_API_KEY": "", "JCS_DATA_DIR": str(data)}
    cfg = resolve_config(GlobalOptions(), env)
    assert (cfg.endpoint, cfg.api_key) == (DEFAULT_ENDPOINT, "jcs_from_file")


def test_missing_key_names_every_way_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(CliError) as info:
        resolve_config(GlobalOptions(data_dir=str(tmp_path / "nothing")), {})
    assert info.value.code == "Unauthorized"
    for hint in ("--api-key", "JCS_API_KEY", "--data-dir", str(tmp_path / "nothing")):
        assert hint in info.value.message
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "root.key").write_text("\n")
    with pytest.raises(CliError, match="no API key"):
        resolve_config(GlobalOptions(data_dir=str(tmp_path / "empty")), {})


def test_quiet_is_carried() -> None:
    assert resolve_config(GlobalOptions(api_key="k", quiet=True), {}).quiet


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://127.0.0.1:7890", "http://127.0.0.1:7890"),
        ("http://127.0.0.1:7890/", "http://127.0.0.1:7890"),
        ("127.0.0.1:7890", "http://127.0.0.1:7890"),
        ("https://jcs.example.com/base/", "https://jcs.example.com/base"),
    ],
)
def test_normalise_endpoint(raw: str, expected: str) -> None:
    assert normalise_endpoint(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "ftp://host"])
def test_normalise_endpoint_rejects(raw: str) -> None:
    with pytest.raises(CliError):
        normalise_endpoint(raw)


@pytest.mark.parametrize(
    "endpoint", ["http://alice:Pw-n3ver-shown@127.0.0.1:1", "alice:Pw-n3ver-shown@127.0.0.1:1"]
)
def test_an_endpoint_password_is_refused_never_printed(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by review: ``user:pass@`` in the endpoint was printed by every
    connection error (and httpx sent it in place of the API key)."""
    with pytest.raises(SystemExit) as exited:
        app(["--endpoint", endpoint, "--api-key", "k", "ls"], prog_name="jcs")
    assert exited.value.code == 1
    printed = capsys.readouterr()
    assert "Pw-n3ver-shown" not in printed.out + printed.err
    assert printed.err.startswith("error: BadArgument: the endpoint must not hold a user name")
    with pytest.raises(CliError) as info:
        normalise_endpoint("ftp://alice:Pw-n3ver-shown@host")
    assert "Pw-n3ver-shown" not in info.value.message


# -- option values -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("64MiB", 64 << 20),
        ("64M", 64 << 20),
        ("64mb", 64 << 20),
        ("1.5GiB", 3 << 29),
        ("8 KiB", 8192),
        ("256MiB", 256 << 20),
    ],
)
def test_parse_size(raw: str, expected: int) -> None:
    assert parse_size(raw) == expected


@pytest.mark.parametrize("raw", ["", "MiB", "-1", "12 parsecs", "1e6"])
def test_parse_size_rejects(raw: str) -> None:
    with pytest.raises(CliError):
        parse_size(raw)


def test_format_size() -> None:
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(20 * 1024 * 1024) == "20.0 MiB"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("none", {"type": "none"}),
        ("rep:2", {"type": "rep", "repCount": 2}),
        ("rep(3)", {"type": "rep", "repCount": 3}),
        ("ec:2,3", {"type": "ec", "k": 2, "n": 3}),
        ("ec(4, 6)", {"type": "ec", "k": 4, "n": 6}),
        (
            '{"type":"ec","k":2,"n":3,"chunkSize":65536}',
            {"type": "ec", "k": 2, "n": 3, "chunkSize": 65536},
        ),
        ('{"type":"rep","repCount":2}', {"type": "rep", "repCount": 2}),
    ],
)
def test_parse_redundancy(raw: str, expected: dict[str, object]) -> None:
    assert parse_redundancy(raw) == expected


def test_parse_redundancy_rejects() -> None:
    assert parse_redundancy(None) is None
    for bad in ("rep", "ec:2", "rep:2,3", "[1]", "{not json"):
        with pytest.raises(CliError) as info:
            parse_redundancy(bad)
        assert info.value.code == "BadArgument"


# -- times of key restrictions -------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["+99999999999999d", "+999999999w", "+100000000d", "0001-01-01T00:00:00+01:00"]
)
def test_parse_time_out_of_range_is_named(raw: str) -> None:
    """Found by review (2026-12-07): `jcs key restrict KEY --not-after
    +99999999999999d` (and `s3 credentials`) ended in a traceback."""
    with pytest.raises(CliError) as caught:
        parse_time(raw, "--not-after")
    assert caught.value.code == "BadArgument" and "--not-after" in caught.value.message


def test_parse_time_takes_relative_and_iso_times() -> None:
    now = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    assert parse_time("+1h", "--not-after", now=now) == datetime(2025, 6, 30, 13, 0, tzinfo=UTC)
    assert parse_time("9999-12-31T23:59:59Z", "--not-after") == datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=UTC
    )


@pytest.mark.parametrize("command", ["bucket", "package"])
def test_set_redundancy_names_its_policy_argument(command: str) -> None:
    """Found by review (2026-12-07): `jcs package set-redundancy b/p bogus`
    blamed --redundancy, an option the command does not have."""
    target = "b" if command == "bucket" else "b/p"
    result = CliRunner().invoke(app, [command, "set-redundancy", target, "bogus"])
    assert isinstance(result.exception, CliError), result.output
    assert result.exception.message.startswith("POLICY must be a JSON object"), result.exception
