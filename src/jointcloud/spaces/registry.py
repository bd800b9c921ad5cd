"""Build a ``Space`` from a JCS user-space record (``storage`` + ``credential`` JSON).

Why by hand: this is the one place that knows both the JCS field names and the
OpenDAL option names, so every backend is configured the same way, every bad
field is reported by name, and credentials never reach a message. OpenDAL is
told not to load credentials from the environment or instance metadata, so the
server's own cloud identity can never stand in for a user's space.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jointcloud.errors import BadArgument, SpaceRefused, SpaceUnavailable
from jointcloud.spaces.base import Space
from jointcloud.spaces.endpoints import check_endpoint, parse_endpoint
from jointcloud.spaces.local import LocalSpace
from jointcloud.spaces.memory import MemorySpace
from jointcloud.spaces.opendal_space import OpenDALSpace
from jointcloud.spaces.rules import SpaceRules, check_local

# storage type -> (required fields, optional fields with their types)
_FIELDS: dict[str, tuple[tuple[str, ...], dict[str, type]]] = {
    "Local": (("path",), {}),
    "S3": (("endpoint", "bucket"), {"region": str, "pathStyle": bool}),
    "OSS": (("endpoint", "bucket"), {"region": str}),
    "OBS": (("endpoint", "bucket"), {"region": str}),
    "COS": (("endpoint", "bucket"), {"region": str}),
    "AzureBlob": (("accountName", "container"), {"endpoint": str}),
    "GCS": (("bucket",), {}),
    "Memory": (("name",), {}),
}
# credential type -> required fields, and the storage types it fits
_CREDENTIALS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "AK": (("accessKeyId", "secretAccessKey"), frozenset({"S3", "OSS", "OBS", "COS"})),
    "AzureKey": (("accountKey",), frozenset({"AzureBlob"})),
    "GCSServiceAccount": (("json",), frozenset({"GCS"})),
}
_NO_CREDENTIAL = frozenset({"Local", "Memory"})

# Names a backend may put into a host name: nothing that could end the host.
_BUCKET = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,253}[A-Za-z0-9])?")
_ACCOUNT = re.compile(r"[A-Za-z0-9]{1,64}")

_memory_spaces: dict[str, MemorySpace] = {}
_memory_lock = threading.Lock()


def _string(obj: Mapping[str, Any], field: str, prefix: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value.strip():
        raise BadArgument(f"{prefix}.{field} is required and must be a non-empty string")
    return value


def check_root_path(root_path: object) -> str:
    """A space's root path, normalised (no leading or trailing ``/``); the
    rule every open applies, and every space is recorded under."""
    if root_path is None:
        return ""
    if not isinstance(root_path, str):
        raise BadArgument.about("root path", "must be a string")
    root = root_path.strip("/")
    if root and (
        "\x00" in root or "\\" in root or any(p in ("", ".", "..") for p in root.split("/"))
    ):
        raise BadArgument.about(
            "root path", "must be a relative path without '.', '..', empty segments, '\\' or NUL"
        )
    return root


def validate_storage(storage: Mapping[str, Any], credential: Mapping[str, Any] | None) -> None:
    """Raise ``BadArgument`` naming the first missing or invalid field."""
    if not isinstance(storage, Mapping):
        raise BadArgument("storage must be an object")
    kind = storage.get("type")
    if kind not in _FIELDS:
        raise BadArgument(f"storage.type must be one of {', '.join(sorted(_FIELDS))}")
    required, optional = _FIELDS[kind]
    for field in required:
        _string(storage, field, "storage")
    for field, typ in optional.items():
        if storage.get(field) is not None and not isinstance(storage[field], typ):
            raise BadArgument(f"storage.{field} must be a {typ.__name__}")
    if kind == "Local" and not Path(storage["path"]).is_absolute():
        raise BadArgument("storage.path must be an absolute path")
    if kind in ("S3", "OSS", "OBS", "COS") and not _BUCKET.fullmatch(storage["bucket"]):
        raise BadArgument(
            "storage.bucket must be a bucket name (letters, digits, '.', '-', '_'), not a path"
        )
    if kind == "AzureBlob" and not _ACCOUNT.fullmatch(storage["accountName"]):
        raise BadArgument("storage.accountName must be letters and digits only")

    if kind == "OBS" and credential is None:
        # Unsigned, OBS's signer would take the server's own Huawei Cloud
        # identity from its environment (``SIGNER_ENVIRONMENT``).
        raise BadArgument(
            "credential is required for OBS storage (an access key pair): "
            "anonymous OBS spaces are not supported"
        )
    if kind == "COS" and credential is None:
        # OpenDAL's COS backend cannot send an unsigned request: every
        # operation of such a space would fail "cannot sign the request".
        raise BadArgument(
            "credential is required for COS storage (a SecretId and SecretKey as "
            "accessKeyId and secretAccessKey): anonymous COS spaces are not supported"
        )
    if credential is None or kind in _NO_CREDENTIAL:
        return
    if not isinstance(credential, Mapping):
        raise BadArgument("credential must be an object")
    ctype = credential.get("type")
    if ctype not in _CREDENTIALS:
        raise BadArgument(f"credential.type must be one of {', '.join(sorted(_CREDENTIALS))}")
    cfields, fits = _CREDENTIALS[ctype]
    if kind not in fits:
        raise BadArgument(f"credential.type {ctype} does not apply to {kind} storage")
    if ctype == "GCSServiceAccount":
        _gcs_credential(credential)
        return
    for field in cfields:
        _string(credential, field, "credential")


# What the OBS and OSS signers (reqsign, under OpenDAL) read from the process
# environment for whatever a space leaves unset; unlike the other backends
# they have no option to stop that. The server's own cloud keys would then
# sign a user's space, or its security token (or role) travel with a user's
# key to the user's endpoint.
SIGNER_ENVIRONMENT = {
    "OBS": (
        "HUAWEI_CLOUD_ACCESS_KEY_ID",
        "HUAWEI_CLOUD_SECRET_ACCESS_KEY",
        "HUAWEI_CLOUD_SECURITY_TOKEN",
    ),
    "OSS": (
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        "ALIBABA_CLOUD_STS_ENDPOINT",
    ),
}


def _signer_environment(kind: str) -> None:
    """Refuse to build an OBS or OSS space while the server's environment
    holds what its signer would take (names in the message, never values)."""
    present = [name for name in SIGNER_ENVIRONMENT[kind] if os.environ.get(name)]
    if present:
        raise SpaceRefused(
            f"{kind} spaces are disabled on this server: its environment sets "
            f"{', '.join(present)}, which the {kind} signer would add to users' "
            f"requests; unset them to allow {kind} spaces"
        )


# The fields of a service-account key file the backend uses; nothing else of
# the user's JSON is passed on.
_GCS_KEY_FIELDS = ("type", "private_key", "client_email")


def _gcs_credential(credential: Mapping[str, Any]) -> str:
    """The service-account key, base64-encoded as OpenDAL's ``credential`` option wants.

    Only a ``service_account`` key is accepted, and only its key and e-mail
    are passed on. OpenDAL's Google signer also takes the other kinds of
    credential file (``external_account``, ``impersonated_service_account``,
    ``authorized_user``), and those make the *server* read a file of its
    choosing (``credential_source.file``), fetch a URL of its choosing with
    headers of its choosing (``credential_source.url``, the cloud metadata
    service included) and post what it got to a URL of its choosing
    (``token_url``): a user could read ``root.key`` or ``master.key``, or
    reach any internal service, with no endpoint or path check in the way.
    """
    raw = credential.get("json")
    if isinstance(raw, Mapping):
        raw = json.dumps(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise BadArgument("credential.json is required: the service-account key JSON")
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadArgument("credential.json is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadArgument("credential.json must be a JSON object")
    if parsed.get("type") != "service_account":
        raise BadArgument(
            'credential.json must be a service-account key ("type": "service_account"); '
            "other kinds of Google credential file make the server fetch URLs and read "
            "files they name, and are not accepted"
        )
    key = {f: parsed[f] for f in _GCS_KEY_FIELDS if f in parsed}
    for field in ("private_key", "client_email"):
        if field in key and not isinstance(key[field], str):
            raise BadArgument(f"credential.json {field} must be a string")
    if not key.get("private_key"):
        raise BadArgument("credential.json private_key is required")
    return base64.b64encode(json.dumps(key).encode()).decode()


def storage_endpoint(storage: Mapping[str, Any]) -> str | None:
    """The URL a remote space talks to, if its record names one."""
    endpoint = storage.get("endpoint")
    return endpoint if isinstance(endpoint, str) and storage.get("type") != "Local" else None


def _endpoint_identity(url: str) -> str:
    """An endpoint as a location: scheme and host lower case, the port
    always written (the default one too), no trailing ``/``. A URL the
    parser refuses (no space opens with it) stands for itself."""
    scheme, sep, rest = url.partition("://")
    try:
        ep = parse_endpoint(scheme.lower() + sep + rest)
    except SpaceRefused:
        return url
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    path = rest.partition("/")[2].rstrip("/")
    return f"{ep.scheme}://{host}:{ep.port}" + (f"/{path}" if path else "")


def storage_identity(storage: Mapping[str, Any]) -> str:
    """Where a storage's keys live, the same for every way of writing it:
    two spaces with one identity reach the same files (a transfer between
    them must not overlap itself, fsck scans them as one, each one's block
    area is the other's too). Kind, normalised endpoint and bucket (or
    container); region and path style change how a bucket is reached, not
    which one; a Local path resolved. Found by review (2026-12-06): the
    raw settings were compared, and an endpoint written with a trailing
    ``/`` made the same bucket "another storage"."""
    kind = storage.get("type")
    if kind == "Local":
        path = storage.get("path")
        if isinstance(path, str) and "\x00" not in path:
            return "Local:" + os.path.realpath(path)
    elif kind in ("S3", "OSS", "OBS", "COS", "AzureBlob"):
        endpoint = storage.get("endpoint")
        if kind == "AzureBlob" and not endpoint:
            endpoint = f"https://{storage.get('accountName')}.blob.core.windows.net"
        place = storage.get("container") if kind == "AzureBlob" else storage.get("bucket")
        if isinstance(endpoint, str):
            endpoint = _endpoint_identity(endpoint)
        account = storage.get("accountName") if kind == "AzureBlob" else None
        return json.dumps([kind, endpoint, account, place])
    elif kind == "GCS":
        return json.dumps([kind, storage.get("bucket")])
    return json.dumps(dict(storage), sort_keys=True, default=str)


def _bucket_in_host(storage: Mapping[str, Any]) -> str | None:
    """The bucket the backend puts in front of the endpoint's host name
    (``<bucket>.<host>``), where it does: that name is resolved too."""
    kind = storage.get("type")
    if kind in ("OSS", "COS") or (kind == "S3" and storage.get("pathStyle") is False):
        bucket = storage.get("bucket")
        return bucket if isinstance(bucket, str) else None
    return None


async def check_remote(storage: Mapping[str, Any], rules: SpaceRules) -> None:
    """The network rules for a remote space: its endpoint (and the host name
    the bucket makes of it) must not be internal unless the operator allows it.
    Run at every open and every health probe (names may resolve differently)."""
    endpoint = storage_endpoint(storage)
    if endpoint is not None:
        await check_endpoint(endpoint, rules, bucket=_bucket_in_host(storage))


async def open_checked(
    storage: Mapping[str, Any],
    credential: Mapping[str, Any] | None,
    root_path: str | None,
    *,
    rules: SpaceRules,
    durable: bool = True,
    create: bool = False,
) -> Space:
    """``open_space`` after the checks that need the network (the endpoint's
    addresses are resolved and checked against ``rules``): what every user
    space is opened with."""
    validate_storage(storage, credential)
    await check_remote(storage, rules)
    return open_space(storage, credential, root_path, rules=rules, durable=durable, create=create)


def open_space(
    storage: Mapping[str, Any],
    credential: Mapping[str, Any] | None,
    root_path: str | None,
    *,
    rules: SpaceRules,
    durable: bool = True,
    create: bool = False,
) -> Space:
    """The backend for one user space; keys live under ``root_path`` inside the storage.

    ``create``: a Local space's directory is made if missing. Only when a
    space is recorded, moved or tested before it is: a directory that went
    away later (a disk unmounted, a directory removed) is not made again,
    or blocks would land on whatever file system lies beneath and the space
    would look healthy while its blocks are gone; it is ``SpaceUnavailable``
    until the operator brings it back.

    No network I/O happens here: connectivity is checked by the first operation
    (and remote endpoints by ``open_checked``). A Local space is confined by
    ``rules`` here, before any directory is created.
    """
    validate_storage(storage, credential)
    root = check_root_path(root_path)
    kind = storage["type"]
    cred: Mapping[str, Any] = credential or {}

    if kind == "Memory":
        if not rules.memory:
            raise SpaceRefused("Memory user spaces are for tests; this server does not allow them")
        name = storage["name"]
        with _memory_lock:
            base = _memory_spaces.setdefault(name, MemorySpace(name))
        return base.sub(root)

    if kind == "Local":
        check_local(storage["path"], rules)
        path = check_local(Path(storage["path"]) / root, rules)
        if not create:
            if not path.is_dir():
                raise SpaceUnavailable(
                    f"local space directory {str(path)!r} is missing (its disk unmounted, "
                    "or the directory removed?); it is not made again: bring it back "
                    "(or make it anew, empty, and repair restores its blocks)"
                )
            return LocalSpace(path, durable=durable)
        try:
            # The server's own directory (0700, as under its data dir); the
            # directories above it are the operator's.
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SpaceUnavailable(
                f"cannot create local space directory {str(path)!r}: {reason}"
            ) from None
        return LocalSpace(path, durable=durable)

    opts: dict[str, Any] = {}
    if kind == "S3":
        opts = {
            "endpoint": storage["endpoint"],
            "region": storage.get("region") or "us-east-1",
            "bucket": storage["bucket"],
            "disable_config_load": True,
            "disable_ec2_metadata": True,
        }
        if storage.get("pathStyle") is False:
            opts["enable_virtual_host_style"] = True
        if cred:
            opts["access_key_id"] = cred["accessKeyId"]
            opts["secret_access_key"] = cred["secretAccessKey"]
        else:
            opts["skip_signature"] = True
        scheme = "s3"
    elif kind == "OSS":
        _signer_environment(kind)
        opts = {"endpoint": storage["endpoint"], "bucket": storage["bucket"]}
        if cred:
            opts["access_key_id"] = cred["accessKeyId"]
            opts["access_key_secret"] = cred["secretAccessKey"]
        else:
            opts["skip_signature"] = True
        scheme = "oss"
    elif kind == "OBS":
        _signer_environment(kind)
        opts = {"endpoint": storage["endpoint"], "bucket": storage["bucket"]}
        if cred:
            opts["access_key_id"] = cred["accessKeyId"]
            opts["secret_access_key"] = cred["secretAccessKey"]
        scheme = "obs"
    elif kind == "COS":
        opts = {
            "endpoint": storage["endpoint"],
            "bucket": storage["bucket"],
            "disable_config_load": True,
        }
        if cred:
            opts["secret_id"] = cred["accessKeyId"]
            opts["secret_key"] = cred["secretAccessKey"]
        scheme = "cos"
    elif kind == "AzureBlob":
        account = storage["accountName"]
        opts = {
            "account_name": account,
            "container": storage["container"],
            "endpoint": storage.get("endpoint") or f"https://{account}.blob.core.windows.net",
        }
        if cred:
            opts["account_key"] = cred["accountKey"]
        else:
            opts["skip_signature"] = True
        scheme = "azblob"
    else:  # GCS
        opts = {
            "bucket": storage["bucket"],
            "disable_config_load": True,
            "disable_vm_metadata": True,
        }
        if cred:
            opts["credential"] = _gcs_credential(cred)
        else:
            opts["skip_signature"] = True
        scheme = "gcs"
    return OpenDALSpace(scheme, "/" + root, **opts)
