"""The host: one process serving protocol apps on listeners, and the owner of
the context and of the background jobs (DESIGN §3).

``jcs serve`` builds a ``Host`` from the settings. The host opens the
``Context`` (and bootstraps a fresh store), starts the job runner when the
process has the ``jobs`` role, runs one uvicorn server per listener in one
event loop, and on SIGTERM/SIGINT stops the servers (in-flight requests
finish), then the jobs, then closes the context.

Listeners: the main one (``--listen``, default ``127.0.0.1:7890``) serves the
JCS v1 API (``/v1/...``, ``/healthz``) and ``/metrics``; further listeners
(``JCS_LISTENERS="name=HOST:PORT"``) serve the protocol registered under that
name in ``PROTOCOLS`` (the S3 endpoint joins there). A process without the
``api`` role serves only ``/healthz`` and ``/metrics`` on the main listener
and no other listener: a job worker stays observable and health-checkable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    Gauge,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from jointcloud import errors
from jointcloud.api.authsvc import app as authsvc
from jointcloud.api.common.admission import Admission, default_max_connections
from jointcloud.api.common.connection import (
    ConnectionLimits,
    Malformed,
    UnknownMethod,
    http_protocol,
)
from jointcloud.api.common.observability import HttpMetrics, Observability
from jointcloud.api.gateway import app as gateway
from jointcloud.api.jcs import envelope as jcs_envelope
from jointcloud.api.jcs.app import create_app
from jointcloud.api.memory import HeapTrimmer
from jointcloud.api.s3 import app as s3
from jointcloud.api.s3 import errors as s3_errors
from jointcloud.api.share import app as share
from jointcloud.config import MAIN_LISTENER, ConfigError, Settings, parse_listen
from jointcloud.context import Context
from jointcloud.core import stats
from jointcloud.core.gcholds import DelayAnnouncement

log = structlog.get_logger(__name__)

# Protocols that may have a listener of their own: name → app over the
# context with the host's HTTP instruments. The main listener's app is built
# by ``main_app``.
AppFactory = Callable[[Context, HttpMetrics], ASGIApp]
PROTOCOLS: dict[str, AppFactory] = {"s3": s3.create_app}
# The answer of each listener to a request refused before its app saw it
# (api/common/connection.py): the protocol's own error format, not uvicorn's text.
MALFORMED: dict[str, Malformed] = {
    MAIN_LISTENER: jcs_envelope.malformed_request,
    "s3": s3_errors.malformed_request,
}

SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_GRACE_SECONDS = 30
CLEANUP_SECONDS = 10.0
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"


class Background(Protocol):
    """What the host runs beside the listeners (the job runner)."""

    async def run_forever(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Listener:
    name: str
    address: str  # HOST:PORT
    app: ASGIApp
    malformed: Malformed | None = None
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    unknown_method: UnknownMethod | None = None


# --- /metrics ---------------------------------------------------------------


class Metrics:
    """Every instrument of one host on one registry: the HTTP ones (fed by
    the observability middleware of each app) and gauges of the store (job
    progress, user spaces by state) read from the metadata database at each
    scrape, plus the process, platform and GC collectors."""

    def __init__(self) -> None:
        self.http = HttpMetrics()
        reg = self.http.registry
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            # the library's default instances are already registered on its
            # global registry; a collector may be registered on several.
            reg.register(collector)
        self.metadata_up = Gauge(
            "jcs_metadata_up",
            "1 if the last scrape could read the metadata database",
            registry=reg,
        )
        self.spaces = Gauge(
            "jcs_user_spaces", "User spaces of every user, by state", ["state"], registry=reg
        )
        job = ["job"]
        self.job_running = Gauge(
            "jcs_job_running", "1 while a process runs a pass of the job", job, registry=reg
        )
        self.job_done = Gauge(
            "jcs_job_progress_done", "Units done by the running or last pass", job, registry=reg
        )
        self.job_total = Gauge(
            "jcs_job_progress_total", "Units to do in the running or last pass", job, registry=reg
        )
        self.job_runs = Gauge(
            "jcs_job_runs", "Passes finished since the job was registered", job, registry=reg
        )
        self.job_failed = Gauge(
            "jcs_job_last_pass_failed", "1 if the last pass ended in an error", job, registry=reg
        )
        self.job_finished = Gauge(
            "jcs_job_last_finished_timestamp_seconds",
            "When the last pass ended (Unix time)",
            job,
            registry=reg,
        )
        self.connections_open = Gauge(
            "jcs_http_connections_open",
            "Connections this process holds open, over all its listeners",
            registry=reg,
        )
        self.connections_limit = Gauge(
            "jcs_http_connections_limit",
            "Connections this process keeps open at most; more are answered 503",
            registry=reg,
        )

    def watch(self, admission: Admission) -> None:
        self.connections_open.set_function(lambda: admission.open)
        self.connections_limit.set(admission.limit)

    async def refresh(self, ctx: Context) -> None:
        try:
            spaces = await stats.spaces_by_state(ctx.db)
            jobs = await stats.job_progress(ctx.db)
        except Exception as exc:  # the scrape still shows the HTTP figures
            log.warning("metrics: metadata unreadable", error=f"{type(exc).__name__}: {exc}")
            self.metadata_up.set(0)
            return
        self.metadata_up.set(1)
        for state, count in spaces.items():
            self.spaces.labels(state).set(count)
        for j in jobs:
            self.job_running.labels(j.name).set(1 if j.running else 0)
            self.job_done.labels(j.name).set(j.done)
            self.job_total.labels(j.name).set(j.total)
            self.job_runs.labels(j.name).set(j.runs)
            self.job_failed.labels(j.name).set(1 if j.failed else 0)
            if j.last_finished is not None:
                self.job_finished.labels(j.name).set(j.last_finished.timestamp())

    async def render(self, ctx: Context) -> bytes:
        """The Prometheus text exposition of every instrument, refreshed."""
        await self.refresh(ctx)
        return generate_latest(self.http.registry)


# --- the apps of the main listener -------------------------------------------


def host_app(ctx: Context, metrics: Metrics, roles: Sequence[str]) -> ASGIApp:
    """The host's own endpoints: ``/metrics`` and ``/healthz``."""

    async def metrics_endpoint(_: Request) -> Response:
        return Response(await metrics.render(ctx), media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "roles": list(roles)})

    app = Starlette(
        routes=[
            Route(METRICS_PATH, metrics_endpoint, methods=["GET"]),
            Route(HEALTH_PATH, health, methods=["GET"]),
        ]
    )
    return Observability(app, protocol="host", metrics=metrics.http)


Mount = tuple[Callable[[str], bool], ASGIApp]


def under(prefix: str) -> Callable[[str], bool]:
    return lambda path: path == prefix or path.startswith(prefix + "/")


class _ByPath:
    """Sends the host's own paths to the host app, a path a mounted
    protocol claims to that protocol's app (first claim wins), the rest to
    the main protocol app (the JCS v1 API)."""

    def __init__(
        self,
        own: frozenset[str],
        host: ASGIApp,
        protocol: ASGIApp,
        mounts: Sequence[Mount] = (),
    ) -> None:
        self.own = own
        self.host = host
        self.protocol = protocol
        self.mounts = tuple(mounts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path in self.own:
                await self.host(scope, receive, send)
                return
            for claims, app in self.mounts:
                if claims(path):
                    await app(scope, receive, send)
                    return
        await self.protocol(scope, receive, send)


def main_app(ctx: Context, metrics: Metrics, roles: Sequence[str] = ("api", "jobs")) -> ASGIApp:
    """The app of the main listener: the JCS v1 API, the auth service
    (``/v1/access``), the gateway facade (the seed's root paths), link
    sharing (``/s/``, ``/raw/`` and the legacy share form) and ``/metrics``
    with the ``api`` role; only ``/metrics`` and ``/healthz`` without it."""
    own = host_app(ctx, metrics, roles)
    if "api" not in roles:
        return own
    return _ByPath(
        frozenset({METRICS_PATH}),
        own,
        create_app(ctx, metrics=metrics.http),
        [
            (under(authsvc.PREFIX), authsvc.create_app(ctx, metrics.http)),
            (gateway.PATHS.__contains__, gateway.create_app(ctx, metrics.http)),
            (share.handles, share.create_app(ctx, metrics.http)),
        ],
    )


def check_listeners(settings: Settings) -> None:
    """Every extra listener names a protocol this host knows (ConfigError)."""
    for name, _ in settings.listeners:
        if name not in PROTOCOLS:
            known = ", ".join(sorted(PROTOCOLS)) or "none yet"
            raise ConfigError(
                f"JCS_LISTENERS: no protocol {name!r} to serve (known: {known}); "
                f"the main listener is --listen"
            )


def build_listeners(ctx: Context, settings: Settings, metrics: Metrics) -> list[Listener]:
    check_listeners(settings)
    main = main_app(ctx, metrics, settings.roles)
    admission = Admission(settings.max_connections or default_max_connections())
    metrics.watch(admission)
    limits = ConnectionLimits(
        head_seconds=settings.http_head_seconds,
        idle_seconds=settings.http_idle_seconds,
        admission=admission,
    )
    # A method the parser does not know, on a path of the gateway's: its
    # own 405 (the v1 envelope's 400 answered it, found by review).
    refused = gateway.unknown_method if "api" in settings.roles else None
    listeners = [
        Listener(MAIN_LISTENER, settings.listen, main, MALFORMED[MAIN_LISTENER], limits, refused)
    ]
    if "api" in settings.roles:
        for name, address in settings.listen_addresses()[1:]:
            app = PROTOCOLS[name](ctx, metrics.http)
            listeners.append(Listener(name, address, app, MALFORMED.get(name), limits))
    return listeners


# --- serving ---------------------------------------------------------------


class ListenError(Exception):
    """A listener's address cannot be bound (in use, not an address of this
    machine, not permitted); raised before anything else starts."""


def _unclaimed(family: int, kind: int, proto: int, sockaddr: Any) -> None:
    """Raise ``OSError`` (EADDRINUSE) if anything listens at ``sockaddr``:
    a bind without ``SO_REUSEPORT`` fails where any socket is bound, with
    the option or not. Another server started with ``--workers`` would
    otherwise join this one's port, and the kernel would hand it part of
    the connections (found by review: a quarter of the requests went to
    the other server, whose keys refused them)."""
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind(sockaddr)


def bind(address: str, reuse_port: bool = False, *, claim: bool = False) -> list[socket.socket]:
    """Listening sockets for ``HOST:PORT`` (every address the host name
    resolves to), bound now so that a port in use fails the start at once.
    ``reuse_port``: worker processes bind the same port, each its own
    socket, and the kernel spreads new connections over them. ``claim``:
    this is the first of them, and nothing else may listen there yet."""
    host, port = parse_listen(address)
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
            if reuse_port and claim:
                _unclaimed(family, kind, proto, sockaddr)
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # Not inheritable (Python's default): a worker process started
            # later must not hold the first process's socket, which would
            # count it as listening before it has bound its own.
            sock.bind(sockaddr)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    return sockets


class CutShort(logging.Filter):
    """uvicorn logs any exception out of an app as "Exception in ASGI
    application", at error level with its traceback. One that is a named
    failure of ours (``DomainError``: blocks that cannot be read any more,
    after the answer's head went out) is no server bug: it becomes one
    warning line naming it; uvicorn closes the connection either way, so the
    client sees a short body (found by review)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, errors.DomainError) and str(record.msg).startswith("Exception in ASGI"):
            record.msg, record.args = "an answer was cut short: %s", (exc.message,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def name_cut_short_answers() -> None:
    found = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, CutShort) for f in found.filters):
        found.addFilter(CutShort())


RUNNER_STOP_SECONDS = 10.0  # twice: to end its passes, then once cancelled


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the host: with several servers
    in one loop, each would otherwise take SIGTERM from the one before."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _stopped(runner: asyncio.Task[None]) -> None:
    """Wait for the job runner to end its passes, then cancel it; give up on
    it after ``RUNNER_STOP_SECONDS`` more. ``wait_for`` would wait for the
    cancelled task to finish: a pass stuck where cancelling does not reach
    kept a server from stopping at all (found by review)."""
    done, _ = await asyncio.wait({runner}, timeout=RUNNER_STOP_SECONDS)
    if not done:
        runner.cancel()
        done, _ = await asyncio.wait({runner}, timeout=RUNNER_STOP_SECONDS)
    if not done:
        log.warning("job runner did not stop; the server stops without it")
        return
    if not runner.cancelled() and runner.exception() is not None:
        log.warning("job runner ended with an error", error=repr(runner.exception()))


def uvicorn_config(listener: Listener) -> uvicorn.Config:
    host, port = parse_listen(listener.address)
    http = http_protocol(listener.malformed, listener.limits, listener.unknown_method)
    return uvicorn.Config(
        listener.app,
        host=host,
        port=port,
        http=http,
        # No listener speaks WebSocket: an upgrade request is served as the
        # plain HTTP request it also is (as S3 does), not handed to a
        # WebSocket library that would pass a scope no app takes.
        ws="none",
        loop="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None,  # uvicorn's loggers go through ours (logs.py): JSON lines
        timeout_keep_alive=30,
        # A stop waits this long for requests in progress, then cancels them
        # (an upload cut off is discarded): a client that stalls cannot hold
        # the process up (a fuzzing pass kept one running 90 s after SIGTERM).
        timeout_graceful_shutdown=STOP_GRACE_SECONDS,
    )


def job_runner(ctx: Context) -> Background:
    """The runner of every background job (``jobs.registry``)."""
    from jointcloud.jobs.registry import build_runner

    return build_runner(ctx, serving=True)


class Host:
    """Runs one process: context, listeners (role ``api``), jobs (role ``jobs``).
    ``background`` builds what the ``jobs`` role runs (default: every job).
    ``reuse_port``: the listeners share their ports with other processes
    (``jcs serve --workers``); ``claim``: this process is the first of
    them (the ports must be free); ``on_ready`` is called once this
    process serves."""

    def __init__(
        self,
        settings: Settings,
        *,
        background: Callable[[Context], Background] = job_runner,
        say: Callable[[str], None] | None = None,
        on_root_key: Callable[[str], None] | None = None,
        reuse_port: bool = False,
        claim: bool = True,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        check_listeners(settings)
        self.reuse_port = reuse_port
        self.claim = claim
        self.on_ready = on_ready
        self.settings = settings
        self.background = background
        self.say = say or (lambda line: log.info(line))
        self.on_root_key = on_root_key
        self.servers: list[_Server] = []
        self.runner: Background | None = None
        self._signals = 0

    async def serve(self) -> None:
        """Serve until stopped. Raises ``ListenError`` before opening anything
        if a listener's address cannot be bound."""
        settings = self.settings
        wanted = settings.listen_addresses() if "api" in settings.roles else ()
        wanted = wanted or ((MAIN_LISTENER, settings.listen),)
        bound: dict[str, list[socket.socket]] = {}
        try:
            for name, address in wanted:
                bound[name] = bind(address, self.reuse_port, claim=self.claim)
        except ListenError:
            for socks in bound.values():
                for sock in socks:
                    sock.close()
            raise
        try:
            await self._serve(bound)
        finally:
            for socks in bound.values():
                for sock in socks:
                    sock.close()

    async def _serve(self, bound: dict[str, list[socket.socket]]) -> None:
        settings = self.settings
        name_cut_short_answers()
        ctx = await Context.open(settings)
        runner_task: asyncio.Task[None] | None = None
        trimmer: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        # What this process's readers and writers count on, for the GC of
        # every process on this database (``core/gcholds``).
        announcement = DelayAnnouncement(ctx.db, settings.gc_delay)
        announced = False
        try:
            key = await ctx.bootstrap()
            if key is not None and self.on_root_key is not None:
                self.on_root_key(key)
            await announcement.start()
            announced = True
            metrics = Metrics()
            listeners = build_listeners(ctx, settings, metrics)
            heap = HeapTrimmer(lambda: metrics.http.body_bytes, lambda: metrics.http.active)
            metrics.http.on_idle = heap.idle
            trimmer = asyncio.create_task(heap.run())
            self.servers = [_Server(uvicorn_config(li)) for li in listeners]
            for sig in SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_signal, sig)  # main thread only
            if "jobs" in settings.roles:
                self.runner = self.background(ctx)
                runner_task = asyncio.create_task(self.runner.run_forever())
            tasks = [
                asyncio.create_task(s.serve(sockets=bound[li.name]))
                for s, li in zip(self.servers, listeners, strict=True)
            ]
            for li in listeners:
                self.say(
                    f"jcs serving on http://{li.address} ({li.name} listener; "
                    f"roles {','.join(settings.roles)}; data dir {settings.data_dir})"
                )
            if self.on_ready is not None:
                self.on_ready()
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self.stop()  # one server ended (a signal ends them all): end the rest
            await asyncio.gather(*tasks)
            # Requests past the grace period were cancelled but not awaited:
            # let their clean-up (an upload's discard) end before the context
            # closes under it.
            left = [t for s in self.servers for t in s.server_state.tasks if not t.done()]
            if left:
                await asyncio.wait(left, timeout=CLEANUP_SECONDS)
        finally:
            for sig in SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
            if trimmer is not None:
                trimmer.cancel()
                (ended,) = await asyncio.gather(trimmer, return_exceptions=True)
                if isinstance(ended, Exception):  # not its cancellation
                    log.warning("heap trimmer ended with an error", error=repr(ended))
            if self.runner is not None:
                self.runner.stop()
            if runner_task is not None:
                await _stopped(runner_task)
            if announced:
                await announcement.stop()
            await ctx.close()

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1 and sig == signal.SIGINT:
            for s in self.servers:
                s.force_exit = True  # a second Ctrl-C: do not wait for open connections
        self.stop()

    def stop(self) -> None:
        """Graceful stop: servers finish their requests, jobs end their loops."""
        for s in self.servers:
            s.should_exit = True
        if self.runner is not None:
            self.runner.stop()
