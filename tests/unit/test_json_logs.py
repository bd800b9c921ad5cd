"""Library records (stdlib ``logging``: uvicorn, python-multipart) come out
as JSON lines like ours: a fuzzing pass found them as plain text in the
middle of the server's JSON log."""

from __future__ import annotations

import errno
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog

from jointcloud.logs import configure_logging


class FillingDisk(io.StringIO):
    """A log file on a disk that fills up: writes fail with ENOSPC while
    ``full`` is set."""

    full = False

    def write(self, text: str) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


@pytest.fixture
def server_logging() -> Iterator[FillingDisk]:
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
    out = FillingDisk()
    try:
        configure_logging("info", stream=out)
        yield out
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)
        for lg, (handlers, propagate) in zip(uvicorn_loggers, saved_uvicorn, strict=True):
            lg.handlers, lg.propagate = handlers, propagate


def test_library_records_are_json_lines(server_logging: FillingDisk) -> None:
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


def test_a_log_that_cannot_be_written_fails_nobody(server_logging: FillingDisk) -> None:
    """A full disk under the log must not turn every logged event (a
    request's failed write, reported on that same disk) into an exception
    of the code that logs it. Lines logged meanwhile are lost; later ones
    are written."""
    log = structlog.get_logger("jointcloud.test")
    server_logging.full = True
    log.warning("block write failed", error="No space left on device")
    log.error("lost too")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("and this")
    logging.getLogger("uvicorn.error").warning("a library's line")
    server_logging.full = False
    log.info("written again")
    lines = [json.loads(line) for line in server_logging.getvalue().splitlines()]
    assert [r["event"] for r in lines] == ["written again"]


def test_outbound_requests_are_not_logged(server_logging: FillingDisk) -> None:
    """The gateway calls URLs its callers name (satellite, auth service):
    httpx's own info line with each URL is not in the server's log."""
    with httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200))) as c:
        assert c.get("http://satellite.example/v1/project/info?x=caller-data").is_success
    assert "satellite.example" not in server_logging.getvalue()
    assert "caller-data" not in server_logging.getvalue()


def test_an_answer_cut_short_by_a_named_failure_is_one_warning(
    server_logging: FillingDisk,
) -> None:
    """Found by review: a download whose later blocks could not be read,
    after its head went out, logged uvicorn's "Exception in ASGI
    application" at error level with a traceback. A failure we name is one
    warning line; any other exception stays an error with its traceback."""
    from jointcloud.api.host import name_cut_short_answers
    from jointcloud.errors import NotEnoughBlocks

    name_cut_short_answers()  # as jcs serve does
    errors = logging.getLogger("uvicorn.error")
    cut = NotEnoughBlocks("cannot read segment 3: found 0 of 1 blocks needed", 0, 1)
    errors.error("Exception in ASGI application\n", exc_info=cut)
    errors.error("Exception in ASGI application\n", exc_info=RuntimeError("a bug"))
    lines = [json.loads(line) for line in server_logging.getvalue().splitlines()]
    assert [(r["event"], r["level"]) for r in lines] == [
        ("an answer was cut short: cannot read segment 3: found 0 of 1 blocks needed", "warning"),
        ("Exception in ASGI application\n", "error"),
    ]
    assert "exception" not in lines[0] and "RuntimeError: a bug" in lines[1]["exception"]


def test_library_records_carry_the_requests_id(server_logging: FillingDisk) -> None:
    """Every line written while a request runs has its ``request_id``
    (README), a library's too: python-multipart's warning about a
    malformed form had none."""
    with structlog.contextvars.bound_contextvars(request_id="abc123"):
        logging.getLogger("python_multipart.multipart").warning("Expected boundary")
    logging.getLogger("python_multipart.multipart").warning("outside a request")
    lines = [json.loads(line) for line in server_logging.getvalue().splitlines()]
    assert [r.get("request_id") for r in lines] == ["abc123", None]
