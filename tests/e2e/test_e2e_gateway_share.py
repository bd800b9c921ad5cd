"""The gateway facade and link sharing on a real ``jcs serve``: the seed's
credentials flow (restrict key → grant → credentials from the auth service),
bucket and object calls through the facade to this server's S3 endpoint,
and a share URL that opens on the main listener."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import JcsServer, api_client, running_server

PASSWORD = "e2e gateway passphrase"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JcsServer]:
    with running_server(tmp_path_factory.mktemp("gateway")) as s:
        yield s


def ok(r: httpx.Response) -> Any:
    assert r.status_code in (200, 206), r.text
    body = r.json()
    assert body["code"] == 0, body
    return body.get("data")


def test_seed_flow_to_a_share_link(served: JcsServer, tmp_path: Path) -> None:
    s3 = f"http://127.0.0.1:{served.s3_port}"
    with api_client(served) as api, httpx.Client(base_url=served.endpoint, timeout=60) as gw:
        bucket = api.post("/v1/bucket/create", json={"name": "gwe2e"}).json()["data"]["bucket"]
        made = api.post("/v1/apiKey/create", json={"bucketID": bucket["bucketID"], "name": "gw"})
        api_key = made.json()["data"]["apiKey"]["key"]

        restrict = ok(
            gw.post(
                "/createRestrictKey",
                json={
                    "buckets": ["photos"],
                    "api_key": api_key,
                    "allow_download": True,
                    "allow_delete": True,
                    "allow_list": True,
                    "allow_upload": True,
                },
            )
        )
        grant = ok(
            gw.post(
                "/createAccessGrant",
                data={
                    "satellite_node_url": served.endpoint,
                    "restrict_key": restrict,
                    "password": PASSWORD,
                    "project_id": bucket["projectID"],
                },
            )
        )
        creds = ok(
            gw.post(
                "/createCredentials",
                data={"access_grant": grant, "auth_service": served.endpoint},
            )
        )
        assert creds["endpoint"] == s3
        auth = {
            "AccessKeyId": creds["access_key_id"],
            "SecretKey": creds["secret_key"],
            "Endpoint": creds["endpoint"],
        }
        gw.headers.update(auth)
        ok(gw.post("/createBucket", data={"bucket": "photos"}))
        content = b"<html><script>alert(1)</script></html>\n" * 1000
        r = gw.post(
            "/uploadObject",
            data={"bucket": "photos", "key": "2024/page.html"},
            files={"file": ("page.html", content, "text/html")},
        )
        ok(r)
        listed = ok(gw.post("/listObjects", data={"bucket": "photos", "prefix": "2024/"}))
        assert [o["key"] for o in listed] == ["2024/page.html"]
        down = gw.post("/downloadObject", data={"bucket": "photos", "key": "2024/page.html"})
        assert down.status_code == 200 and down.content == content
        # The restricted key reaches only "photos".
        r = gw.post("/createBucket", data={"bucket": "other"})
        assert r.json()["code"] == -1 and "AccessDenied" in r.json()["msg"]

        for h in auth:
            gw.headers.pop(h)
        link = ok(
            gw.post(
                "/shareUrl",
                data={
                    "bucket": "photos",
                    "key": "2024/page.html",
                    "satellite_node_url": served.endpoint,
                    "api_key": api_key,
                    "password": PASSWORD,
                    "project_id": bucket["projectID"],
                    "auth_service": served.endpoint,
                    "base_url": served.endpoint,
                },
            )
        )
        # <base_url>/<access_key_id>/<bucket>%2F<key>, as the seed's example
        base, _, tail = link.rpartition("/")
        assert tail == "photos%2F2024%2Fpage.html" and base.startswith(served.endpoint + "/")
        assert len(base.rsplit("/", 1)[1]) == 28  # an access key id
    with httpx.Client(timeout=60) as browser:
        page = browser.get(link, follow_redirects=True)
        assert page.status_code == 200 and "/s/" in str(page.url)
        assert "page.html" in page.text
        access = str(page.url).split("/s/", 1)[1].split("/", 1)[0]
        raw = browser.get(f"{served.endpoint}/raw/{access}/photos/2024/page.html")
        assert raw.status_code == 200 and raw.content == content
        # A shared HTML file never runs as a page of this origin.
        assert raw.headers["content-type"].startswith("text/plain")
        assert raw.headers["x-content-type-options"] == "nosniff"
        # The link reaches that one object only.
        other = browser.get(f"{served.endpoint}/raw/{access}/photos/2024/")
        assert other.status_code in (403, 404)
