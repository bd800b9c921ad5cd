"""The facade's one answer shape (seed 003): ``{"code": 0|-1, "data", "msg"}``
in JSON, or with ``data_format=xml`` a ``<map>`` holding ``<code>``,
``<msg>`` and ``<data>`` (a list is repeated ``<data>`` elements; inside them
the seed's CamelCase names: ``<AccessKeyId>``, ``<ETag>``, ...).

Every answer is HTTP 200, success or failure, as the seed's facade answers:
the outcome is ``code`` (docs/gateway.md). The only other statuses are 405 for
a method the path does not take and 206 for a ranged download.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response

from jointcloud.api.common.xmltext import xml_safe

OK = 0
FAILED = -1

# Field name in JSON → element name in XML, where ``Title_Case`` is not it.
_XML_NAMES = {"etag": "ETag"}

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"


class GatewayError(Exception):
    """A failure answered as ``{"code": -1, "msg": message}``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def xml_name(field: str) -> str:
    """``access_key_id`` → ``AccessKeyId``; ``etag`` → ``ETag``."""
    return _XML_NAMES.get(field) or "".join(p[:1].upper() + p[1:] for p in field.split("_"))


def escape(text: str) -> str:
    """XML character data escaped as Go's ``xml.EscapeText`` does it (the
    seed shows ``&#34;`` for the quotes of an ETag), what XML cannot carry
    as U+FFFD included."""
    text = xml_safe(text)
    out = []
    for ch in text:
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch == '"':
            out.append("&#34;")
        elif ch == "'":
            out.append("&#39;")
        elif ch == "\t":
            out.append("&#x9;")
        elif ch == "\n":
            out.append("&#xA;")
        elif ch == "\r":
            out.append("&#xD;")
        else:
            out.append(ch)
    return "".join(out)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _element(name: str, value: Any) -> str:
    if isinstance(value, Mapping):
        inner = "".join(_element(xml_name(k), v) for k, v in value.items())
        return f"<{name}>{inner}</{name}>"
    if value is None:
        return f"<{name}></{name}>"
    return f"<{name}>{_scalar(value)}</{name}>"


def render_xml(code: int, msg: str, data: Any = None) -> str:
    parts = [f"<code>{code}</code>", f"<msg>{escape(msg)}</msg>"]
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        parts.extend(_element("data", item) for item in data)
    elif data is not None:
        parts.append(_element("data", data))
    return "<map>" + "".join(parts) + "</map>"


def render_json(code: int, msg: str, data: Any = None) -> bytes:
    body: dict[str, Any] = {"code": code}
    if data is not None:
        body["data"] = data
    body["msg"] = msg
    # "replace": a lone surrogate (a client's own, echoed in a message) is
    # not UTF-8; it must not turn an answer into a crash
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def answer(
    code: int,
    msg: str,
    data: Any = None,
    *,
    xml: bool = False,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if xml:
        return Response(
            render_xml(code, msg, data).encode("utf-8", "replace"),
            status_code=status,
            media_type=XML_TYPE,
            headers=headers,
        )
    return Response(
        render_json(code, msg, data), status_code=status, media_type=JSON_TYPE, headers=headers
    )


def success(msg: str, data: Any = None, *, xml: bool = False) -> Response:
    return answer(OK, msg, data, xml=xml)


def failure(msg: str, *, xml: bool = False, status: int = 200) -> Response:
    return answer(FAILED, msg, xml=xml, status=status)
