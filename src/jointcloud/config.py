"""Settings, loaded once at start-up from flags and ``JCS_*`` environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from jointcloud.errors import BadArgument
from jointcloud.spaces.rules import SpaceRules, resolve_local

DEFAULT_LISTEN = "127.0.0.1:7890"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadArgument(f"listen address must be HOST:PORT, got {value!r}")
    return host, int(port)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    database_url: str | None = None
    gc_delay: timedelta = timedelta(minutes=10)
    gc_interval: float = 60.0
    multipart_expiry: timedelta = timedelta(days=1)  # unfinished uploads untouched this long go
    health_interval: float = 30.0  # seconds between two probes of every user space
    drain_interval: float = 60.0
    recode_interval: float = 60.0
    repair_interval: float = 30.0
    scrub_mbps: float = 50.0  # scrub reads at most this many MB (10^6 bytes) per second
    scrub_interval: float = 86400.0  # pause between two full sweeps
    sync_parallel: int = 16  # files copied at once by one transfer task
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

    def space_rules(self) -> SpaceRules:
        """The confinement every user space is opened under."""
        data = resolve_local(self.data_dir)
        roots = (data / "spaces", *(resolve_local(r) for r in self.local_roots))
        host, port = parse_listen(self.listen)
        return SpaceRules(
            local_roots=tuple(dict.fromkeys(roots)),
            data_dir=data,
            private_endpoints=self.allow_private_endpoints,
            endpoint_allow=self.endpoint_allow,
            own_listeners=((host, port),),
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
    ) -> Settings:
        env = os.environ
        roots = local_roots or [r for r in env.get("JCS_LOCAL_ROOTS", "").split(":") if r]
        allow = [a.strip() for a in env.get("JCS_ENDPOINT_ALLOW", "").split(",") if a.strip()]
        return cls(
            data_dir=Path(data_dir or env.get("JCS_DATA_DIR") or "./jcs-data").resolve(),
            listen=listen or env.get("JCS_LISTEN") or DEFAULT_LISTEN,
            database_url=database_url or env.get("JCS_DATABASE_URL") or None,
            gc_delay=timedelta(seconds=float(env.get("JCS_GC_DELAY_SECONDS", "600"))),
            gc_interval=float(env.get("JCS_GC_INTERVAL_SECONDS", "60")),
            multipart_expiry=timedelta(
                seconds=float(env.get("JCS_MULTIPART_EXPIRY_SECONDS", "86400"))
            ),
            health_interval=float(env.get("JCS_HEALTH_INTERVAL_SECONDS", "30")),
            drain_interval=float(env.get("JCS_DRAIN_INTERVAL_SECONDS", "60")),
            recode_interval=float(env.get("JCS_RECODE_INTERVAL_SECONDS", "60")),
            repair_interval=float(env.get("JCS_REPAIR_INTERVAL_SECONDS", "30")),
            scrub_mbps=float(env.get("JCS_SCRUB_MBPS", "50")),
            scrub_interval=float(env.get("JCS_SCRUB_INTERVAL_SECONDS", "86400")),
            sync_parallel=max(1, int(env.get("JCS_SYNC_PARALLEL", "16"))),
            local_roots=tuple(_local_root(r) for r in roots),
            allow_private_endpoints=allow_private_endpoints
            or env.get("JCS_ALLOW_PRIVATE_ENDPOINTS", "").lower() in ("1", "true", "yes"),
            endpoint_allow=tuple(allow),
        )


def _local_root(raw: str) -> Path:
    path = Path(raw)
    if not path.is_absolute() or "\x00" in raw:
        raise BadArgument(f"--local-root must be an absolute directory, got {raw!r}")
    return path
