"""The limits of one HTTP connection, on uvicorn's httptools protocol.

uvicorn (0.55) bounds neither the time a client takes to send a request nor
the size of its head. A fuzzing pass against ``jcs serve`` kept connections
with a partial head, or a body stalled half-way, open for 400 s and more,
each holding its request's task (and the file descriptor: enough of them
exhaust the process's limit); and it streamed one header of 200 MiB, which
httptools buffers whole, growing the process by 300 MB and stalling the
event loop for everyone while it re-joined the growing buffer. So, on every
listener:

- **The head** (request line and headers) must arrive within
  ``head_seconds`` of the connection opening, or of its first byte after a
  keep-alive pause (a deadline: trickling bytes does not extend it), and be
  at most ``max_head`` bytes; so must a chunked body's trailers. Otherwise
  the listener answers in its own error format and closes the connection.
- **The body** may pause for at most ``idle_seconds`` while the app waits
  for it; then the connection is dropped and the app's ``receive`` answers
  ``http.disconnect``: an upload is discarded as for any client that goes
  away. Time the app itself takes is not the client's: a body left unread
  in the buffer, reading paused by flow control, a ``100 Continue`` not yet
  sent, or a request queued behind another each restart the wait.
- **The answer** may wait at most ``idle_seconds`` for a client that reads
  nothing (writing paused by the transport), as nginx's ``send_timeout``;
  also once the connection is closed with part of it still buffered
  (uvloop closes only when its buffer is out).
- **Between requests** uvicorn's keep-alive timeout applies, also after
  bytes that begin no request (which cancel uvicorn's timer).

Every write goes through ``ThreadedWrites`` (``bigwrites.py``): large
pieces of an answer are written to the socket by a worker thread.

What a listener answers a refused request (and a request its parser cannot
read) is its ``Malformed`` function's: S3 XML for the S3 endpoint, the JCS
envelope on the main listener. A method the parser does not know (``BREW``)
may be answered by the listener's ``UnknownMethod`` instead, given the
request line: the main listener answers the gateway's paths in the
gateway's format. A refusal never writes into another answer: while one is
being written, the connection is dropped instead.

A client's EOF after its request (a half-close: answers still due), and
the connection's loss, are told to each request through the
``CLIENT_ENDS`` extension of its scope (``api/common/http.py``): the EOF
is the same from a client that closed and left, and a request waiting on
someone else may give up; the loss reaches one whose body is not read yet.
"""

from __future__ import annotations

import asyncio
import re
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal

import httptools
import structlog
from starlette.responses import Response
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from jointcloud.api.common.admission import Admission
from jointcloud.api.common.bigwrites import ThreadedWrites
from jointcloud.api.common.http import CLIENT_ENDS, ClientEnds
from jointcloud.api.common.observability import new_request_id

log = structlog.get_logger(__name__)

# What went wrong with a request before the app saw it (or, with
# too_many_connections, before any request: the process is at its limit).
REFUSAL_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"sandbox; default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
Problem = Literal["unparsable", "head_too_large", "head_timeout", "too_many_connections"]
# A listener's answer to such a request, given its request id.
Malformed = Callable[[str, Problem], Response]


@dataclass(frozen=True)
class RequestLine:
    """What a request the parser refused said it was, read from its first line."""

    method: str
    path: str  # percent-decoded, as uvicorn's scope["path"]
    query: bytes


# A listener's answer to a request whose method the parser does not know;
# None: its Malformed answer (a path it has no format of its own for).
UnknownMethod = Callable[[RequestLine], Response | None]

# method SP request-target SP HTTP-version CRLF (RFC 9112 §3), after the
# empty lines a parser skips between requests.
_REQUEST_LINE = re.compile(rb"(?:\r?\n)*([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([^ \r\n]+) HTTP/\d\.\d\r?\n")


def request_line(head: bytes) -> RequestLine | None:
    """The request line at the start of ``head``, if whole and readable."""
    found = _REQUEST_LINE.match(head)
    if found is None:
        return None
    method, target = found.groups()
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        return None
    if url.path is None:  # an absolute form without one (found by review)
        return None
    try:
        path = url.path.decode("ascii")
    except UnicodeDecodeError:
        return None
    if "%" in path:  # as uvicorn routes it
        path = urllib.parse.unquote(path)
    return RequestLine(method.decode("ascii"), path, url.query or b"")


# A Content-Length field after a head's first line (its value, without the
# optional whitespace around it).
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([^\r\n]*?)[ \t]*(?=\r\n)", re.IGNORECASE)


def one_content_length(chunk: bytes) -> bytes:
    """``chunk``, which begins a request's head, without the Content-Length
    fields that repeat the first one's value, when the head is whole in it.

    Go programs that copy a presigned request's signed headers into the
    request send a lower-cased ``content-length`` beside the one Go writes
    (rclone before 1.59 for every upload under its cutoff, and with
    ``--s3-use-presigned-request`` since). httptools refuses any repetition;
    AWS takes it, and RFC 9110 §8.6 allows a recipient to take equal values
    as one. Values that differ stay, and are refused: which one frames the
    body would be ambiguous. A head split over reads is left as it came
    (refused): a client sends one this small in one write."""
    end = chunk.find(b"\r\n\r\n")
    if end < 0 or chunk.count(b"ength", 0, end) + chunk.count(b"ENGTH", 0, end) < 2:
        return chunk  # the cheap test, for every head
    fields = list(_CONTENT_LENGTH.finditer(chunk, 0, end + 2))
    if len(fields) < 2 or any(f[1] != fields[0][1] for f in fields):
        return chunk
    kept, at = [], 0
    for f in fields[1:]:
        kept.append(chunk[at : f.start()])  # each up to a repeat's line break
        at = f.end()
    kept.append(chunk[at:])
    return b"".join(kept)


LINGER_SECONDS = 2.0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


@dataclass(frozen=True)
class ConnectionLimits:
    head_seconds: float = 60.0
    idle_seconds: float = 60.0  # a body's pauses, and an answer's wait for a reader
    max_head: int = 64 * 1024  # AWS takes 8 KiB of headers on a PUT; URLs add some
    # Open connections of the process, over all its listeners (admission.py).
    admission: Admission | None = field(default=None, compare=False)


def http_protocol(
    malformed: Malformed | None,
    limits: ConnectionLimits,
    unknown_method: UnknownMethod | None = None,
) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol with ``limits``, answering what it refuses with
    ``malformed`` (uvicorn writes plain text) or, without one, plain text;
    a method the parser does not know with ``unknown_method`` where it answers."""

    unequal = limits.head_seconds != limits.idle_seconds

    class Protocol(HttpToolsProtocol):
        _watch: asyncio.TimerHandle | None = None
        _reading_head = True
        _head_deadline: float | None = None  # None: no request begun
        _head_bytes = 0  # of the head being read, in chunks that did not end it
        _tail_bytes = 0  # since the last body byte: chunk sizes, trailers
        _body_seen = False
        _any_data = False
        _messages = 0  # requests read whole on this connection
        _last_data = 0.0
        _feeding = 0  # size of the chunk being parsed
        _app_was_busy = False  # at the last check
        _running: RequestResponseCycle | None = None  # whose app runs (self.cycle may queue)
        _write_stalled_at: float | None = None  # since when the client took none of it
        _stalled_buffer = 0  # the answer's bytes still buffered then
        _refused = False  # answered and closing: what still arrives is dropped
        _writes: ThreadedWrites
        _half_closed = False  # the client sent its EOF; answers still due
        _admitted = False  # counted among the process's open connections
        _lingering = False  # turned away, counted among those lingering
        _ends: ClientEnds | None = None  # told to its requests (made with the first)
        _extensions: dict[str, dict[object, object]] | None = None  # in each request's scope
        _head_start = b""  # the chunk a head began with (a reference: no copy)
        _head_start_at = -1  # _messages then: a head begun later is not in it

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # uvicorn's flow control keeps the transport itself; every write,
            # close and abort (ours, uvicorn's, each request's) goes here.
            self._writes = ThreadedWrites(transport, self.pause_writing, self.resume_writing)
            self.transport = self._writes  # type: ignore[assignment]
            admission = limits.admission
            if admission is not None and not admission.admit():
                self._turn_away(admission)
                return
            self._admitted = admission is not None
            self._begin_head()

        def _turn_away(self, admission: Admission) -> None:
            """At the limit: answered at once, without waiting for a request,
            and closed after a short linger (as ``_refuse``) while few linger."""
            self._refused = True
            self.transport.write(self._answer("too_many_connections"))
            if self.transport.can_write_eof() and admission.may_linger():
                self._lingering = True
                self.transport.write_eof()
                self.loop.call_later(LINGER_SECONDS, self.transport.abort)
            else:
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            # uvicorn marks only the last request parsed as disconnected:
            # one running before it (pipelined) went on writing its answer
            # into the closed transport, which uvloop answers with a
            # RuntimeError, logged as an error of the app's.
            self._end_requests()
            if limits.admission is not None:
                if self._admitted:
                    self._admitted = False
                    limits.admission.leave()
                elif self._lingering:
                    self._lingering = False
                    limits.admission.lingered()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._reading_head and not self._head_bytes:
                data = one_content_length(data)
                self._head_start, self._head_start_at = data, self._messages
            self._any_data = True
            self._last_data = self.loop.time()
            counting, messages = self._reading_head, self._messages
            self._body_seen = False
            self._feeding = len(data)
            super().data_received(data)
            if self._refused:
                return
            if self._messages != messages:
                self._head_bytes = self._tail_bytes = 0  # a new head began inside this chunk
            elif counting and self._reading_head:
                self._head_bytes += len(data)
                if self._head_bytes > limits.max_head:
                    self._refuse("head_too_large")
                    return
            elif not self._reading_head and not self._body_seen:
                # A chunked body's trailer fields are parsed like headers (and
                # buffered whole by httptools): bound them as a head.
                self._tail_bytes += len(data)
                if self._tail_bytes > limits.max_head:
                    self._refuse("head_too_large")
                    return
            if (
                self._reading_head
                and self._head_deadline is None
                and self.timeout_keep_alive_task is None
                and (self.cycle is None or self.cycle.response_complete)  # cheap first
                and not self._in_flight()
                and not self.transport.is_closing()
            ):
                # Bytes that begin no request (a stray CRLF, the rest of a
                # body after an early answer) cancelled uvicorn's keep-alive
                # timer, which only an answer arms again.
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

        def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol's
            """The client has sent all it will: a half-close, as ``nc -N``
            and some proxies do once their request is out. Requests read
            whole are still answered, then the connection closes (uvicorn
            closed at once, and the answers were lost). A request whose head
            or body is still due is cut off, as before."""
            # Returning None lets the transport close itself: an answer
            # finished in this turn of the loop, still held back by
            # ThreadedWrites, goes out first (found by review: it was lost).
            self._writes.flush()
            pending = [c for c in self._cycles() if not c.response_complete]
            if self._refused or not pending or any(c.more_body for c in pending):
                return None
            if self._reading_head and self._head_bytes:
                return None  # a head begun after them will never end
            self._half_closed = True
            if self._ends is not None:
                self._ends.eof.set()
            return True  # the transport stays open for the answers

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._half_closed and not self._in_flight():
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_deadline is None:  # else: the connection's own, from its opening
                self._begin_head()  # a request's first byte (after a keep-alive pause, too)

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._head_deadline = None
            # The chunk that ends a head is not counted in data_received:
            # measure the head when that chunk could take it over the limit.
            if self._head_bytes + self._feeding > limits.max_head:
                size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
                if size > limits.max_head:
                    self._refuse("head_too_large")
                    raise _Refused  # stops the parser: no request for the app
            # The head is whole: its first chunk is not needed any more, and
            # one that also began a body (up to a read's 256 KiB) would be
            # held through the request and the keep-alive wait after it
            # (found by review).
            self._head_start = b""
            if self._extensions is None:  # once per connection: requests share it
                self._ends = ClientEnds()
                self._extensions = {CLIENT_ENDS: {"ends": self._ends}}
            self.scope["extensions"] = self._extensions
            super().on_headers_complete()
            self._app_was_busy = False
            # The watch armed for the head (at most a period away) checks
            # the body when it fires; none is armed per request.
            self._arm(limits.idle_seconds)

        def on_body(self, body: bytes) -> None:
            self._body_seen = True
            self._tail_bytes = 0
            super().on_body(body)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._reading_head = True
            self._head_bytes = self._tail_bytes = 0
            self._messages += 1

        def _unsupported_upgrade_warning(self) -> None:
            # An upgrade request (the server speaks no other protocol) is
            # answered as HTTP; the parser reads nothing after it, so the
            # connection closes with that answer. A client's choice: no
            # warning (uvicorn's would also blame a missing library).
            if self.cycle is not None:
                self.cycle.keep_alive = False

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
            self._running = cycle
            super()._start_asgi_task(cycle, app)

        def send_400_response(self, msg: str) -> None:
            # Called while uvicorn handles the parser's error: it says which.
            answer = None
            if isinstance(sys.exception(), httptools.HttpParserInvalidMethodError):
                try:
                    answer = self._unknown_method()
                except Exception:  # the listener's Malformed answer, not a dropped connection
                    log.exception("the answer to an unknown method failed")
            self._refuse("unparsable", answer)

        def _unknown_method(self) -> Response | None:
            """The listener's answer to a request whose method the parser
            does not know, if its request line is whole in the chunk that
            began it (and no other request began in that chunk after it)."""
            if unknown_method is None or self._head_start_at != self._messages:
                return None
            line = request_line(self._head_start)
            return unknown_method(line) if line is not None else None

        def pause_writing(self) -> None:
            super().pause_writing()
            self._write_stalled_at = self.loop.time()
            self._stalled_buffer = self.transport.get_write_buffer_size()
            self._arm(limits.idle_seconds)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._write_stalled_at = None

        def _begin_head(self) -> None:
            self._head_deadline = self.loop.time() + limits.head_seconds
            self._arm(limits.head_seconds)

        def _arm(self, delay: float) -> None:
            """One watch per connection, at most ``delay`` ahead: it re-checks
            whatever the connection is doing when it fires, so requests arm
            no timer of their own (a timer armed and cancelled per request
            cost a tenth of a bare request's rate). One due later than
            ``delay`` (the two limits differ) is brought forward."""
            watch = self._watch
            if watch is not None and not unequal:
                return  # due within one period anyway
            due = self.loop.time() + delay
            if watch is not None:
                if watch.when() <= due:
                    return
                watch.cancel()
            self._watch = self.loop.call_at(due, self._check)

        def _check(self) -> None:
            self._watch = None
            if self._refused:
                return
            now = self.loop.time()
            if self._write_stalled_at is not None:
                # A client that reads, however slowly, is waited for (as
                # nginx's send_timeout): the limit runs from the last
                # progress. Also once closing: the rest of an answer still
                # to be written keeps a closed connection open (ThreadedWrites).
                buffered = self.transport.get_write_buffer_size()
                if buffered < self._stalled_buffer:
                    self._write_stalled_at, self._stalled_buffer = now, buffered
                if now - self._write_stalled_at >= limits.idle_seconds:
                    self._drop()  # the client reads nothing of its answer
                    return
                self._arm(self._write_stalled_at + limits.idle_seconds - now)
            if self.transport.is_closing():
                return
            if self._reading_head:
                self._check_head(now)
            else:
                self._check_body(now)

        def _check_head(self, now: float) -> None:
            if self._head_deadline is None:
                return  # between requests: uvicorn's keep-alive timeout
            if self._in_flight():
                # A head pipelined behind a request still being answered:
                # its client may well wait for that answer first.
                self._head_deadline = now + limits.head_seconds
                self._arm(limits.head_seconds)
            elif now < self._head_deadline:
                self._arm(self._head_deadline - now)
            elif not self._any_data:
                self.transport.close()  # it never said a word: nothing to answer
            else:
                self._refuse("head_timeout")

        def _check_body(self, now: float) -> None:
            cycle = self.cycle
            if cycle is None or not cycle.more_body:
                return  # nothing more is awaited from the client
            busy = (
                cycle is not self._running  # queued: no app asks yet
                # Our own bytes are not out (an answer before it, or its
                # 100 Continue, waits on the client's reading): the client
                # may wait for them before it sends; that wait has its limit.
                or self._write_stalled_at is not None
                or (
                    not cycle.response_complete
                    and (
                        self.flow.read_paused or bool(cycle.body) or cycle.waiting_for_100_continue
                    )
                )
            )
            if busy or self._app_was_busy:
                # The app has not asked for more yet, or asked only since
                # the last check: the client's wait starts no earlier.
                self._last_data = now
            self._app_was_busy = busy
            idle = now - self._last_data
            if idle >= limits.idle_seconds:
                # Also after an early answer (the rest of the body is only
                # read to be dropped): the app's receive() sees the client gone.
                self._drop()
            else:
                self._arm(limits.idle_seconds - idle)

        def _in_flight(self) -> bool:
            """A request on this connection is not answered yet."""
            return any(not c.response_complete for c in self._cycles())

        def _answering(self) -> bool:
            """An answer is being written."""
            running = self._running
            return (
                running is not None and running.response_started and not running.response_complete
            )

        def _cycles(self) -> list[RequestResponseCycle]:
            """The running request's and those parsed after it."""
            queued = [c for c, _ in self.pipeline]
            return [c for c in (self._running, self.cycle, *queued) if c is not None]

        def _end_requests(self) -> None:
            """Every request not answered is over: its app's receive() sees
            the client gone and its answer is dropped, as when the
            connection is lost."""
            if self._ends is not None:
                self._ends.lost.set()
            for cycle in self._cycles():
                if not cycle.response_complete:
                    cycle.disconnected = True
                    cycle.message_event.set()

        def _drop(self) -> None:
            self._refused = True
            self._end_requests()
            self.transport.abort()

        def _refuse(self, problem: Problem, answer: Response | None = None) -> None:
            """Answer in the listener's format (or ``answer``), then close: the
            stream can no longer be trusted. While another answer is on its
            way, a second one would corrupt it: the connection is dropped
            instead."""
            if self._refused:
                return
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            if self._answering():
                self._drop()
                return
            self._refused = True
            self._end_requests()
            self.transport.write(self._answer(problem, answer))
            # Closing with unread input makes the kernel reset the connection,
            # which can destroy the answer before the client reads it (a
            # client still sending its oversized head). So: end our side,
            # drop what still arrives (reading resumed, in case flow control
            # paused it), and close once the client closes; after
            # LINGER_SECONDS, abort (a close would wait for a client that
            # does not read). nginx's "lingering close".
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.flow.resume_reading()
                self.loop.call_later(LINGER_SECONDS, self.transport.abort)
            else:
                self.transport.close()

        def _answer(self, problem: Problem, answer: Response | None = None) -> bytes:
            """The listener's answer to ``problem`` (or ``answer``), as bytes
            to send, with ``Connection: close``."""
            request_id = new_request_id()
            if answer is None and malformed is not None:
                answer = malformed(request_id, problem)
            elif answer is None:
                status = 503 if problem == "too_many_connections" else 400
                body = b"the HTTP request was refused: " + problem.encode() + b"\n"
                answer = Response(body, status_code=status, media_type="text/plain")
            phrase = HTTPStatus(answer.status_code).phrase.encode()
            lines = [b"HTTP/1.1 %d %s\r\n" % (answer.status_code, phrase)]
            headers = [*self.server_state.default_headers, *answer.raw_headers]
            headers += [(b"x-request-id", request_id.encode()), (b"connection", b"close")]
            # As every answer of link sharing, whose pages share these
            # listeners: nothing in an error may be sniffed, framed or run.
            names = {name.lower() for name, _ in headers}
            headers += [(k, v) for k, v in REFUSAL_HEADERS if k not in names]
            if problem == "too_many_connections":
                headers.append((b"retry-after", b"1"))
            lines += [name + b": " + value + b"\r\n" for name, value in headers]
            return b"".join(lines) + b"\r\n" + answer.body

    return Protocol
