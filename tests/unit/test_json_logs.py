"""Library records (stdlib ``logging``: uvicorn, python-multipart) come out
as JSON lines like ours: a fuzzing pass found them as plain text in the
middle of the server's JSON log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from jointcloud.logs import configure_logging


@pytest.fixture
def server_logging() -> Iterator[io.StringIO]:
    """The process's logging as ``jcs serve`` sets it up (pytest's own
    handlers put aside), restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_structlog = structlog.get_config()
    # Other tests run uvicorn with its own logging set-up (its handlers, no
    # propagation); jcs serve passes log_config=None, which leaves them be.
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error")]
    saved_uvicorn = [(lg.handlers[:], lg.propagate) for lg in uvicorn_loggers]
    for lg in uvicorn_loggers:
        lg.handlers, lg.propagate = [], True
    root.handlers = []
    out = io.StringIO()
    try:
        configure_logging("info", stream=out)
        yield out
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)
        for lg, (handlers, propagate) in zip(uvicorn_loggers, saved_uvicorn, strict=True):
            lg.handlers, lg.propagate = handlers, propagate


def test_library_records_are_json_lines(server_logging: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("python_multipart.multipart").warning("Expected %s, got %d", "boundary", 88)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("some.library").exception("failed")
    structlog.get_logger("jointcloud.test").info("ours", n=1)
    lines = [json.loads(line) for line in server_logging.getvalue().splitlines()]
    assert [(r["event"], r["level"]) for r in lines] == [
        ("Invalid HTTP request received.", "warning"),
        ("Expected boundary, got 88", "warning"),
        ("failed", "error"),
        ("ours", "info"),
    ]
    assert "ValueError: boom" in lines[2]["exception"]
    assert all("timestamp" in r for r in lines)
