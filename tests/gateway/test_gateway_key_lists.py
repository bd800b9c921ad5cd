"""Key lists of ``/deleteObjects`` sent as form fields: S3 keys may hold a
comma or begin with a space, and a key given in a field of its own is that
key, never split or trimmed into the names of other objects (cross-protocol
review, 2026-12-07: ``keys=a,b&keys= lead`` deleted ``a``, ``b`` and
``lead``, and kept the two objects named)."""

from __future__ import annotations

import asyncio

import httpx
from gw_support import Jcs, unique

from jointcloud.api.gateway.params import Params

KEYS = ["a", "b", "a,b", " lead", "lead", "[x]", "tail "]


async def _put_all(jcs: Jcs, bucket: str, *, create: bool = False) -> None:
    """Through this server's S3 endpoint (served in this event loop, so the
    blocking client runs in a thread)."""
    s3 = jcs.backend.client()
    if create:
        await asyncio.to_thread(s3.create_bucket, Bucket=bucket)
    for key in KEYS:
        await asyncio.to_thread(s3.put_object, Bucket=bucket, Key=key, Body=key.encode())


async def _left(jcs: Jcs, bucket: str) -> list[str]:
    listed = await asyncio.to_thread(jcs.backend.client().list_objects_v2, Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


async def test_repeated_form_fields_are_each_one_key(gw: httpx.AsyncClient, jcs: Jcs) -> None:
    bucket = unique("keys")
    await _put_all(jcs, bucket, create=True)
    named = ["a,b", " lead", "[x]", "tail "]
    for send in (
        {"data": {"bucket": bucket, "keys": named}},  # urlencoded, repeated
        {"data": {"bucket": bucket}, "files": [("keys", (None, k)) for k in named]},
    ):
        answer = await gw.post("/deleteObjects", headers=jcs.backend.headers, **send)
        assert answer.json()["code"] == 0, answer.text
        assert await _left(jcs, bucket) == ["a", "b", "lead"]
        await _put_all(jcs, bucket)


async def test_one_field_of_one_key_is_taken_whole(gw: httpx.AsyncClient, jcs: Jcs) -> None:
    bucket = unique("keys")
    await _put_all(jcs, bucket, create=True)
    answer = await gw.post(
        "/deleteObjects", headers=jcs.backend.headers, data={"bucket": bucket, "keys": " lead"}
    )
    assert answer.json()["code"] == 0, answer.text
    assert await _left(jcs, bucket) == sorted(k for k in KEYS if k != " lead")


def test_a_comma_separated_field_and_a_json_array_still_work() -> None:
    one = Params({"keys": ["a.txt, b.txt"]})
    assert one.texts("keys") == ["a.txt", "b.txt"]
    array = Params({"keys": ['["a,b", " lead"]']})
    assert array.texts("keys") == ["a,b", " lead"]
    json_body = Params({"keys": [["a,b", " lead"]]})
    assert json_body.texts("keys") == ["a,b", " lead"]
