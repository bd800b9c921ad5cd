"""Settings, loaded once at start-up from flags and ``JCS_*`` environment.

``Settings`` is the value every layer reads (a frozen dataclass: tests build
it directly with keyword arguments). ``Environment`` is how it is loaded: a
pydantic-settings model whose fields are the ``JCS_*`` variables, so a bad
value is reported naming the variable (or the flag) instead of failing deep
inside the server. Flags win over the environment, the environment over the
defaults; an empty variable counts as unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy import make_url

from jointcloud.errors import BadArgument
from jointcloud.spaces.rules import SpaceRules, resolve_local

DEFAULT_LISTEN = "127.0.0.1:7890"
DEFAULT_S3_LISTEN = "127.0.0.1:7891"
S3_OFF = "off"
# What one ``jcs serve`` process does: ``api`` serves the protocols on their
# listeners, ``jobs`` runs the background jobs (repair, scrub, GC, sync, ...).
ROLES = ("api", "jobs")
# The listener every process has (``--listen``): the JCS v1 API, /metrics and
# /healthz. Further listeners are named after the protocol they serve.
MAIN_LISTENER = "main"


def _url(value: str) -> str:
    """A public URL, given with or without its scheme (http:// assumed)."""
    value = value.strip().rstrip("/")
    return value if "://" in value else "http://" + value


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadArgument(f"listen address must be HOST:PORT, got {value!r}")
    return host, int(port)


class ConfigError(BadArgument):
    """A flag or ``JCS_*`` variable with a value that cannot be used; the
    message names it. ``jcs serve`` prints it and exits with status 2."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    database_url: str | None = None
    gc_delay: timedelta = timedelta(minutes=10)
    gc_interval: float = 60.0
    multipart_expiry: timedelta = timedelta(days=1)  # unfinished uploads untouched this long go
    # Least size of every part but the last of an S3 multipart upload
    # (JCS_MULTIPART_MIN_PART_SIZE, bytes); S3's own is 5 MiB.
    multipart_min_part_size: int = 5 * 1024 * 1024
    # Objects up to this many bytes live inline in the metadata database,
    # sealed like blocks (JCS_INLINE_MAX_BYTES; 0: never). docs/durability.md.
    inline_max_bytes: int = 4096
    health_interval: float = 30.0  # seconds between two probes of every user space
    drain_interval: float = 60.0
    recode_interval: float = 60.0
    repair_interval: float = 30.0
    scrub_mbps: float = 50.0  # scrub reads at most this many MB (10^6 bytes) per second
    scrub_interval: float = 86400.0  # pause between two full sweeps
    sync_parallel: int = 16  # files copied at once by one transfer task
    # Files in one POST /v1/object/upload (JCS_MAX_UPLOAD_FILES); more is a BadArgument.
    max_upload_files: int = 1000
    # Uploads one user may have in progress at once in this process
    # (JCS_MAX_UPLOADS_PER_USER): PUTs, parts, v1 uploads; more answer 503.
    max_uploads_per_user: int = 64
    # Uploads the gateway facade reads from its callers at once in this
    # process (JCS_GATEWAY_MAX_UPLOADS), a quarter of them per access key;
    # each may hold up to three 8 MiB parts. More answer "busy".
    gateway_max_uploads: int = 64
    # Directories that may hold Local user spaces besides <data-dir>/spaces
    # (--local-root, JCS_LOCAL_ROOTS separated by ':'); see docs/security.md.
    local_roots: tuple[Path, ...] = ()
    # Remote space endpoints on loopback/private/link-local addresses
    # (--allow-private-endpoints, JCS_ALLOW_PRIVATE_ENDPOINTS=1), or only these
    # ("host", "host:port", CIDR; JCS_ENDPOINT_ALLOW separated by ',').
    allow_private_endpoints: bool = False
    endpoint_allow: tuple[str, ...] = ()
    # ``Memory`` user spaces (process memory, gone on restart): tests only.
    allow_memory_spaces: bool = False
    # What this process does (--role, JCS_ROLES separated by ','): see ROLES.
    roles: tuple[str, ...] = ROLES
    # Processes serving the listeners (--workers, JCS_WORKERS): this one and
    # workers-1 more with the api role only, on the same ports (a database
    # file or PostgreSQL; docs/decisions.md, "Worker processes").
    workers: int = 1
    # Listeners besides the main one (``listen``): (protocol, "HOST:PORT")
    # pairs (JCS_LISTENERS="s3=127.0.0.1:7891,..."); the host knows which
    # protocols exist.
    listeners: tuple[tuple[str, str], ...] = ()
    # Least level of the JSON logs (JCS_LOG_LEVEL); ``debug`` adds one
    # "request" line per HTTP request.
    log_level: str = "info"
    # This server's public URL, which is also its satellite address in access
    # grants (--public-url; default http:// + the --listen address).
    public_url: str | None = None
    # The S3 endpoint's address and public URL (--s3-listen, --s3-public-url):
    # the ``endpoint`` the auth service answers with its credentials.
    s3_listen: str = DEFAULT_S3_LISTEN
    s3_public_url: str | None = None
    # Domains of virtual-host addressing (--s3-domain, JCS_S3_DOMAINS
    # separated by ','): bucket.<domain> names a bucket.
    s3_domains: tuple[str, ...] = ()
    # The operator token other services send to GET /v1/access/{id}
    # (--auth-token, JCS_AUTH_TOKEN); None: that endpoint is closed.
    auth_token: str | None = field(default=None, repr=False)
    # How long a client may take to send a request's head, and pause in its
    # body (JCS_HTTP_HEAD_SECONDS, JCS_HTTP_IDLE_SECONDS; api/common/connection.py).
    http_head_seconds: float = 60.0
    http_idle_seconds: float = 60.0
    # Open connections per process over all listeners (JCS_MAX_CONNECTIONS;
    # api/common/admission.py); None: a quarter of its open-files limit.
    max_connections: int | None = None
    # How long PostgreSQL may take to answer one statement or a connection
    # attempt before the request fails with 503 (JCS_DB_TIMEOUT_SECONDS;
    # meta/outage.py). SQLite is in-process: no limit applies.
    db_timeout_seconds: float = 30.0

    def satellite_url(self) -> str:
        return _url(self.public_url or self.listen)

    def s3_endpoint(self) -> str:
        """The S3 endpoint's public URL; empty when this server has none."""
        if self.s3_public_url:
            return _url(self.s3_public_url)
        return "" if self.s3_listen == S3_OFF else _url(self.s3_listen)

    def listen_addresses(self) -> tuple[tuple[str, str], ...]:
        """Every listener of this process, the main one first: (name, HOST:PORT).
        The S3 endpoint has its own (``--s3-listen``, ``off``: none)."""
        s3 = () if self.s3_listen == S3_OFF else (("s3", self.s3_listen),)
        return ((MAIN_LISTENER, self.listen), *s3, *self.listeners)

    def space_rules(self) -> SpaceRules:
        """The confinement every user space is opened under."""
        data = resolve_local(self.data_dir)
        roots = (data / "spaces", *(resolve_local(r) for r in self.local_roots))
        return SpaceRules(
            local_roots=tuple(dict.fromkeys(roots)),
            data_dir=data,
            private_endpoints=self.allow_private_endpoints,
            endpoint_allow=self.endpoint_allow,
            own_listeners=tuple(parse_listen(a) for _, a in self.listen_addresses()),
            memory=self.allow_memory_spaces,
        )

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'meta.db'}"

    @classmethod
    def load(
        cls,
        data_dir: str | None = None,
        listen: str | None = None,
        database_url: str | None = None,
        *,
        local_roots: list[str] | None = None,
        allow_private_endpoints: bool = False,
        roles: list[str] | None = None,
        public_url: str | None = None,
        s3_listen: str | None = None,
        s3_public_url: str | None = None,
        auth_token: str | None = None,
        s3_domains: list[str] | None = None,
        workers: int | None = None,
    ) -> Settings:
        """Flags (the arguments; ``None``/empty = not given) over ``JCS_*``
        variables over defaults. Raises ``ConfigError`` naming the flag or
        the variable whose value is bad."""
        flags: dict[str, Any] = {
            "data_dir": data_dir or None,
            "listen": listen or None,
            "database_url": database_url or None,
            "local_roots": tuple(local_roots) if local_roots else None,
            "allow_private_endpoints": True if allow_private_endpoints else None,
            "roles": ",".join(roles) if roles else None,
            "public_url": public_url or None,
            "s3_listen": s3_listen or None,
            "s3_public_url": s3_public_url or None,
            "auth_token": auth_token or None,
            "s3_domains": ",".join(s3_domains) if s3_domains else None,
            "workers": workers,
        }
        given = {k: v for k, v in flags.items() if v is not None}
        try:
            env = Environment(**given)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, given)) from None
        return env.settings()


# Flag spelling of each field that also has a flag (for error messages).
FLAGS = {
    "data_dir": "--data-dir",
    "listen": "--listen",
    "database_url": "--database-url",
    "local_roots": "--local-root",
    "allow_private_endpoints": "--allow-private-endpoints",
    "roles": "--role",
    "public_url": "--public-url",
    "s3_listen": "--s3-listen",
    "s3_public_url": "--s3-public-url",
    "auth_token": "--auth-token",
    "s3_domains": "--s3-domain",
    "workers": "--workers",
}
ENV_PREFIX = "JCS_"
MAX_WORKERS = 64

# A delay (GC, multipart expiry) becomes a timedelta, which holds at most
# some 8.6e13 s: past it `jcs serve` ended in a traceback. 1e12 s (30,000
# years) is still "never" for every use.
MAX_SECONDS = 1e12
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
Interval = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _split(value: Any, sep: str) -> Any:
    """A list variable: ``sep``-separated, blanks dropped."""
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(sep) if p.strip())
    return value


class Environment(BaseSettings):
    """The ``JCS_*`` variables (and flags passed as keyword arguments), each
    field being one variable: ``gc_delay_seconds`` is ``JCS_GC_DELAY_SECONDS``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", frozen=True
    )

    data_dir: Path = Path("./jcs-data")
    listen: str = DEFAULT_LISTEN
    database_url: str | None = None
    gc_delay_seconds: Seconds = 600.0
    gc_interval_seconds: Interval = 60.0
    multipart_expiry_seconds: Seconds = 86400.0
    multipart_min_part_size: Annotated[int, Field(ge=0)] = 5 * 1024 * 1024
    inline_max_bytes: Annotated[int, Field(ge=0, le=65536)] = 4096
    health_interval_seconds: Interval = 30.0
    drain_interval_seconds: Interval = 60.0
    recode_interval_seconds: Interval = 60.0
    repair_interval_seconds: Interval = 30.0
    scrub_mbps: Interval = 50.0
    scrub_interval_seconds: Interval = 86400.0
    sync_parallel: Annotated[int, Field(ge=1)] = 16
    max_upload_files: Annotated[int, Field(ge=1)] = 1000
    max_uploads_per_user: Annotated[int, Field(ge=1)] = 64
    gateway_max_uploads: Annotated[int, Field(ge=1)] = 64
    local_roots: Annotated[tuple[str, ...], NoDecode] = ()  # ':'-separated
    allow_private_endpoints: bool = False
    endpoint_allow: Annotated[tuple[str, ...], NoDecode] = ()  # ','-separated
    roles: Annotated[tuple[str, ...], NoDecode] = ROLES  # ','-separated
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = 1
    listeners: Annotated[tuple[tuple[str, str], ...], NoDecode] = ()  # "name=HOST:PORT,..."
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    public_url: str | None = None
    s3_listen: str = DEFAULT_S3_LISTEN
    s3_public_url: str | None = None
    s3_domains: Annotated[tuple[str, ...], NoDecode] = ()  # ','-separated
    auth_token: str | None = Field(default=None, min_length=16, repr=False)
    http_head_seconds: Interval = 60.0
    http_idle_seconds: Interval = 60.0
    max_connections: Annotated[int, Field(ge=1)] | None = None
    db_timeout_seconds: Interval = 30.0

    @field_validator("s3_domains", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> Any:
        return _split(value, ",")

    @field_validator("s3_domains")
    @classmethod
    def _check_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            labels = domain.split(".")
            if not all(label and len(label) <= 63 for label in labels) or not all(
                c.isalnum() or c in "-." for c in domain
            ):
                raise ValueError(f"an S3 domain is a DNS name like s3.example.com, got {domain!r}")
        return tuple(d.lower() for d in value)

    @field_validator("public_url", "s3_public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlsplit(_url(value))
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError(f"a public URL is http(s)://HOST[:PORT][/PATH], got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        # Checked here, not where the engine is made: a URL SQLAlchemy cannot
        # parse, or one of a driver without asyncio (postgresql://,
        # sqlite:///), ended jcs serve in a traceback.
        if value is None:
            return None
        try:
            url = make_url(value)
            usable = url.get_backend_name() in ("sqlite", "postgresql")
            usable = usable and bool(url.get_dialect().is_async)
        except Exception:  # ArgumentError, NoSuchModuleError: SQLAlchemy's words for "not a URL"
            usable = False
        if not usable:
            raise ValueError(
                "a database URL is sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("s3_listen")
    @classmethod
    def _s3_listen(cls, value: str) -> str:
        if value != S3_OFF:
            try:
                parse_listen(value)
            except BadArgument as exc:
                raise ValueError(exc.message + " (or off)") from None
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        try:
            parse_listen(value)
        except BadArgument as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("local_roots", mode="before")
    @classmethod
    def _roots(cls, value: Any) -> Any:
        return _split(value, ":")

    @field_validator("local_roots")
    @classmethod
    def _absolute_roots(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for raw in value:
            if not Path(raw).is_absolute() or "\x00" in raw:
                raise ValueError(f"a local root must be an absolute directory, got {raw!r}")
        return value

    @field_validator("endpoint_allow", mode="before")
    @classmethod
    def _allow(cls, value: Any) -> Any:
        return _split(value, ",")

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, value: Any) -> Any:
        return _split(value, ",")

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in value if r not in ROLES]
        if unknown or not value:
            raise ValueError(f"roles are a ','-separated list of {', '.join(ROLES)}")
        return tuple(r for r in ROLES if r in value)  # canonical order, no repeats

    @field_validator("listeners", mode="before")
    @classmethod
    def _listeners(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs = []
        for item in _split(value, ","):
            name, sep, address = item.partition("=")
            if not sep:
                raise ValueError(f"a listener is NAME=HOST:PORT, got {item!r}")
            pairs.append((name.strip(), address.strip()))
        return tuple(pairs)

    @field_validator("listeners")
    @classmethod
    def _check_listeners(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        names = [MAIN_LISTENER]
        for name, address in value:
            if name == "s3":
                raise ValueError("the S3 endpoint listens on --s3-listen (JCS_S3_LISTEN)")
            if not name.isidentifier() or name in names:
                raise ValueError(f"listener names must be distinct words, got {name!r}")
            names.append(name)
            try:
                parse_listen(address)
            except BadArgument as exc:
                raise ValueError(exc.message) from None
        return value

    def settings(self) -> Settings:
        return Settings(
            data_dir=self.data_dir.resolve(),
            listen=self.listen,
            database_url=self.database_url,
            gc_delay=timedelta(seconds=self.gc_delay_seconds),
            gc_interval=self.gc_interval_seconds,
            multipart_expiry=timedelta(seconds=self.multipart_expiry_seconds),
            multipart_min_part_size=self.multipart_min_part_size,
            inline_max_bytes=self.inline_max_bytes,
            health_interval=self.health_interval_seconds,
            drain_interval=self.drain_interval_seconds,
            recode_interval=self.recode_interval_seconds,
            repair_interval=self.repair_interval_seconds,
            scrub_mbps=self.scrub_mbps,
            scrub_interval=self.scrub_interval_seconds,
            sync_parallel=self.sync_parallel,
            max_upload_files=self.max_upload_files,
            max_uploads_per_user=self.max_uploads_per_user,
            gateway_max_uploads=self.gateway_max_uploads,
            local_roots=tuple(Path(r) for r in self.local_roots),
            allow_private_endpoints=self.allow_private_endpoints,
            endpoint_allow=self.endpoint_allow,
            roles=self.roles,
            workers=self.workers,
            listeners=self.listeners,
            log_level=self.log_level,
            public_url=self.public_url,
            s3_listen=self.s3_listen,
            s3_public_url=self.s3_public_url,
            s3_domains=self.s3_domains,
            auth_token=self.auth_token,
            http_head_seconds=self.http_head_seconds,
            http_idle_seconds=self.http_idle_seconds,
            max_connections=self.max_connections,
            db_timeout_seconds=self.db_timeout_seconds,
        )


# Settings whose value is a secret or may hold one (a database URL carries
# its password): an error names the setting and the rule, never the value.
# Found by review (2026-12-06): a short JCS_AUTH_TOKEN was printed whole.
SECRETS = frozenset({"auth_token", "database_url"})
_SECRET_WORDS = ("token", "secret", "password", "passphrase", "credential", "key")


def is_secret(field: str) -> bool:
    """``SECRETS``, and any later setting named like one."""
    return field in SECRETS or any(word in field for word in _SECRET_WORDS)


def _explain(exc: ValidationError, given: dict[str, Any]) -> str:
    """One line per bad value, naming the flag or the variable it came from."""
    problems = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err.get("loc") else ""
        name = FLAGS.get(field, field) if field in given else ENV_PREFIX + field.upper()
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        value = err.get("input")
        if is_secret(field):
            # a validator's own words may quote the value: pydantic's rules do not
            if isinstance(value, str) and value and value in message:
                message = "invalid value"
            problems.append(f"{name}: {message} (value not shown)")
        elif isinstance(value, str | int | float) and value != "":
            shown = repr(value) if len(str(value)) <= 80 else repr(str(value)[:80]) + "..."
            problems.append(f"{name}={shown}: {message}")
        else:
            problems.append(f"{name}: {message}")
    return "; ".join(problems) or "invalid configuration"


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database
