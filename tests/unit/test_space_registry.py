"""``open_space`` / ``validate_storage``: bad input names its field, secrets never leak."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import socket
import threading
import traceback
from pathlib import Path
from typing import Any, ClassVar

import pytest

from jointcloud.errors import (
    BadArgument,
    DomainError,
    SpaceError,
    SpaceRefused,
    SpaceUnavailable,
)
from jointcloud.spaces.local import LocalSpace
from jointcloud.spaces.memory import MemorySpace
from jointcloud.spaces.opendal_space import OpenDALSpace
from jointcloud.spaces.registry import SIGNER_ENVIRONMENT, open_space, validate_storage
from jointcloud.spaces.rules import SpaceRules

RULES = SpaceRules.unrestricted()  # these tests exercise backends, not operator rules


ACCESS_KEY_ID = "AKIDLEAKCANARY0001"
SECRET = "sEcReT-LeAk-CaNaRy-0123456789abcdef"
AZURE_KEY = base64.b64encode(b"azure-leak-canary-key-material!!").decode()
GCS_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nGCSLEAKCANARY\n-----END PRIVATE KEY-----\n"
GCS_JSON = json.dumps(
    {"type": "service_account", "client_email": "sa@p.iam.example", "private_key": GCS_PRIVATE_KEY}
)
CANARIES = [
    ACCESS_KEY_ID,
    SECRET,
    AZURE_KEY,
    "GCSLEAKCANARY",
    base64.b64encode(GCS_JSON.encode()).decode(),
]
AK = {"type": "AK", "accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET}


def closed_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def assert_no_secret(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text


def bad(storage: Any, credential: Any = None) -> str:
    with pytest.raises(BadArgument) as info:
        validate_storage(storage, credential)
    with pytest.raises(BadArgument):
        open_space(storage, credential, "", rules=RULES)
    assert_no_secret(str(info.value))
    return str(info.value)


# -- validation names the field ------------------------------------------------


def test_missing_or_unknown_type() -> None:
    assert "storage.type" in bad({})
    assert "storage.type" in bad({"type": "FTP"})
    assert "storage" in bad("not an object")


@pytest.mark.parametrize(
    ("storage", "field"),
    [
        ({"type": "Local"}, "storage.path"),
        ({"type": "Local", "path": "relative/dir"}, "storage.path"),
        ({"type": "S3", "bucket": "b"}, "storage.endpoint"),
        ({"type": "S3", "endpoint": "http://x"}, "storage.bucket"),
        ({"type": "S3", "endpoint": "http://x", "bucket": ""}, "storage.bucket"),
        (
            {"type": "S3", "endpoint": "http://x", "bucket": "b", "pathStyle": "no"},
            "storage.pathStyle",
        ),
        ({"type": "S3", "endpoint": "http://x", "bucket": "b", "region": 5}, "storage.region"),
        ({"type": "OSS", "bucket": "b"}, "storage.endpoint"),
        ({"type": "OBS", "endpoint": "e"}, "storage.bucket"),
        ({"type": "COS", "endpoint": "e", "bucket": "a/b"}, "storage.bucket"),
        ({"type": "AzureBlob", "container": "c"}, "storage.accountName"),
        ({"type": "AzureBlob", "accountName": "a"}, "storage.container"),
        ({"type": "GCS"}, "storage.bucket"),
        ({"type": "Memory"}, "storage.name"),
    ],
)
def test_bad_storage_field_is_named(storage: dict[str, Any], field: str) -> None:
    assert field in bad(storage, AK if storage["type"] in ("S3", "OSS", "OBS", "COS") else None)


S3 = {"type": "S3", "endpoint": "http://127.0.0.1:9", "bucket": "b"}


@pytest.mark.parametrize(
    ("storage", "credential", "field"),
    [
        (S3, {"type": "Password"}, "credential.type"),
        (S3, {"type": "AzureKey", "accountKey": AZURE_KEY}, "credential.type"),
        (S3, {"type": "AK", "secretAccessKey": SECRET}, "credential.accessKeyId"),
        (S3, {"type": "AK", "accessKeyId": ACCESS_KEY_ID}, "credential.secretAccessKey"),
        (S3, "not an object", "credential"),
        (
            {"type": "AzureBlob", "accountName": "a", "container": "c"},
            {"type": "AzureKey"},
            "credential.accountKey",
        ),
        ({"type": "GCS", "bucket": "b"}, {"type": "GCSServiceAccount"}, "credential.json"),
        (
            {"type": "GCS", "bucket": "b"},
            {"type": "GCSServiceAccount", "json": "{" + SECRET},
            "credential.json",
        ),
    ],
)
def test_bad_credential_field_is_named(storage: Any, credential: Any, field: str) -> None:
    assert field in bad(storage, credential)


@pytest.mark.parametrize("root", ["../up", "a/../../b", "a//b", "x\x00y", "./a"])
def test_bad_root_path_is_named(root: str, tmp_path: Path) -> None:
    with pytest.raises(BadArgument, match="root path") as caught:
        open_space({"type": "Local", "path": str(tmp_path)}, None, root, rules=RULES)
    # the field is kept apart, so the v1 API can say it as "rootPath"
    assert caught.value.field == "root path"
    assert caught.value.renamed({"root path": "rootPath"}).startswith("rootPath must")


# -- what gets built -------------------------------------------------------------


def test_local_space_is_created_under_root_path(tmp_path: Path) -> None:
    storage = {"type": "Local", "path": str(tmp_path / "new")}
    space = open_space(storage, None, "/a/b/", rules=RULES, create=True)
    assert isinstance(space, LocalSpace)
    assert space.root == tmp_path / "new" / "a" / "b"
    assert space.root.is_dir()


def test_a_local_space_whose_directory_went_away_is_not_made_again(tmp_path: Path) -> None:
    """Only a space being recorded gets its directory made: one that went
    away later (a disk unmounted under its mount point, a directory
    removed) is unavailable, or blocks would land on the file system
    beneath and the space look healthy with its blocks gone."""
    storage = {"type": "Local", "path": str(tmp_path / "disk")}
    open_space(storage, None, "jcs", rules=RULES, create=True)
    (tmp_path / "disk" / "jcs").rmdir()  # the disk unmounted: its mount point is left
    with pytest.raises(SpaceUnavailable, match="is missing"):
        open_space(storage, None, "jcs", rules=RULES)
    assert not (tmp_path / "disk" / "jcs").exists()


def test_memory_space_is_shared_per_name() -> None:
    one = open_space({"type": "Memory", "name": "registry-test"}, None, "", rules=RULES)
    again = open_space({"type": "Memory", "name": "registry-test"}, None, "", rules=RULES)
    other = open_space({"type": "Memory", "name": "registry-test-2"}, None, "", rules=RULES)
    assert isinstance(one, MemorySpace)
    assert one is again
    assert other is not one


@pytest.mark.parametrize(
    ("storage", "credential", "scheme"),
    [
        ({**S3, "region": "eu-west-1"}, AK, "s3"),
        ({**S3, "pathStyle": False}, AK, "s3"),
        ({"type": "OSS", "endpoint": "oss-cn-hangzhou.aliyuncs.com", "bucket": "b"}, AK, "oss"),
        ({"type": "OBS", "endpoint": "obs.cn-north-4.myhuaweicloud.com", "bucket": "b"}, AK, "obs"),
        ({"type": "COS", "endpoint": "cos.ap-guangzhou.myqcloud.com", "bucket": "b-1"}, AK, "cos"),
        (
            {"type": "AzureBlob", "accountName": "acct", "container": "c"},
            {"type": "AzureKey", "accountKey": AZURE_KEY},
            "azblob",
        ),
        ({"type": "GCS", "bucket": "b"}, {"type": "GCSServiceAccount", "json": GCS_JSON}, "gcs"),
    ],
)
def test_cloud_spaces_never_show_credentials(
    storage: dict[str, Any], credential: dict[str, Any], scheme: str
) -> None:
    space = open_space(storage, credential, "some/root", rules=RULES)
    assert isinstance(space, OpenDALSpace)
    assert space.scheme == scheme
    assert space.root == "/some/root"
    assert_no_secret(repr(space))
    assert_no_secret(str(space))


async def test_errors_from_a_dead_endpoint_carry_no_credentials() -> None:
    endpoint = closed_endpoint()
    spaces = [
        open_space({**S3, "endpoint": endpoint}, AK, "r", rules=RULES),
        open_space({"type": "OBS", "endpoint": endpoint, "bucket": "b"}, AK, "r", rules=RULES),
        open_space(
            {"type": "AzureBlob", "accountName": "acct", "container": "c", "endpoint": endpoint},
            {"type": "AzureKey", "accountKey": AZURE_KEY},
            "r",
            rules=RULES,
        ),
        open_space(
            {"type": "GCS", "bucket": "b"},
            {"type": "GCSServiceAccount", "json": GCS_JSON},
            "r",
            rules=RULES,
        ),
    ]
    for space in spaces:
        for op in (space.read("k"), space.put("k", b"x"), space.stat("k"), space.delete("k")):
            with pytest.raises(SpaceError) as info:
                await op
            exc = info.value
            assert isinstance(exc, DomainError)
            assert_no_secret(str(exc))
            assert_no_secret(repr(exc))
            assert_no_secret("".join(traceback.format_exception(exc)))


@pytest.mark.parametrize(
    "storage",
    [
        {"type": "OBS", "endpoint": "obs.cn-north-4.myhuaweicloud.com", "bucket": "b"},
        {"type": "OSS", "endpoint": "oss-cn-hangzhou.aliyuncs.com", "bucket": "b"},
    ],
    ids=["OBS", "OSS"],
)
def test_obs_and_oss_spaces_never_sign_with_the_servers_own_identity(
    monkeypatch: pytest.MonkeyPatch, storage: dict[str, str]
) -> None:
    """OpenDAL's OBS and OSS signers fill what a space leaves unset from the
    process environment, and cannot be told not to (found by review): an
    OBS space without a credential would sign with the server's Huawei
    Cloud keys, and one with a credential would carry the server's security
    token to the user's endpoint. An OBS space needs a credential (an OSS
    one without is sent unsigned), and both are refused while the
    environment holds such settings (named, not shown)."""
    kind = storage["type"]
    names = SIGNER_ENVIRONMENT[kind]
    for name in names:
        monkeypatch.delenv(name, raising=False)
    if kind == "OBS":
        with pytest.raises(BadArgument, match="credential is required for OBS storage"):
            open_space(storage, None, "r", rules=RULES)
    assert isinstance(open_space(storage, AK, "r", rules=RULES), OpenDALSpace)
    for name in names:
        with monkeypatch.context() as env:
            env.setenv(name, "the-servers-own-secret")
            with pytest.raises(SpaceRefused) as refused:
                open_space(storage, AK, "r", rules=RULES)
            assert name in refused.value.message
            assert "the-servers-own-secret" not in refused.value.message


# -- the server's own cloud identity never signs a user's space -----------------

# What an operator's environment may hold for its own cloud accounts, the
# kinds whose signers (reqsign, under OpenDAL) could load it: each value is
# looked for in every request a user's space sends.
SERVER_IDENTITY = {
    "AWS_ACCESS_KEY_ID": "SRVAWSKEYID",
    "AWS_SECRET_ACCESS_KEY": "SRVAWSSECRET",
    "AWS_SESSION_TOKEN": "SRVAWSTOKEN",
    "AWS_ROLE_ARN": "arn:aws:iam::1:role/SRVROLE",
    "AZURE_STORAGE_ACCOUNT_NAME": "srvazacct",
    "AZURE_STORAGE_ACCOUNT_KEY": base64.b64encode(b"the-servers-azure-key").decode(),
    "AZURE_STORAGE_SAS_TOKEN": "sv=SRVSASTOKEN",
    "AZURE_CLIENT_ID": "SRVCLIENTID",
    "AZURE_CLIENT_SECRET": "SRVCLIENTSECRET",
    "AZURE_TENANT_ID": "SRVTENANT",
}


class _Capture(http.server.BaseHTTPRequestHandler):
    """Records each request and answers 404: the space's read fails, as
    reads of a missing object do."""

    seen: ClassVar[list[tuple[str, str, dict[str, str]]]] = []

    def _record(self) -> None:
        self.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = _record

    def log_message(self, *args: object) -> None:
        pass


def _azure_shared_key(key: bytes, method: str, path: str, headers: dict[str, str]) -> str:
    """Azure's SharedKey signature of a request without content headers."""
    canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
    to_sign = f"{method}\n" + "\n" * 11 + canonical + "/useracct" + path.split("?")[0]
    return base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()


@pytest.mark.parametrize("signed", [True, False], ids=["user-key", "anonymous"])
@pytest.mark.parametrize("kind", ["S3", "AzureBlob"])
async def test_remote_spaces_never_sign_with_the_servers_environment(
    monkeypatch: pytest.MonkeyPatch, kind: str, signed: bool
) -> None:
    """With the server's own AWS and Azure identities in its environment, a
    user's S3 or Azure space signs with the user's key or, without one, not
    at all: no value of the server's reaches the user's endpoint (OBS and
    OSS, whose signers cannot be kept from the environment, are refused
    instead)."""
    for name, value in SERVER_IDENTITY.items():
        monkeypatch.setenv(name, value)
    _Capture.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    user_key = base64.b64encode(b"the-users-azure-key").decode()
    try:
        if kind == "S3":
            space = open_space(
                {**S3, "endpoint": endpoint}, AK if signed else None, "r", rules=RULES
            )
        else:
            storage = {"type": "AzureBlob", "accountName": "useracct", "container": "c"}
            credential = {"type": "AzureKey", "accountKey": user_key} if signed else None
            space = open_space({**storage, "endpoint": endpoint}, credential, "r", rules=RULES)
        with pytest.raises(SpaceError):
            await space.read("k")
        await space.close()
    finally:
        server.shutdown()
        server.server_close()
    assert _Capture.seen, "the space sent no request"
    for method, path, headers in _Capture.seen:
        sent = f"{method} {path} {headers}"
        assert [n for n, v in SERVER_IDENTITY.items() if v in sent] == []
        auth = headers.get("authorization")
        if not signed:
            assert auth is None and "x-amz-security-token" not in headers
        elif kind == "S3":
            assert auth is not None and f"Credential={ACCESS_KEY_ID}/" in auth
        else:
            want = _azure_shared_key(base64.b64decode(user_key), method, path, headers)
            assert auth == f"SharedKey useracct:{want}"


def test_cos_spaces_need_a_credential() -> None:
    """OpenDAL's COS backend cannot send an unsigned request, so a COS
    space without a credential would fail every operation."""
    storage = {"type": "COS", "endpoint": "cos.ap-guangzhou.myqcloud.com", "bucket": "b-1"}
    assert "credential is required for COS storage" in bad(storage)
