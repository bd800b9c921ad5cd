"""What every client command shares: errors, configuration, remote paths,
sizes, consoles and progress bars.

Nothing here talks to the network; ``client.py`` does.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

DEFAULT_ENDPOINT = "http://127.0.0.1:7890"
DEFAULT_DATA_DIR = "./jcs-data"


class CliError(Exception):
    """A failure shown to the user as ``error: <code>: <message>`` (exit 1).

    ``code`` is the server's JCS code when the server answered, else a code of
    the client's own (``BadArgument`` for bad command arguments,
    ``ConnectionFailed`` when the server cannot be reached).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# -- secrets given on stdin --------------------------------------------------

STDIN = "-"


def secret_from_stdin(value: str, name: str) -> str:
    """``value``, or one line of stdin (without its line break) if it is
    ``-``. A secret on the command line shows in the process list
    (``/proc/PID/cmdline`` is readable by every user of the machine) and
    lands in the shell's history; ``-`` keeps it in neither. Several secrets
    of one command read one line each, in the order of its help."""
    if value != STDIN:
        return value
    line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not line.strip():
        raise CliError("BadArgument", f"{name} is '-' but stdin has no line for it")
    return line


# -- configuration ---------------------------------------------------------


@dataclass(frozen=True)
class GlobalOptions:
    """The options of the main callback, as typed (None = not given)."""

    endpoint: str | None = None
    api_key: str | None = None
    data_dir: str | None = None
    quiet: bool = False


@dataclass(frozen=True)
class CliConfig:
    endpoint: str
    api_key: str
    quiet: bool = False


_USERINFO = re.compile(r"^([^/?#]*//)?[^/?#]*@")


def normalise_endpoint(raw: str) -> str:
    """An http(s) URL without ``user:pass@``: httpx would send those as Basic
    credentials in place of the API key (so no command could work), and every
    connection error printed the URL, password and all (found by review).
    Neither is echoed back."""
    value = raw.strip()
    if not value:
        raise CliError("BadArgument", "the endpoint must not be empty")
    if _USERINFO.match(value):
        raise CliError(
            "BadArgument",
            "the endpoint must not hold a user name or password ('user:pass@'): "
            "the API key is the credential (--api-key, JCS_API_KEY)",
        )
    if "://" not in value:
        value = "http://" + value
    if not value.startswith(("http://", "https://")):
        raise CliError("BadArgument", f"the endpoint must be an http(s) URL, got {raw!r}")
    return value.rstrip("/")


def resolve_config(opts: GlobalOptions, env: Mapping[str, str] | None = None) -> CliConfig:
    """Each setting on its own: the option, else ``JCS_ENDPOINT``/``JCS_API_KEY``,
    else the data dir (``--data-dir``, ``JCS_DATA_DIR``, ``./jcs-data``): its
    ``root.key`` and the default listener ``http://127.0.0.1:7890``."""
    env = os.environ if env is None else env
    endpoint = opts.endpoint or env.get("JCS_ENDPOINT") or DEFAULT_ENDPOINT
    key = opts.api_key or env.get("JCS_API_KEY") or None
    if key is None:
        data_dir = Path(opts.data_dir or env.get("JCS_DATA_DIR") or DEFAULT_DATA_DIR)
        key_file = data_dir / "root.key"
        try:
            key = key_file.read_text().strip() or None
        except FileNotFoundError:
            key = None
        except OSError as exc:
            raise CliError("Unauthorized", f"cannot read {key_file}: {exc.strerror}") from exc
        if key is None:
            raise CliError(
                "Unauthorized",
                f"no API key: pass --api-key, set JCS_API_KEY, or point --data-dir at the "
                f"server's data directory (no key in {key_file})",
            )
    return CliConfig(endpoint=normalise_endpoint(endpoint), api_key=key.strip(), quiet=opts.quiet)


def options_of(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


# -- remote paths ----------------------------------------------------------


@dataclass(frozen=True)
class RemotePath:
    """``BUCKET/PACKAGE[/PATH]``; ``path`` is "" for the whole package and may
    end with "/" (a prefix)."""

    bucket: str
    package: str
    path: str = ""

    @property
    def is_prefix(self) -> bool:
        return self.path == "" or self.path.endswith("/")

    @property
    def dir_prefix(self) -> str:
        """The path as a directory prefix: "" or ending with "/"."""
        return self.path if self.is_prefix else self.path + "/"

    @property
    def basename(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1] if self.path.strip("/") else ""

    def join(self, rel: str) -> str:
        return self.dir_prefix + rel

    def __str__(self) -> str:
        return f"{self.bucket}/{self.package}" + (f"/{self.path}" if self.path else "")


def _check_segment(value: str, what: str, raw: str) -> str:
    if not value:
        raise CliError("BadArgument", f"{raw!r} has no {what}; expected BUCKET/PACKAGE[/PATH]")
    return value


def parse_remote(raw: str, *, need_path: bool = False) -> RemotePath:
    """Split ``BUCKET/PACKAGE[/PATH]`` (bucket and package names cannot
    contain "/"); reject empty, "." and ".." path segments."""
    if raw.startswith("/"):
        raise CliError("BadArgument", f"{raw!r}: remote paths start with the bucket name, not '/'")
    bucket, sep, rest = raw.partition("/")
    _check_segment(bucket, "bucket", raw)
    if not sep:
        raise CliError("BadArgument", f"{raw!r} has no package; expected BUCKET/PACKAGE[/PATH]")
    package, _, path = rest.partition("/")
    _check_segment(package, "package", raw)
    body = path[:-1] if path.endswith("/") else path
    if body and any(seg in ("", ".", "..") for seg in body.split("/")):
        raise CliError("BadArgument", f"{raw!r}: object paths cannot hold empty, '.' or '..' parts")
    if path == "/":
        path = ""
    if need_path and not path:
        raise CliError("BadArgument", f"{raw!r} names a package, not an object path")
    return RemotePath(bucket, package, path)


def parse_package(raw: str) -> tuple[str, str]:
    """``BUCKET/PACKAGE`` exactly."""
    remote = parse_remote(raw.rstrip("/"))
    if remote.path:
        raise CliError("BadArgument", f"{raw!r}: expected BUCKET/PACKAGE")
    return remote.bucket, remote.package


# -- redundancy ------------------------------------------------------------

_SHORT_POLICY = re.compile(r"^(rep|ec)[:(]\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)?$")


def parse_redundancy(raw: str | None, option: str = "--redundancy") -> dict[str, Any] | None:
    """``--redundancy`` (or the argument named ``option``): the JSON union of
    the API (``{"type":"rep","repCount":2}``), or the shorthands ``none``,
    ``rep:2``/``rep(2)``, ``ec:2,3``/``ec(2,3)``. The server validates the values."""
    if raw is None:
        return None
    text = raw.strip()
    if text == "none":
        return {"type": "none"}
    m = _SHORT_POLICY.match(text)
    if m is not None:
        kind, a, b = m.groups()
        if kind == "rep" and b is None:
            return {"type": "rep", "repCount": int(a)}
        if kind == "ec" and b is not None:
            return {"type": "ec", "k": int(a), "n": int(b)}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CliError(
            "BadArgument",
            f'{option} must be a JSON object like {{"type":"rep","repCount":2}} '
            f"or none, rep:N, ec:K,N; got {raw!r}",
        )
    return value


def parse_json_object(raw: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise CliError("BadArgument", f"{option} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CliError("BadArgument", f"{option} must be a JSON object")
    return value


# -- sizes -----------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(raw: str) -> int:
    """``1048576``, ``64MiB``, ``64M``, ``1.5GB`` → bytes (binary multiples:
    for chunk sizes nobody means 10^6)."""
    m = _SIZE.match(raw)
    if m is None:
        raise CliError("BadArgument", f"not a size: {raw!r} (try 64MiB)")
    number, unit, _ = m.groups()
    return int(float(number) * 1024 ** _UNITS[unit.lower()])


def format_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- output ----------------------------------------------------------------

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def progress(quiet: bool = False) -> Progress:
    """A transfer bar on stderr (stdout stays for results)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
    )
