"""Structured JSON logs.

Tracebacks are rendered as plain text without local variables: structlog's
default development renderer prints locals, which would put API keys and
credentials into the log. Values bound with ``structlog.contextvars`` (the
``request_id`` of the HTTP request being served, see
``api/common/observability.py``) appear on every line logged meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _NeverFailing(structlog.PrintLogger):
    """A log line that cannot be written (the disk holding the log is full,
    the pipe is gone) is dropped: logging must not fail the request or job
    that logs, least of all when it reports that same disk filling up. The
    standard library's handlers do the same (``Handler.handleError``)."""

    def msg(self, message: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: the stream was closed
            super().msg(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def configure_logging(
    level: int | str = logging.INFO, stream: TextIO | None = None, *, final: bool = False
) -> None:
    """JSON lines on ``stream`` (default stderr) from ``level`` up (a number
    or one of ``LEVELS``' names). ``final``: this configuration is the
    process's last (a server's), so every logger may keep it from its first
    use instead of looking it up on each call (a measurable share of a small
    request); tests that reconfigure leave it off."""
    if isinstance(level, str):
        level = LEVELS[level.lower()]
    out = stream if stream is not None else sys.stderr
    # Libraries' own (stdlib) logs stay at INFO and up: at DEBUG, aiosqlite
    # and others log every statement. They are JSON lines too (uvicorn's
    # "Invalid HTTP request received.", python-multipart's parser errors
    # came out as plain text in the middle of the JSON).
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[
                # the request's id on a library's line too (python-multipart's
                # parser warnings had none; found by review)
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                structlog.processors.format_exc_info,
            ],
        )
    )
    logging.basicConfig(handlers=[handler], level=max(level, logging.INFO))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's URL at info; the gateway's outbound calls
    # go to URLs its callers chose, and no request data is logged.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: _NeverFailing(out),
        cache_logger_on_first_use=final,
    )


def ensure_logging() -> None:
    if not structlog.is_configured():
        configure_logging()
