"""The v1 JSON envelope as written on the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from jointcloud.api.jcs import views
from jointcloud.api.jcs.envelope import fail, ok
from jointcloud.core.models import ContentHash, ObjectEntry
from jointcloud.redundancy.policy import NonePolicy


def test_answer_is_compact_utf8_json() -> None:
    body = ok({"name": "ünï 名前", "n": 2**53 + 1, "none": None}).body
    data = '"data":{"name":"ünï 名前","n":9007199254740993,"none":null}'
    assert body == ('{"code":"OK","message":"",' + data + "}").encode()


def test_lone_surrogate_is_escaped_not_a_failure() -> None:
    # No UTF-8 spells it: the answer escapes it rather than failing.
    r = fail("BadArgument", "bad name 'a\ud800'", 400)
    assert r.status_code == 400
    assert b"\\ud800" in r.body
    assert json.loads(bytes(r.body))["message"] == "bad name 'a\ud800'"


def test_listed_object_shape() -> None:
    t = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
    later = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
    e = ObjectEntry(7, 3, "a/b.txt", 12, ContentHash("ab" * 32), NonePolicy(), t, later)
    out = json.loads(bytes(ok(views.obj(e)).body))["data"]
    assert out["objectID"] == 7 and out["packageID"] == 3 and out["path"] == "a/b.txt"
    assert out["size"] == "12"
    assert out["fileHash"] == "Full" + "AB" * 32
    assert out["redundancy"] == {"type": "none"}
    assert datetime.fromisoformat(out["createTime"]) == t
    assert datetime.fromisoformat(out["updateTime"]) == later
