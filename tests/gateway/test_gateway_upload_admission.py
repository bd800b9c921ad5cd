"""The facade reads at most ``JCS_GATEWAY_MAX_UPLOADS`` uploads from its
callers at once, a quarter of them per access key and endpoint; one more is
answered "busy" before its file is read. The facade relays to any public S3
endpoint its caller names, so a caller needs no account here: before, each
stalled ``/uploadObject`` held up to 16 MiB of parts, bounded only by the
connection limit (the review of the thirteenth session's own changes)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
from gw_support import Answer, Backend, Gw, Recorder, read, unique

from jointcloud.api.gateway.app import create_app
from jointcloud.api.gateway.s3client import ClientCache
from jointcloud.context import Context

MiB = 1024 * 1024
FORM = {"Content-Type": "multipart/form-data; boundary=B"}
TOTAL = 4  # so one access key may hold 1


def head(bucket: str, key: str) -> bytes:
    fields = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name, value)
        for name, value in ((b"bucket", bucket.encode()), (b"key", key.encode()))
    )
    return fields + b'--B\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'


class Caller:
    """An upload whose client sends the fields and 1 MiB of its file, then
    waits until it is let go; ``pieces`` counts what was read of it."""

    def __init__(self, bucket: str, key: str) -> None:
        self.bucket, self.key = bucket, key
        self.sent = asyncio.Event()
        self.go_on = asyncio.Event()
        self.pieces = 0

    async def body(self) -> AsyncIterator[bytes]:
        self.pieces += 1
        yield head(self.bucket, self.key)
        self.pieces += 1
        yield b"s" * MiB
        self.sent.set()
        await self.go_on.wait()
        self.pieces += 1
        yield b"\r\n--B--\r\n"


async def test_stalled_uploads_hold_a_bounded_share(
    ctx: Context, recorder: Recorder, moto_url: str
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, gateway_max_uploads=TOTAL)
    app = create_app(ctx, clients=ClientCache(recorder.factory))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test", timeout=60
    ) as http:

        def as_key(name: str) -> Gw:  # moto takes any key, as a caller's own service would
            return Gw(http, False, Backend("moto", moto_url, name, "secret").headers)

        bucket = unique("admit")
        await as_key("k0").ok("/createBucket", json={"bucket": bucket})

        async def upload(key_id: str, caller: Caller) -> Answer:
            response = await http.post(
                "/uploadObject",
                content=caller.body(),
                headers={**FORM, **as_key(key_id).headers},
            )
            return read(response, xml=False)

        # One stalled upload of k0: its key's share is taken.
        first = Caller(bucket, "first")
        running = [asyncio.ensure_future(upload("k0", first))]
        await first.sent.wait()
        again = Caller(bucket, "again")
        # Without the bound it would be read and wait for its client: failed
        # after a while, not hung.
        refused = await asyncio.wait_for(upload("k0", again), 30)
        assert refused.code == -1, refused
        assert "this access key has 1 uploads in progress" in refused.msg, refused.msg
        assert refused.response.headers.get("retry-after") == "2"
        assert again.pieces == 1  # the fields only: nothing of its file was read

        # Other keys are not held by k0's, until the process's bound.
        stalled = [Caller(bucket, f"s{i}") for i in range(1, TOTAL)]
        running += [asyncio.ensure_future(upload(f"k{i}", c)) for i, c in enumerate(stalled, 1)]
        for caller in stalled:
            await caller.sent.wait()
        late = Caller(bucket, "late")
        refused = await asyncio.wait_for(upload("k9", late), 30)
        assert "the gateway facade has 4 uploads in progress" in refused.msg, refused.msg
        assert late.pieces == 1

        # Let go: every stalled upload is stored, and the slots come back.
        for caller in [first, *stalled]:
            caller.go_on.set()
        done = await asyncio.gather(*running)
        assert all(answer.code == 0 for answer in done), done
        after = Caller(bucket, "after")
        after.go_on.set()
        stored = await upload("k0", after)
        assert stored.code == 0, stored
        listed = await as_key("k0").ok("/listObjects", json={"bucket": bucket}, many=True)
        keys = sorted(o["key"] for o in listed.data)
        assert keys == sorted(["first", "after", *(c.key for c in stalled)])
