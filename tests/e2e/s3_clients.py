"""The real S3 clients of the e2e tier, run as subprocesses against the S3
listener of a ``jcs serve``: the AWS CLI (v1, pip ``awscli`` in the test
extras), rclone, s3cmd and restic (Debian packages, installed by
``scripts/install.sh --test``), each with its own generated configuration
and an environment holding nothing of the user's (no ``~/.aws``, no
``AWS_*`` variable of the machine, no rclone or s3cmd config).

Also: S3 credentials made with ``jcs s3 credentials``, the per-operation
request counters of the S3 listener (``/metrics``) and a SigV4 signer for
raw requests (botocore's, from the test extras)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from e2e_support import JCS, JcsServer, clean_env

REGION = "us-east-1"
TIMEOUT = 120


def tool(name: str) -> str:
    """The client's executable: the venv's own first (pip ``awscli``), then PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} is not installed: run scripts/install.sh --test"
    return found


@dataclass(frozen=True)
class S3Creds:
    access_key_id: str
    secret_key: str
    endpoint: str  # http://127.0.0.1:PORT

    @property
    def host_port(self) -> str:
        return self.endpoint.removeprefix("http://")


def make_credentials(
    server: JcsServer, project: str, passphrase: str, *options: str, cwd: Path
) -> S3Creds:
    """``jcs s3 credentials PROJECT [options]`` with the server's root key;
    the printed access key id, secret and endpoint."""
    env = clean_env()
    env.update({"JCS_ENDPOINT": server.endpoint, "JCS_API_KEY": server.key})
    r = subprocess.run(
        [str(JCS), "s3", "credentials", project, "--passphrase-stdin", *options],
        input=passphrase + "\n",
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert r.returncode == 0, f"jcs s3 credentials exited {r.returncode}\n{r.stdout}\n{r.stderr}"

    def field(label: str) -> str:
        m = re.search(rf"^{label}:\s+(\S+)$", r.stdout, re.MULTILINE)
        assert m, f"no {label!r} in:\n{r.stdout}"
        return m.group(1)

    return S3Creds(field("access key id"), field("secret key"), field("endpoint"))


def client_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The machine's environment without any JCS_/AWS_ variable (an
    ``AWS_CA_BUNDLE`` alone makes rclone refuse to start), HOME in ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JCS_", "AWS_", "RCLONE_"))}
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra or {})
    return env


class Client:
    """One command-line client: ``run`` returns the finished process,
    ``ok`` requires exit 0 and returns stdout, ``fails`` requires failure
    and returns stdout + stderr."""

    name = ""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = client_env(home)

    def argv(self, args: tuple[str, ...]) -> list[str]:
        raise NotImplementedError

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(args),
            cwd=cwd or self.home,
            env=self.env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
            check=False,
        )

    def ok(self, *args: str, cwd: Path | None = None) -> str:
        r = self.run(*args, cwd=cwd)
        if r.returncode != 0:
            pytest.fail(
                f"{self.name} {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
            )
        return r.stdout

    def fails(self, *args: str, cwd: Path | None = None) -> str:
        r = self.run(*args, cwd=cwd)
        assert r.returncode != 0, f"{self.name} {' '.join(args)} succeeded:\n{r.stdout}"
        return r.stdout + r.stderr


class Aws(Client):
    """AWS CLI with the credentials in the environment, path-style
    addressing in its own config file and ``--endpoint-url`` on every call."""

    name = "aws"

    def __init__(self, home: Path, creds: S3Creds) -> None:
        super().__init__(home)
        self.creds = creds
        config = home / "aws-config"
        config.write_text(
            f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n", encoding="utf-8"
        )
        self.env.update(
            {
                "AWS_ACCESS_KEY_ID": creds.access_key_id,
                "AWS_SECRET_ACCESS_KEY": creds.secret_key,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": str(config),
                "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials-none"),
                "AWS_PAGER": "",
            }
        )

    def argv(self, args: tuple[str, ...]) -> list[str]:
        return [tool("aws"), "--endpoint-url", self.creds.endpoint, *args]


class Rclone(Client):
    """rclone with one remote ``jcs`` (type s3, provider Other)."""

    name = "rclone"

    def __init__(self, home: Path, creds: S3Creds) -> None:
        super().__init__(home)
        self.config = home / "rclone.conf"
        self.config.write_text(
            "[jcs]\ntype = s3\nprovider = Other\n"
            f"access_key_id = {creds.access_key_id}\n"
            f"secret_access_key = {creds.secret_key}\n"
            f"endpoint = {creds.endpoint}\nregion = {REGION}\n",
            encoding="utf-8",
        )

    def argv(self, args: tuple[str, ...]) -> list[str]:
        return [tool("rclone"), "--config", str(self.config), *args]


class S3cmd(Client):
    """s3cmd with a config of its own: plain HTTP, path-style (host_bucket
    without ``%(bucket)s``), SigV4 or, with ``signature_v2``, SigV2."""

    name = "s3cmd"

    def __init__(self, home: Path, creds: S3Creds, *, signature_v2: bool) -> None:
        super().__init__(home)
        self.config = home / f"s3cfg-{'v2' if signature_v2 else 'v4'}"
        self.config.write_text(
            "[default]\n"
            f"access_key = {creds.access_key_id}\n"
            f"secret_key = {creds.secret_key}\n"
            f"host_base = {creds.host_port}\n"
            f"host_bucket = {creds.host_port}\n"
            "use_https = False\n"
            f"signature_v2 = {signature_v2}\n"
            f"bucket_location = {REGION}\n"
            "progress_meter = False\n",
            encoding="utf-8",
        )

    def argv(self, args: tuple[str, ...]) -> list[str]:
        return [tool("s3cmd"), "-c", str(self.config), *args]


class Restic(Client):
    """restic (Debian; minio-go underneath, an S3 SDK of its own) with its
    repository at ``s3:ENDPOINT/BUCKET[/PREFIX]``, keys and the repository
    password in the environment, its cache under ``home``."""

    name = "restic"

    def __init__(self, home: Path, creds: S3Creds, repository: str, password: str) -> None:
        super().__init__(home)
        self.env.update(
            {
                "AWS_ACCESS_KEY_ID": creds.access_key_id,
                "AWS_SECRET_ACCESS_KEY": creds.secret_key,
                "RESTIC_REPOSITORY": f"s3:{creds.endpoint}/{repository}",
                "RESTIC_PASSWORD": password,
                "RESTIC_CACHE_DIR": str(home / "cache"),
            }
        )

    def argv(self, args: tuple[str, ...]) -> list[str]:
        return [tool("restic"), *args]


_SAMPLE = re.compile(r"^jcs_http_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)


def s3_requests(server: JcsServer) -> dict[tuple[str, int], int]:
    """Requests the S3 listener answered so far, by (operation, status)."""
    text = httpx.get(server.endpoint + "/metrics", timeout=10).text
    counts: dict[tuple[str, int], int] = {}
    for m in _SAMPLE.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
        if labels.get("protocol") == "s3":
            key = (labels["operation"], int(labels["status"]))
            counts[key] = counts.get(key, 0) + int(float(m.group("value")))
    return counts


def requests_between(
    before: Mapping[tuple[str, int], int], after: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """What ``s3_requests`` counted between two readings (nonzero only)."""
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def sign_v4(
    creds: S3Creds, method: str, url: str, headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Headers of a SigV4-signed request whose body is not signed
    (``UNSIGNED-PAYLOAD``); ``headers`` are signed too."""
    request = AWSRequest(
        method=method,
        url=url,
        headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", **(headers or {})},
    )
    SigV4Auth(Credentials(creds.access_key_id, creds.secret_key), "s3", REGION).add_auth(request)
    return dict(request.headers.items())


def boto3_client(creds: S3Creds) -> Any:
    """boto3 (in this process: no CLI start-up) for setup and checks around
    the command-line clients."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=creds.endpoint,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
