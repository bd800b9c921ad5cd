"""Request ids and HTTP metrics for every protocol app, as pure ASGI middleware.

``Observability`` wraps a protocol's ASGI app. For each HTTP request it

* takes the client's ``X-Request-ID`` if it is sane (1–128 visible ASCII
  characters), else makes one; echoes it in the ``X-Request-ID`` response
  header and binds it (``request_id``) into the structlog context, so every
  log line written while the request runs carries it;
* counts the request by protocol, method, operation and status, times it
  until its last body byte is sent, and counts the body bytes in and out.

The operation is the route's path template (``/v1/object/download``), never
the raw path, so label values stay few whatever clients send. The middleware
only looks at ASGI messages as they pass: a streaming response stays
streaming (no buffering, unlike Starlette's ``BaseHTTPMiddleware``).
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID = 128
# Requests of unknown methods share one label value.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# What a request is counted as when its client hung up before any answer
# (nginx's "client closed request"): nothing was sent, nothing failed here.
CLIENT_CLOSED = 499
UNMATCHED = "unmatched"  # no route answered (404s of unknown paths)
# Latency buckets in seconds: API calls are milliseconds, object transfers
# can take minutes.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    float("inf"),
)

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jcs_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the request being served (for a protocol's error body)."""
    return _request_id.get()


def sane_request_id(raw: bytes | None) -> str | None:
    """The client's id if it is 1–128 visible ASCII characters, else None."""
    if not raw or len(raw) > MAX_REQUEST_ID or not raw.isascii() or b" " in raw:
        return None
    text = raw.decode("ascii")
    return text if text.isprintable() else None  # no control characters


def new_request_id() -> str:
    # 32 random hex digits, as uuid4().hex gave, without building a UUID.
    return os.urandom(16).hex()


class HttpMetrics:
    """The HTTP instruments, on one registry shared by every app of a host."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ["protocol", "method", "operation"]
        self.requests = Counter(
            "jcs_http_requests",
            "HTTP requests answered, by protocol, method, operation and status",
            [*labels, "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "jcs_http_request_duration_seconds",
            "Time from the request's arrival to its response's last byte",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "jcs_http_request_body_bytes",
            "Request body bytes received",
            labels,
            registry=self.registry,
        )
        self.bytes_out = Counter(
            "jcs_http_response_body_bytes",
            "Response body bytes sent",
            labels,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "jcs_http_requests_in_flight",
            "Requests being served now",
            ["protocol"],
            registry=self.registry,
        )
        # Body bytes in and out so far (counted as they flow), and the
        # requests being served, of every protocol: plain numbers the host
        # polls (``api/memory.py``), where the instruments above would be a
        # sum over all their labels.
        self.body_bytes = 0
        self.active = 0
        self.on_idle: Callable[[], None] | None = None  # the last request being served ended


def operation_of(scope: Scope) -> str:
    """The operation a protocol named (``jcs.operation``: S3's names, the v1
    fast lane's route paths), else the path template of the route that
    answered (set by the router in the shared scope), or ``unmatched``."""
    named = scope.get("jcs.operation")
    if isinstance(named, str):
        return named
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class Observability:
    """Pure ASGI middleware: request id, metrics, access log (debug level)."""

    def __init__(self, app: ASGIApp, *, protocol: str, metrics: HttpMetrics) -> None:
        self.app = app
        self.protocol = protocol
        self.metrics = metrics
        self._in_flight = metrics.in_flight.labels(protocol)
        # Labelled instruments by (method, operation, status): the label sets
        # are few (routes x methods x statuses), looking them up is not free.
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = None
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER:
                raw = value
                break
        rid = sane_request_id(raw) or new_request_id()
        rid_header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        started = time.perf_counter()
        status = 0
        bytes_in = 0
        bytes_out = 0
        gone = False  # the client hung up before an answer started

        metrics = self.metrics

        async def receive_counted() -> Message:
            nonlocal bytes_in, gone
            message = await receive()
            if message["type"] == "http.request":
                n = len(message.get("body", b""))
                bytes_in += n
                metrics.body_bytes += n  # as it flows: a long transfer is no pause
            elif message["type"] == "http.disconnect":
                gone = True
            return message

        async def send_observed(message: Message) -> None:
            nonlocal status, bytes_out
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = [
                    h for h in message.get("headers", ()) if h[0].lower() != REQUEST_ID_HEADER
                ]
                headers.append(rid_header)
                message = {**message, "headers": headers}
            elif kind == "http.response.body":
                n = len(message.get("body", b""))
                bytes_out += n
                metrics.body_bytes += n
            await send(message)

        token = _request_id.set(rid)
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        self._in_flight.inc()
        metrics.active += 1
        try:
            await self.app(scope, receive_counted, send_observed)
            if not status and gone:
                # Nothing to answer: the client closed the connection (a
                # cancelled upload). Not a server error; nginx's 499.
                status = CLIENT_CLOSED
        except BaseException:
            if not status:
                status = 500  # nothing was sent: the server answers 500
            raise
        finally:
            self._in_flight.dec()
            metrics.active -= 1
            if not metrics.active and metrics.on_idle is not None:
                metrics.on_idle()
            self._record(scope, status, time.perf_counter() - started, bytes_in, bytes_out)
            structlog.contextvars.reset_contextvars(**bound)
            _request_id.reset(token)

    def _record(
        self, scope: Scope, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        method = scope.get("method", "")
        method = method if method in METHODS else "other"
        operation = operation_of(scope)
        status = status or 500
        key = (method, operation, status)
        children = self._children.get(key)
        if children is None:
            m = self.metrics
            labels = (self.protocol, method, operation)
            children = (
                m.requests.labels(*labels, str(status)),
                m.duration.labels(*labels),
                m.bytes_in.labels(*labels),
                m.bytes_out.labels(*labels),
            )
            self._children[key] = children
        requests, duration, counted_in, counted_out = children
        requests.inc()
        duration.observe(seconds)
        if bytes_in:
            counted_in.inc(bytes_in)
        if bytes_out:
            counted_out.inc(bytes_out)
        log.debug(
            "request",
            protocol=self.protocol,
            method=method,
            operation=operation,
            status=status,
            seconds=round(seconds, 6),
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )
