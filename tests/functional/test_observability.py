"""Request ids and /metrics on the main listener's app, in process.

The app is the host's (``api.host.main_app``): the JCS v1 API with the
observability middleware, plus ``/metrics`` read from the same instruments.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from jcs_helpers import Api, text_data
from prometheus_client.parser import text_string_to_metric_families

from jointcloud.api.common.observability import HttpMetrics, Observability
from jointcloud.api.host import Metrics, main_app
from jointcloud.context import Context
from jointcloud.jobs.registry import build_runner
from jointcloud.logs import configure_logging

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def host(ctx: Context, root_key: str, tmp_path: Path) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=main_app(ctx, Metrics()), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://jcs.test",
        headers={"Authorization": f"Bearer {root_key}"},
        timeout=60,
    ) as c:
        yield Api(c, ctx, tmp_path)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged meanwhile, as the server writes it (JSON lines, debug up)."""
    saved = structlog.get_config()
    out = io.StringIO()
    configure_logging("debug", stream=out)
    try:
        yield out
    finally:
        structlog.configure(**saved)


async def scrape(api: Api) -> Samples:
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_request_counters_latency_and_bytes_move(host: Api) -> None:
    before = await scrape(host)
    package = await host.package("metrics")
    content = text_data(300_000)
    obj = await host.upload_one(package, "a.txt", content)
    assert await host.download(int(obj["objectID"])) == content
    await host.fail("GET", "/v1/no/such/route/12345", "DataNotFound", 404)
    after = await scrape(host)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    create = {"protocol": "jcs", "method": "POST", "operation": "/v1/package/create"}
    assert moved("jcs_http_requests_total", **create, status="200") == 1
    assert moved("jcs_http_request_duration_seconds_count", **create) == 1
    assert moved("jcs_http_request_duration_seconds_sum", **create) > 0
    upload = {"protocol": "jcs", "method": "POST", "operation": "/v1/object/upload"}
    assert moved("jcs_http_requests_total", **upload, status="200") == 1
    assert moved("jcs_http_request_body_bytes_total", **upload) > len(content)
    download = {"protocol": "jcs", "method": "GET", "operation": "/v1/object/download"}
    assert moved("jcs_http_response_body_bytes_total", **download) == len(content)
    # The operation is the route's template, never the raw path.
    unmatched = {"protocol": "jcs", "method": "GET", "operation": "unmatched", "status": "404"}
    assert moved("jcs_http_requests_total", **unmatched) == 1
    assert not any("12345" in str(key) for key in after)
    # The scrape before counts as a request of the host's own endpoint.
    scrape_ = {"protocol": "host", "method": "GET", "operation": "/metrics", "status": "200"}
    assert value(after, "jcs_http_requests_total", **scrape_) >= 1


async def test_space_states_and_job_progress(host: Api, ctx: Context) -> None:
    samples = await scrape(host)
    assert value(samples, "jcs_metadata_up") == 1
    assert value(samples, "jcs_user_spaces", state="Normal") == 1  # the bootstrap's space
    assert ("jcs_user_spaces", (("state", "Draining"),)) in samples  # every state, 0 too
    await host.add_spaces(2)
    runner = build_runner(ctx)
    await runner.run_now("health")
    samples = await scrape(host)
    assert value(samples, "jcs_user_spaces", state="Normal") == 3
    assert value(samples, "jcs_job_runs", job="health") == 1
    assert value(samples, "jcs_job_running", job="health") == 0
    assert value(samples, "jcs_job_last_pass_failed", job="health") == 0
    assert value(samples, "jcs_job_progress_total", job="health") == 3  # spaces probed
    assert value(samples, "jcs_job_last_finished_timestamp_seconds", job="health") > 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_request_id_is_made_or_kept_and_echoed(host: Api) -> None:
    made = (await host.client.get("/healthz")).headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    other = (await host.client.get("/healthz")).headers["x-request-id"]
    assert other != made
    for sane in ("abc-123", "x" * 128, "Root=1-5759e988;Parent=53995c3f;Sampled=1"):
        r = await host.client.get("/healthz", headers={"X-Request-ID": sane})
        assert r.headers["x-request-id"] == sane
    for insane in ("x" * 129, "has space", "tab\there", "", "caf\u00e9".encode("latin-1")):
        r = await host.client.get("/healthz", headers={"X-Request-ID": insane})
        got = r.headers["x-request-id"]
        assert got != insane and len(got) == 32, got
        assert len(r.headers.get_list("x-request-id")) == 1
    # On every response: errors and the host's own endpoints too.
    r = await host.client.get("/v1/bucket/getByName", params={"name": "nope"})
    assert r.status_code == 404 and r.headers["x-request-id"]
    assert (await host.client.get("/metrics")).headers["x-request-id"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_request_id_in_json_logs(
    host: Api, ctx: Context, json_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = await host.client.get("/v1/bucket/listAll", headers={"X-Request-ID": "req-ok-1"})
    assert r.status_code == 200

    async def broken(user_id: int) -> list[Any]:
        structlog.get_logger("test").warning("about to fail", user_id=user_id)
        raise RuntimeError("boom")

    monkeypatch.setattr(ctx.buckets, "list", broken)
    r = await host.client.get("/v1/bucket/listAll", headers={"X-Request-ID": "req-500"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "req-500"
    r = await host.client.get("/v1/bucket/listAll")
    generated = r.headers["x-request-id"]

    logged = lines(json_logs)
    access = [x for x in logged if x["event"] == "request"]
    assert {"request_id": "req-ok-1", "status": 200} in [
        {"request_id": x["request_id"], "status": x["status"]} for x in access
    ]
    assert [x["operation"] for x in access if x["request_id"] == "req-500"] == [
        "/v1/bucket/listAll"
    ]
    during = [x for x in logged if x.get("request_id") == "req-500"]
    events = {x["event"] for x in during}
    # the handler's own line, the error handler's and the access line
    assert {"about to fail", "unhandled error", "request"} <= events, during
    assert any(x.get("request_id") == generated for x in logged)
    # Nothing logged outside a request carries an id.
    structlog.get_logger("test").info("after the requests")
    assert "request_id" not in lines(json_logs)[-1]


async def test_streaming_passes_through_piece_by_piece() -> None:
    """The middleware forwards each body message as it comes: a response
    whose second piece waits for the first to have been sent still completes."""
    first_sent = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a" * 1000, "more_body": True})
        await asyncio.wait_for(first_sent.wait(), 5)  # deadlocks if buffered
        await send({"type": "http.response.body", "body": b"b" * 24, "more_body": False})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body", b"").startswith(b"a"):
            first_sent.set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    metrics = HttpMetrics()
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    await Observability(app, protocol="test", metrics=metrics)(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", *["http.response.body"] * 2]
    assert (b"x-request-id", sent[0]["headers"][0][1]) == sent[0]["headers"][0]
    out = metrics.registry.get_sample_value(
        "jcs_http_response_body_bytes_total",
        {"protocol": "test", "method": "GET", "operation": "unmatched"},
    )
    assert out == 1024
