"""Parameters of a facade call, read from the query string, a JSON body, a
urlencoded form or a multipart form alike (the body wins over the query).

A multipart form is read with the streaming reader (``api/formdata``): the
fields before the ``file`` part are read into memory (small, capped), the
file part is handed to the caller unread, so an upload streams. Fields must
therefore come before the file (curl ``-F`` and browsers send them in the
order given); fields after it are read once the file is consumed, and only
there for calls that have no file (a completion sent to ``/uploadPart``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.datastructures import QueryParams
from starlette.requests import Request

from jointcloud.api.formdata import FormPart, StreamingForm, boundary_of
from jointcloud.api.gateway.envelope import GatewayError
from jointcloud.errors import BadArgument

MAX_BODY = 4 * 1024 * 1024  # a JSON or urlencoded body (1000 keys of 1 KiB fit)
MAX_FIELD = 1024 * 1024  # one field of a multipart form
MAX_FORM = MAX_BODY  # every field of a multipart form, the file part aside
MAX_FORM_PARTS = 10_000  # parts of a multipart form: each costs some bytes of its own
FILE_FIELD = "file"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})
_DECIMAL = re.compile(r"-?[0-9]{1,19}")  # ASCII and bounded: int() takes '²' or 5,000 digits badly


def _missing(name: str) -> GatewayError:
    return GatewayError(f"missing required parameter {name}")


class _NotJSON(ValueError):
    pass


def _not_json(token: str) -> Any:
    """Python's decoder takes NaN and Infinity, which JSON does not have."""
    raise _NotJSON(f"{token} is not a JSON value")


def _invalid(name: str, what: str) -> GatewayError:
    return GatewayError(f"invalid parameter {name}: {what}")


def _not_text(value: Any) -> bool:
    """Whether a decoded JSON value holds a string that is not Unicode text:
    JSON's escapes can spell a lone UTF-16 surrogate (``"\\ud800"``), which
    nothing downstream can encode (botocore, protobuf, Argon2, HTTP). Walked
    with a stack: JSON nests deeper than Python recurses."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


@dataclass
class Params:
    """Every value given for each name, in order (the query's first, then the
    body's, which replace them)."""

    values: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, name: str, value: Any) -> None:
        self.values.setdefault(name, []).append(value)

    def replace(self, name: str, value: Any) -> None:
        self.values[name] = [value]

    def has(self, name: str) -> bool:
        return self.first(name) is not None

    def first(self, name: str) -> Any:
        for value in self.values.get(name, ()):
            if value is not None:
                return value
        return None

    def xml(self) -> bool:
        value = self.first("data_format")
        return isinstance(value, str) and value.strip().lower() == "xml"

    # --- typed readers ----------------------------------------------------

    def text(self, name: str) -> str:
        value = self.optional_text(name)
        if value is None or value == "":
            raise _missing(name)
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.first(name)
        if value is None:
            return None
        # A whole number is taken as its digits (a project id sent as one);
        # a fraction is not a name anyone typed: 1e2 would become "100.0",
        # 1e400 "inf".
        if isinstance(value, bool | float | list | dict):
            raise _invalid(name, "must be a string")
        return str(value)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.first(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        raise _invalid(name, "must be true or false (or 1/0)")

    def integer(
        self,
        name: str,
        *,
        default: int | None = None,
        low: int | None = None,
        high: int | None = None,
    ) -> int:
        value = self.first(name)
        if value is None or value == "":
            if default is None:
                raise _missing(name)
            return default
        if isinstance(value, bool):
            raise _invalid(name, "must be an integer")
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            raise _invalid(name, "must be an integer")
        if low is not None and number < low:
            raise _invalid(name, f"must be at least {low}")
        if high is not None and number > high:
            raise _invalid(name, f"must be at most {high}")
        return number

    def millis(self, name: str) -> datetime | None:
        """A time in milliseconds since the epoch; absent, empty or 0: none."""
        if self.first(name) in (None, ""):
            return None
        ms = self.integer(name, low=0)
        if ms == 0:
            return None
        try:
            return datetime.fromtimestamp(ms / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise _invalid(name, "is not a time in milliseconds since the epoch") from None

    def texts(self, name: str) -> list[str]:
        """A list of strings: a JSON array, repeated fields (each one string,
        as given), or one field holding a JSON-array text, comma-separated
        text, or one string as given. S3 keys may hold a comma or begin or
        end with a space: a key in a field of its own is never split or
        trimmed into the names of other objects (``/deleteObjects`` deleted
        ``a`` and ``b`` for a field ``a,b``; cross-protocol review)."""
        given = [value for value in self.values.get(name, ()) if value is not None]
        if len(given) > 1 and all(isinstance(value, str) for value in given):
            if "" in given:
                raise _invalid(name, "must not hold an empty string")
            return list(given)
        found: list[str] = []
        for value in given:
            if isinstance(value, list):
                for item in value:
                    if not isinstance(item, str) or not item:
                        raise _invalid(name, "must be an array of non-empty strings")
                    found.append(item)
            elif isinstance(value, str):
                text = value.strip()
                if text.startswith("["):
                    try:
                        decoded = json.loads(text)
                    except (ValueError, RecursionError):
                        raise _invalid(name, "is not a JSON array") from None
                    if not isinstance(decoded, list) or not all(
                        isinstance(i, str) and i for i in decoded
                    ):
                        raise _invalid(name, "must be an array of non-empty strings")
                    found.extend(decoded)
                elif "," in value:
                    found.extend(p.strip() for p in text.split(",") if p.strip())
                elif value:
                    found.append(value)
            else:
                raise _invalid(name, "must be an array of strings")
        if not found:
            raise _missing(name)
        return found

    def objects(self, name: str) -> list[Mapping[str, Any]]:
        """A JSON array of objects (or its text in a form field)."""
        found: list[Mapping[str, Any]] = []
        for value in self.values.get(name, ()):
            if value is None:
                continue
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except (ValueError, RecursionError):
                    raise _invalid(name, "is not a JSON array of objects") from None
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, dict):
                    raise _invalid(name, "must be an array of objects")
                found.append(item)
        if not found:
            raise _missing(name)
        return found


@dataclass
class _Form:
    """What a multipart form's fields have taken so far: each field is
    capped, and so are their sum and the number of parts (the form is read
    before any credential is checked)."""

    params: Params
    size: int = 0
    parts: int = 0
    # Names the form has given: the first of each replaces the query's values
    # of that name, as a JSON or urlencoded body's do (they were added after
    # them, so the query's won; found by review).
    named: set[str] = field(default_factory=set)

    async def field(self, part: FormPart) -> None:
        self.parts += 1
        if self.parts > MAX_FORM_PARTS:
            raise GatewayError(f"the multipart form has more than {MAX_FORM_PARTS} parts")
        if part.filename is not None and part.name == FILE_FIELD:
            await part.drain()  # a second file, or a file where none is taken
            return
        raw = bytearray()
        async for chunk in part.chunks():
            raw += chunk
            if len(raw) > MAX_FIELD:
                raise GatewayError(f"form part {part.name!r} is larger than {MAX_FIELD} bytes")
            if self.size + len(raw) > MAX_FORM:
                raise GatewayError(
                    f"the fields of the multipart form are larger than {MAX_FORM} bytes "
                    "in all (the file part aside)"
                )
        self.size += len(raw)
        if part.name not in self.named:
            self.named.add(part.name)
            self.params.values.pop(part.name, None)
        self.params.add(part.name, _utf8(bytes(raw), part.name))


class Body:
    """What a request carries: its parameters and, for a multipart form, the
    unread ``file`` part and the rest of the form after it."""

    def __init__(
        self,
        params: Params,
        file: FormPart | None = None,
        rest: AsyncIterator[FormPart] | None = None,
        form: _Form | None = None,
    ) -> None:
        self.params = params
        self.file = file
        self._rest = rest
        self._form = form or _Form(params)

    async def finish(self) -> None:
        """Read the form to its end (fields after the file join the params)."""
        if self.file is not None:
            await self.file.drain()
        if self._rest is None:
            return
        async for part in self._rest:
            await self._form.field(part)
        self._rest = None


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(f"request body larger than {limit} bytes")
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > limit:
            raise GatewayError(f"request body larger than {limit} bytes")
    return bytes(raw)


def _utf8(raw: bytes, name: str | None) -> str:
    """``raw`` as UTF-8; text that is not is refused, never replaced (a key
    of ``%FF`` read the object named U+FFFD)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if name is None:
            raise GatewayError("a parameter name is not valid UTF-8") from None
        raise _invalid(name, "is not valid UTF-8") from None


def _pairs(raw: bytes, params: Params) -> None:
    """The pairs of a query string or urlencoded form (decoded after the
    percent escapes, so ``%FF`` is caught as a raw byte is)."""
    for pair in raw.split(b"&"):  # as parse_qsl, on bytes: it takes str as latin-1
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _utf8(unquote_to_bytes(raw_name.replace(b"+", b" ")), None)
        params.add(name, _utf8(unquote_to_bytes(raw_value.replace(b"+", b" ")), name))


def wants_xml(request: Request) -> bool:
    """``data_format=xml`` in the query string, read leniently: the answer's
    format is chosen before the parameters are checked."""
    return query_wants_xml(request.query_params)


def query_wants_xml(query: QueryParams) -> bool:
    values = query.getlist("data_format")
    return bool(values) and values[0].strip().lower() == "xml"


def query_params(request: Request) -> Params:
    params = Params()
    _pairs(request.scope.get("query_string", b""), params)
    return params


async def read_body(request: Request, *, takes_file: bool) -> Body:
    """The parameters of ``request``; with ``takes_file``, a multipart form's
    ``file`` part is left unread in ``Body.file``."""
    params = query_params(request)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = StreamingForm(
                request.stream().__aiter__(), boundary_of(request.headers.get("content-type"))
            )
            parts = form.parts()
            fields = _Form(params)
            async for part in parts:
                if takes_file and part.name == FILE_FIELD:
                    return Body(params, part, parts, fields)
                await fields.field(part)
        except BadArgument as exc:
            raise GatewayError(exc.message) from None
        return Body(params)
    raw = await _read_limited(request, MAX_BODY)
    if not raw.strip():
        return Body(params)
    # A body that opens as JSON does (an object, or an array: refused below
    # as "must be a JSON object", not read as a form missing every field) is
    # JSON whatever its Content-Type says: the seed's JSON bodies sent with
    # ``curl -d`` come labelled urlencoded, and a urlencoded form never opens
    # with a raw "{" or "[" (its serializer percent-encodes them).
    if ctype not in ("application/json", "text/json") and not raw.lstrip().startswith((b"{", b"[")):
        posted = Params()
        _pairs(raw, posted)
        params.values.update(posted.values)  # the body's names replace the query's
        return Body(params)
    try:
        decoded = json.loads(raw, parse_constant=_not_json)
    except _NotJSON as exc:
        raise GatewayError(f"the request body is not valid JSON: {exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: deep nesting
        if isinstance(exc, ValueError) and "digits" in str(exc):
            # Python's bound on integer text (CVE-2020-10735), named
            raise GatewayError(
                "the request body is not valid JSON here: a number has more than "
                f"{sys.get_int_max_str_digits()} digits"
            ) from None
        raise GatewayError("the request body is not valid JSON") from None
    if not isinstance(decoded, dict):
        raise GatewayError("the request body must be a JSON object")
    for name, value in decoded.items():
        if _not_text(name):
            raise GatewayError("the request body has a parameter name that is not Unicode text")
        if _not_text(value):
            raise _invalid(name, "holds a lone UTF-16 surrogate escape, which is not Unicode text")
        params.replace(name, value)
    return Body(params)
