"""Settings, loaded once at start-up from flags and ``JCS_*`` environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from jointcloud.errors import BadArgument

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

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'meta.db'}"

    @classmethod
    def load(
        cls, data_dir: str | None = None, listen: str | None = None, database_url: str | None = None
    ) -> Settings:
        env = os.environ
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
        )
