"""Settings: flags over JCS_* variables over defaults, loaded by
pydantic-settings; a bad value is reported naming the variable or flag."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from jointcloud.config import ConfigError, Settings

JCS = Path(sys.executable).with_name("jcs")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("JCS_"):
            monkeypatch.delenv(name)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.load()
    assert s.data_dir == (tmp_path / "jcs-data").resolve()
    assert s.listen == "127.0.0.1:7890" and s.database_url is None
    assert s.gc_delay == timedelta(minutes=10) and s.multipart_expiry == timedelta(days=1)
    assert (s.sync_parallel, s.max_upload_files, s.scrub_mbps) == (16, 1000, 50.0)
    assert s.roles == ("api", "jobs") and s.listeners == ()
    assert s.local_roots == () and s.endpoint_allow == () and not s.allow_private_endpoints
    assert s.log_level == "info"
    # the same values as a Settings built directly
    assert s == Settings(data_dir=s.data_dir)


def test_every_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "JCS_DATA_DIR": str(tmp_path / "d"),
        "JCS_LISTEN": "0.0.0.0:9000",
        "JCS_DATABASE_URL": "postgresql+asyncpg://u@h/db",
        "JCS_GC_DELAY_SECONDS": "0",
        "JCS_GC_INTERVAL_SECONDS": "5",
        "JCS_MULTIPART_EXPIRY_SECONDS": "7200",
        "JCS_HEALTH_INTERVAL_SECONDS": "1.5",
        "JCS_DRAIN_INTERVAL_SECONDS": "2",
        "JCS_RECODE_INTERVAL_SECONDS": "3",
        "JCS_REPAIR_INTERVAL_SECONDS": "4",
        "JCS_SCRUB_MBPS": "12.5",
        "JCS_SCRUB_INTERVAL_SECONDS": "60",
        "JCS_SYNC_PARALLEL": "2",
        "JCS_MAX_UPLOAD_FILES": "7",
        "JCS_LOCAL_ROOTS": "/srv/a:/mnt/b:",
        "JCS_ALLOW_PRIVATE_ENDPOINTS": "yes",
        "JCS_ENDPOINT_ALLOW": "minio.lan:9000, 10.0.0.0/8",
        "JCS_ROLES": "jobs",
        "JCS_LOG_LEVEL": "DEBUG",
        "JCS_WORKERS": "4",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings.load()
    assert s.data_dir == (tmp_path / "d").resolve()
    assert s.listen == "0.0.0.0:9000" and s.database_url == "postgresql+asyncpg://u@h/db"
    assert s.gc_delay == timedelta(0) and s.gc_interval == 5.0
    assert s.multipart_expiry == timedelta(hours=2)
    assert (s.health_interval, s.drain_interval, s.recode_interval) == (1.5, 2.0, 3.0)
    assert (s.repair_interval, s.scrub_mbps, s.scrub_interval) == (4.0, 12.5, 60.0)
    assert (s.sync_parallel, s.max_upload_files) == (2, 7)
    assert s.local_roots == (Path("/srv/a"), Path("/mnt/b"))
    assert s.allow_private_endpoints
    assert s.endpoint_allow == ("minio.lan:9000", "10.0.0.0/8")
    assert s.roles == ("jobs",) and s.log_level == "debug"
    assert s.workers == 4


def test_flags_win_and_empty_variables_are_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JCS_LISTEN", "127.0.0.1:1")
    monkeypatch.setenv("JCS_LOCAL_ROOTS", "/env")
    monkeypatch.setenv("JCS_ROLES", "jobs")
    monkeypatch.setenv("JCS_DATABASE_URL", "")
    monkeypatch.setenv("JCS_ENDPOINT_ALLOW", "")
    s = Settings.load(str(tmp_path), "127.0.0.1:2", local_roots=["/flag"], roles=["api", "jobs"])
    assert s.listen == "127.0.0.1:2" and s.local_roots == (Path("/flag"),)
    assert s.roles == ("api", "jobs") and s.database_url is None and s.endpoint_allow == ()
    assert Settings.load(str(tmp_path), roles=["jobs,api,api"]).roles == ("api", "jobs")


def test_listeners_and_space_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JCS_LISTENERS", "share=0.0.0.0:8080")
    s = Settings.load(str(tmp_path))
    assert s.listeners == (("share", "0.0.0.0:8080"),)
    # the main listener first, the S3 endpoint on its own by default
    assert s.listen_addresses() == (
        ("main", "127.0.0.1:7890"),
        ("s3", "127.0.0.1:7891"),
        ("share", "0.0.0.0:8080"),
    )
    # no space may point at any listener of this server
    assert set(s.space_rules().own_listeners) == {
        ("127.0.0.1", 7890),
        ("127.0.0.1", 7891),
        ("0.0.0.0", 8080),
    }
    off = Settings.load(str(tmp_path), s3_listen="off")
    assert [name for name, _ in off.listen_addresses()] == ["main", "share"]
    monkeypatch.setenv("JCS_LISTENERS", "s3=127.0.0.1:7999")
    with pytest.raises(ConfigError, match="--s3-listen"):
        Settings.load(str(tmp_path))


def test_direct_construction_and_replace(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, local_roots=(tmp_path,), endpoint_allow=("127.0.0.1",))
    assert s.roles == ("api", "jobs") and s.max_upload_files == 1000
    t = dataclasses.replace(s, gc_delay=timedelta(0))
    assert t.gc_delay == timedelta(0) and t.local_roots == (tmp_path,)


@pytest.mark.parametrize(
    ("variable", "raw", "says"),
    [
        ("JCS_GC_DELAY_SECONDS", "abc", "valid number"),
        ("JCS_GC_DELAY_SECONDS", "-1", "greater than or equal to 0"),
        ("JCS_GC_INTERVAL_SECONDS", "0", "greater than 0"),
        ("JCS_SCRUB_MBPS", "nan", "finite"),
        ("JCS_MULTIPART_EXPIRY_SECONDS", "1d", "valid number"),
        # past what a timedelta holds: a traceback and exit 1 until the time review
        ("JCS_GC_DELAY_SECONDS", "1e15", "less than or equal to 1000000000000"),
        ("JCS_MULTIPART_EXPIRY_SECONDS", "1e300", "less than or equal to 1000000000000"),
        ("JCS_SYNC_PARALLEL", "1.5", "valid integer"),
        ("JCS_SYNC_PARALLEL", "0", "greater than or equal to 1"),
        ("JCS_MAX_UPLOAD_FILES", "many", "valid integer"),
        ("JCS_MAX_UPLOADS_PER_USER", "0", "greater than or equal to 1"),
        ("JCS_MAX_UPLOADS_PER_USER", "-5", "greater than or equal to 1"),
        ("JCS_GATEWAY_MAX_UPLOADS", "0", "greater than or equal to 1"),
        ("JCS_GATEWAY_MAX_UPLOADS", "lots", "valid integer"),
        ("JCS_ALLOW_PRIVATE_ENDPOINTS", "maybe", "valid boolean"),
        ("JCS_LISTEN", "7890", "HOST:PORT"),
        ("JCS_LISTEN", "localhost:99999", "HOST:PORT"),
        ("JCS_LOCAL_ROOTS", "relative/dir", "absolute"),
        ("JCS_ROLES", "api,web", "api, jobs"),
        ("JCS_LISTENERS", "s3", "NAME=HOST:PORT"),
        ("JCS_LISTENERS", "main=127.0.0.1:1", "distinct"),
        ("JCS_LISTENERS", "share=nowhere", "HOST:PORT"),
        ("JCS_LOG_LEVEL", "loud", "debug"),
        ("JCS_WORKERS", "0", "greater than or equal to 1"),
        ("JCS_WORKERS", "65", "less than or equal to 64"),
    ],
)
def test_bad_variable_is_named(
    variable: str, raw: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigError) as info:
        Settings.load(str(tmp_path))
    message = info.value.message
    assert message.startswith(f"{variable}=") and says in message, message
    assert "\n" not in message


def test_bad_flag_is_named_and_every_problem_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JCS_SCRUB_MBPS", "fast")
    with pytest.raises(ConfigError) as info:
        Settings.load(str(tmp_path), "nowhere", local_roots=["rel"], roles=["web"])
    message = info.value.message
    for name in ("--listen='nowhere'", "--local-root", "--role='web'", "JCS_SCRUB_MBPS='fast'"):
        assert name in message, message


def test_the_database_url_is_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(str(tmp_path), database_url=["postgresql://u:secret@h/db"])  # type: ignore[arg-type]
    assert "secret" not in info.value.message and "--database-url" in info.value.message


def test_a_secret_setting_is_named_but_never_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by review (2026-12-06): a short token was printed whole.
    secret = "s3cr3t-t0ken-15"
    monkeypatch.setenv("JCS_AUTH_TOKEN", secret)
    with pytest.raises(ConfigError) as info:
        Settings.load(str(tmp_path))
    message = info.value.message
    assert message.startswith("JCS_AUTH_TOKEN: ") and "at least 16 characters" in message
    assert "s3cr3t" not in message, message
    with pytest.raises(ConfigError) as info:
        Settings.load(str(tmp_path), auth_token=secret)
    message = info.value.message
    assert message.startswith("--auth-token: ") and "s3cr3t" not in message, message


def _serve_with(tmp_path: Path, name: str, value: str) -> subprocess.CompletedProcess[str]:
    """``jcs serve`` with only the environment variable ``name`` of ours set."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("JCS_")}
    env[name] = value
    return subprocess.run(
        [str(JCS), "serve", "--data-dir", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_never_prints_a_short_auth_token(tmp_path: Path) -> None:
    r = _serve_with(tmp_path, "JCS_AUTH_TOKEN", "s3cr3t-t0ken-15")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "JCS_AUTH_TOKEN" in r.stderr and "at least 16 characters" in r.stderr, r.stderr
    assert "s3cr3t" not in r.stderr + r.stdout


def test_serve_reports_a_bad_variable_with_status_2(tmp_path: Path) -> None:
    r = _serve_with(tmp_path, "JCS_GC_DELAY_SECONDS", "abc")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "JCS_GC_DELAY_SECONDS='abc'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()  # nothing started


def test_workers_flag_is_named(tmp_path: Path) -> None:
    assert Settings.load(str(tmp_path)).workers == 1
    assert Settings.load(str(tmp_path), workers=3).workers == 3
    with pytest.raises(ConfigError) as info:
        Settings.load(str(tmp_path), workers=0)
    assert info.value.message.startswith("--workers=0:"), info.value.message


@pytest.mark.parametrize(
    "url",
    ["nonsense", "postgresql://u:secret@h/db", "sqlite:///x.db", "mysql+aiomysql://u:secret@h/d"],
)
def test_a_database_url_serve_cannot_use_is_named(tmp_path: Path, url: str) -> None:
    """Found by review (2026-12-07): `jcs serve --database-url nonsense` (or
    a URL of a driver without asyncio) ended in a traceback, not exit 2."""
    with pytest.raises(ConfigError) as info:
        Settings.load(str(tmp_path), database_url=url)
    message = info.value.message
    assert message.startswith("--database-url: ") and "postgresql+asyncpg://" in message
    assert "secret" not in message and "(value not shown)" in message


def test_the_database_urls_of_the_docs_are_taken(tmp_path: Path) -> None:
    for url in ("postgresql+asyncpg://user@host/db", f"sqlite+aiosqlite:///{tmp_path}/m.db"):
        assert Settings.load(str(tmp_path), database_url=url).database_url == url
