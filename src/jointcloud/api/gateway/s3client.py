"""The facade's S3 client: boto3 to the ``Endpoint`` a caller names, with the
caller's key pair, so the facade works against any S3 service.

botocore blocks: every call runs in the facade's own pool of threads
(``S3_POOL``, ``pools.py``), admitted within a short wait and bounded by a
deadline, so a service that does not answer holds none of the server's threads.
Clients are cached per (endpoint, access key id, secret) — making one loads
the service model — in a bounded LRU; a botocore client is thread-safe once
made. Addressing is path-style, the region ``us-east-1``, and checksums are
sent only where an operation requires them (any S3 service takes that).

A failed call becomes the message the seed's facade (the Go SDK v2) prints::

    operation error S3: CreateBucket, https response error StatusCode: 409,
    RequestID: <id>, HostID: <host id>, BucketAlreadyExists:

— ``<Code>: `` for the errors the Go SDK models as types (their message is
empty there), ``api error <Code>: <Message>`` for every other code.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from jointcloud.api.gateway.envelope import GatewayError
from jointcloud.api.gateway.pools import Deadline, Pool, given_up
from jointcloud.api.gateway.urls import service_url

REGION = "us-east-1"
MAX_CLIENTS = 64

# The facade's S3 calls (found by review, 2026-12-06: on the default pool,
# 40 calls to a silent endpoint stopped every write of the server). An
# upload keeps 2 parts in flight: 16 threads let eight go at full pace.
S3_THREADS = 16
S3_SLOTS = 32  # admitted at once: running, or waiting for a thread
PATIENCE = 2.0  # seconds a call waits for a slot before "busy"
# A part already read from the client, or a piece of a download under way,
# waits longer: failing it wastes what was sent.
LONG_PATIENCE = 60.0
S3_POOL = Pool("jcs-gateway-s3", threads=S3_THREADS, slots=S3_SLOTS, what="outbound S3 calls")
# Per attempt: 5 s to connect, 30 s between two bytes of the answer; two
# attempts. A call's deadline covers both and the back-off between them.
CONNECT_SECONDS = 5
READ_SECONDS = 30
ATTEMPTS = 2
CALL_SECONDS = 75.0
# Calls whose time grows with an object: the service copies or assembles it
# (sending whitespace meanwhile, as AWS does), or the body goes up at the
# client's pace (at least 1 MiB/s is allowed for).
SLOW_CALLS = frozenset({"copy", "copy_object", "upload_part_copy", "complete_multipart_upload"})
SLOW_SECONDS = 3600.0
BODY_RATE = 1024 * 1024

# Error codes the Go SDK v2 (the seed's client) models as types of their
# own: it prints them as ``<Code>: <modeled message>``, and the modeled
# message of each is empty. botocore's newer model adds AccessDenied,
# InvalidRequest and others; those keep the ``api error`` form here so the
# server's reason (e.g. which caveat refused) stays in the message.
MODELED = frozenset(
    {
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
        "InvalidObjectState",
        "NoSuchBucket",
        "NoSuchKey",
        "NoSuchUpload",
        "NotFound",
        "ObjectAlreadyInActiveTierError",
        "ObjectNotInActiveTierError",
    }
)

# What a cheap call made before a body is read (``S3.vouch``) refuses on:
# credentials the service does not take, or a bucket or upload that is not
# there. Any other answer (AccessDenied to a key that may write but not
# read, an operation the service lacks) is left for the real call to judge.
REFUSED_EARLY = frozenset(
    {
        "AccountProblem",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidSecurity",
        "InvalidToken",
        "NoSuchBucket",
        "NoSuchUpload",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)

ClientFactory = Callable[[str, str, str], Any]


def _errors() -> tuple[type[Exception], type[Exception]]:
    """botocore's error types. boto3 and botocore are imported when the
    facade first calls S3, not when the server starts: they hold some 30 MB
    that a server nobody calls through the facade does not need."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
    )

    return ClientError, BotoCoreError


def _config() -> Any:
    from botocore.config import Config  # type: ignore[import-untyped]

    return Config(
        region_name=REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        # total_: botocore's max_attempts counts the retries only (it made 3).
        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
        connect_timeout=CONNECT_SECONDS,
        read_timeout=READ_SECONDS,
        max_pool_connections=32,
        tcp_keepalive=True,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


_session_lock = threading.Lock()
_session: Any = None


def _no_expect(params: dict[str, Any], **_: Any) -> None:
    """Drop ``Expect: 100-continue`` (botocore adds it to every body it sends
    as a stream). A server that refuses such a request at once, without
    "100 Continue" and without closing the connection, leaves it waiting
    for a body botocore never sends: the next request on that connection is
    read as that body. Sending the body outright works with every server."""
    params.get("headers", {}).pop("Expect", None)


class GivenUp(Exception):
    """Ends a call its caller gave up, before its next attempt."""


def _unless_given_up(**_: Any) -> None:
    """Before each attempt (a retry too): a call given up makes no more,
    so its thread is held for the attempt under way at most."""
    if given_up():
        raise GivenUp()


def new_client(endpoint: str, access_key_id: str, secret_key: str) -> Any:
    """A boto3 S3 client (blocks; sessions are not thread-safe, hence the lock)."""
    global _session
    import boto3  # type: ignore[import-untyped]

    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        client = _session.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_key,
            region_name=REGION,
            config=_config(),
        )
    # after botocore's own handlers of the operations (more specific names first)
    client.meta.events.register("before-call.s3", _no_expect)
    client.meta.events.register("before-send.s3", _unless_given_up)
    return client


def normalize_endpoint(raw: str) -> str:
    """The ``Endpoint`` header as a URL (``urls.service_url``)."""
    return service_url(raw, "header Endpoint")


class ClientCache:
    """Bounded LRU of clients by (endpoint, access key id, hash of secret)."""

    def __init__(self, factory: ClientFactory = new_client, size: int = MAX_CLIENTS) -> None:
        self.factory = factory
        self.size = size
        self._clients: OrderedDict[tuple[str, str, bytes], Any] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, endpoint: str, access_key_id: str, secret_key: str) -> Any:
        key = (endpoint, access_key_id, hashlib.sha256(secret_key.encode()).digest())
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
        client = self.factory(endpoint, access_key_id, secret_key)
        with self._lock:
            self._clients[key] = client
            self._clients.move_to_end(key)
            while len(self._clients) > self.size:
                self._clients.popitem(last=False)
        return client

    async def get(self, endpoint: str, access_key_id: str, secret_key: str) -> S3:
        # In the facade's pool too: a caller naming new keys on every
        # request makes a client (the service model) each time.
        client = await S3_POOL.run(
            self._get, endpoint, access_key_id, secret_key, patience=PATIENCE, deadline=None
        )
        return S3(client)


def describe(exc: Exception, operation: str) -> str:
    """The Go SDK's text of a failed S3 call."""
    client_error, core_error = _errors()
    if isinstance(exc, client_error):
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        status = int(meta.get("HTTPStatusCode") or 0)
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        if not code or code.isdigit():  # a HEAD's error has no body: the status says it
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "UnknownError"
            code = phrase.replace(" ", "")
            message = message if message and not message.isdigit() else phrase
        head = (
            f"operation error S3: {operation}, https response error StatusCode: {status}, "
            f"RequestID: {meta.get('RequestId') or ''}, HostID: {meta.get('HostId') or ''}, "
        )
        if code in MODELED:
            return f"{head}{code}: "
        return f"{head}api error {code}: {message}"
    if isinstance(exc, core_error):
        return f"operation error S3: {operation}, {exc}"
    return f"operation error S3: {operation}, {type(exc).__name__}: {exc}"


def deadline_of(method: str, kwargs: dict[str, Any]) -> float:
    """Seconds one call may take, all its attempts included."""
    if method in SLOW_CALLS:
        return SLOW_SECONDS
    length = kwargs.get("ContentLength")
    if isinstance(length, int) and length > 0:
        return CALL_SECONDS + length / BODY_RATE
    return CALL_SECONDS


def _late(operation: str, deadline: float) -> GatewayError:
    return GatewayError(
        f"operation error S3: {operation}, no answer within {deadline:.0f} s "
        "(the facade's bound on one S3 call)"
    )


class S3:
    """One client; ``call`` runs an operation in the facade's pool and turns
    its failure into a ``GatewayError`` with the Go SDK's message."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def operation(self, method: str) -> str:
        mapping: dict[str, str] = self.client.meta.method_to_api_mapping
        return mapping.get(method, method)

    def call_sync(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except _errors() as exc:
            raise GatewayError(describe(exc, self.operation(method))) from None

    async def call(self, method: str, /, *, patience: float | None = None, **kwargs: Any) -> Any:
        """``patience``: seconds to wait for a slot (``PATIENCE``)."""
        deadline = deadline_of(method, kwargs)
        wait = PATIENCE if patience is None else patience
        try:
            return await S3_POOL.run(
                self.call_sync, method, patience=wait, deadline=deadline, **kwargs
            )
        except Deadline:
            raise _late(self.operation(method), deadline) from None

    async def vouch(self, method: str, **kwargs: Any) -> None:
        """Make a cheap call (a GET: its error has a code) before reading a
        body the service would refuse anyway: fails only on ``REFUSED_EARLY``
        codes and on no answer at all."""

        def run() -> None:
            client_error, core_error = _errors()
            try:
                getattr(self.client, method)(**kwargs)
            except client_error as exc:
                code = ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code")
                if code in REFUSED_EARLY:
                    raise GatewayError(describe(exc, self.operation(method))) from None
            except core_error as exc:
                raise GatewayError(describe(exc, self.operation(method))) from None

        try:
            await S3_POOL.run(run, patience=PATIENCE, deadline=CALL_SECONDS)
        except Deadline:
            raise _late(self.operation(method), CALL_SECONDS) from None

    async def read(self, stream: Any, size: int) -> bytes:
        """The next piece of a ``GetObject`` body (in the pool, bounded)."""
        try:
            piece: bytes = await S3_POOL.run(
                stream.read, size, patience=LONG_PATIENCE, deadline=CALL_SECONDS
            )
        except Deadline:
            raise _late("GetObject", CALL_SECONDS) from None
        return piece
