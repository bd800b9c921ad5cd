"""§4.1–4.5 user spaces: create, get, list, update, delete, test."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from jcs_helpers import Api, Other, assert_time, expect_error

SPACE_KEYS = {"userSpaceID", "name", "storage", "credential", "rootPath", "state", "createTime"}

S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
S3_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AZURE_SECRET = "QXp1cmVTZWNyZXRBY2NvdW50S2V5VmFsdWUxMjM0NTY3ODkw"
GCS_SECRET = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END"


def check_space(s: Any, name: str, storage: dict[str, Any]) -> None:
    assert isinstance(s, dict) and set(s) >= SPACE_KEYS, s
    assert isinstance(s["userSpaceID"], int)
    assert s["name"] == name
    assert s["storage"] == storage
    assert s["state"] in ("Normal", "Unavailable", "Draining")
    assert isinstance(s["rootPath"], str)
    assert_time(s["createTime"])


async def create_local(api: Api, name: str, path: Path, **extra: Any) -> dict[str, Any]:
    storage = {"type": "Local", "path": str(path)}
    data = await api.post("/v1/userSpace/create", {"name": name, "storage": storage, **extra})
    assert set(data) == {"userSpace"}
    check_space(data["userSpace"], name, storage)
    return dict(data["userSpace"])


async def test_create_get_list_update_delete(api: Api, tmp_path: Path) -> None:
    initial = (await api.get("/v1/userSpace/list"))["userSpaces"]
    assert [s["name"] for s in initial] == ["local"]
    assert initial[0]["storage"]["type"] == "Local" and initial[0]["state"] == "Normal"

    s = await create_local(api, "mine", tmp_path / "mine")
    assert s["state"] == "Normal" and s["credential"] is None and s["rootPath"] == "jcs"
    sid = s["userSpaceID"]
    assert await api.get("/v1/userSpace/get", userSpaceID=sid) == {"userSpace": s}
    listed = (await api.get("/v1/userSpace/list"))["userSpaces"]
    assert [x["name"] for x in listed] == ["local", "mine"] and listed[1] == s

    msg = await api.fail(
        "POST",
        "/v1/userSpace/create",
        "DataExists",
        409,
        json={"name": "mine", "storage": {"type": "Local", "path": str(tmp_path / "x")}},
    )
    assert "mine" in msg

    data = await api.post("/v1/userSpace/update", {"userSpaceID": sid, "name": "renamed"})
    assert set(data) == {"userSpace"}
    assert data["userSpace"]["name"] == "renamed"
    assert data["userSpace"]["userSpaceID"] == sid
    assert data["userSpace"]["createTime"] == s["createTime"]
    got = (await api.get("/v1/userSpace/get", userSpaceID=sid))["userSpace"]
    assert got["name"] == "renamed" and got["storage"] == s["storage"]
    await api.fail(
        "POST",
        "/v1/userSpace/update",
        "DataExists",
        409,
        json={"userSpaceID": sid, "name": "local"},
    )
    await api.fail(
        "POST",
        "/v1/userSpace/update",
        "DataNotFound",
        404,
        json={"userSpaceID": 987654, "name": "z"},
    )
    # A bad field of an update is named as the v1 API spells it.
    for bad, word in (
        ({"rootPath": "a/../b"}, "rootPath"),
        ({"rootPath": "a\\b"}, "rootPath"),
        ({"state": "Gone"}, "state"),
    ):
        body = {"userSpaceID": sid, **bad}
        msg = await api.fail("POST", "/v1/userSpace/update", "BadArgument", 400, json=body)
        assert msg.startswith(word), msg
    # While it is empty, an update may move it.
    moved = tmp_path / "moved"
    data = await api.post(
        "/v1/userSpace/update",
        {"userSpaceID": sid, "storage": {"type": "Local", "path": str(moved)}, "rootPath": "r/s"},
    )
    assert data["userSpace"]["storage"] == {"type": "Local", "path": str(moved)}
    assert data["userSpace"]["rootPath"] == "r/s"

    r = await api.client.post("/v1/userSpace/delete", json={"userSpaceID": sid})
    assert r.status_code == 200 and r.json() == {"code": "OK", "message": "", "data": None}
    await api.fail("GET", "/v1/userSpace/get", "DataNotFound", 404, params={"userSpaceID": sid})
    assert [x["name"] for x in (await api.get("/v1/userSpace/list"))["userSpaces"]] == ["local"]
    await api.fail("POST", "/v1/userSpace/delete", "DataNotFound", 404, json={"userSpaceID": sid})


async def test_root_path_places_blocks(api: Api, tmp_path: Path) -> None:
    s = await create_local(api, "rooted", tmp_path / "rooted", rootPath="deep/er")
    assert s["rootPath"] == "deep/er"
    pid = await api.package("p")
    o = await api.upload_one(pid, "f", b"rooted", affinity=s["userSpaceID"])
    files = [p for p in (tmp_path / "rooted" / "deep" / "er" / "blocks").rglob("*") if p.is_file()]
    assert len(files) == 1 and b"rooted" not in files[0].read_bytes()
    assert await api.download(o["objectID"]) == b"rooted"


async def test_test_endpoint(api: Api, tmp_path: Path) -> None:
    # An existing space.
    data = await api.post("/v1/userSpace/test", {"userSpaceID": 1})
    assert set(data) == {"ok", "latencyMs"} and data["ok"] is True
    assert isinstance(data["latencyMs"], (int, float)) and data["latencyMs"] >= 0
    # A configuration that is not saved: works, and creates nothing.
    body = {"storage": {"type": "Local", "path": str(tmp_path / "probe")}}
    data = await api.post("/v1/userSpace/test", body)
    assert data["ok"] is True and data["latencyMs"] >= 0
    assert [p for p in (tmp_path / "probe").rglob("*") if p.is_file()] == []
    assert len((await api.get("/v1/userSpace/list"))["userSpaces"]) == 1
    await api.fail("POST", "/v1/userSpace/test", "DataNotFound", 404, json={"userSpaceID": 987654})


async def test_test_endpoint_names_the_failing_step(api: Api, tmp_path: Path) -> None:
    blocker = tmp_path / "regular-file"
    blocker.write_bytes(b"not a directory")
    bad = {"type": "Local", "path": str(blocker / "sub")}
    r = await api.client.post("/v1/userSpace/test", json={"storage": bad})
    assert r.status_code in (500, 503), r.text
    body = r.json()
    assert body["code"] == "OperationFailed" and body["data"] is None
    assert any(f"'{step}'" in body["message"] for step in ("connect", "write")), body

    # Saved as a space, it is refused as well: creation makes a Local
    # space's directory (no later open makes it again), and it cannot.
    r = await api.client.post("/v1/userSpace/create", json={"name": "broken", "storage": bad})
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "OperationFailed"
    assert "step 'connect'" in body["message"] and "Not a directory" in body["message"], body
    listed = (await api.get("/v1/userSpace/list"))["userSpaces"]
    assert "broken" not in {s["name"] for s in listed}
    assert blocker.read_bytes() == b"not a directory"


async def test_credentials_are_masked_everywhere(api: Api) -> None:
    spaces = [
        (
            "s3",
            {"type": "S3", "endpoint": "http://127.0.0.1:9", "bucket": "b", "region": "us-east-1"},
            {"type": "AK", "accessKeyId": S3_KEY_ID, "secretAccessKey": S3_SECRET},
            S3_SECRET,
        ),
        (
            "azure",
            {"type": "AzureBlob", "accountName": "acct", "container": "c"},
            {"type": "AzureKey", "accountKey": AZURE_SECRET},
            AZURE_SECRET,
        ),
        (
            "gcs",
            {"type": "GCS", "bucket": "b"},
            {
                "type": "GCSServiceAccount",
                "json": json.dumps({"type": "service_account", "private_key": GCS_SECRET}),
            },
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        ),
    ]
    secrets = [s for *_, s in spaces]
    responses: list[str] = []
    ids = []
    for name, storage, cred, _ in spaces:
        r = await api.client.post(
            "/v1/userSpace/create", json={"name": name, "storage": storage, "credential": cred}
        )
        assert r.status_code == 200, r.text
        responses.append(r.text)
        s = r.json()["data"]["userSpace"]
        check_space(s, name, storage)
        assert s["credential"]["type"] == cred["type"]
        assert set(s["credential"]) == set(cred)
        ids.append(s["userSpaceID"])
    for sid in ids:
        r = await api.client.get("/v1/userSpace/get", params={"userSpaceID": sid})
        assert r.status_code == 200
        responses.append(r.text)
    r = await api.client.get("/v1/userSpace/list")
    responses.append(r.text)
    assert len(r.json()["data"]["userSpaces"]) == 4
    s3 = next(s for s in r.json()["data"]["userSpaces"] if s["name"] == "s3")
    assert s3["credential"]["secretAccessKey"] != S3_SECRET
    assert s3["credential"]["accessKeyId"] != S3_KEY_ID

    # Updating the credential answers masked too, and the new secret is not shown.
    new_secret = "AnotherSecretValue+0123456789abcdefABCDEF"
    r = await api.client.post(
        "/v1/userSpace/update",
        json={
            "userSpaceID": ids[0],
            "credential": {"type": "AK", "accessKeyId": S3_KEY_ID, "secretAccessKey": new_secret},
        },
    )
    assert r.status_code == 200, r.text
    responses.append(r.text)
    r = await api.client.post("/v1/userSpace/update", json={"userSpaceID": ids[1], "name": "az2"})
    assert r.status_code == 200, r.text
    responses.append(r.text)
    responses.append((await api.client.get("/v1/userSpace/list")).text)

    for text in responses:
        for secret in [*secrets, new_secret, S3_KEY_ID]:
            assert secret not in text, (secret, text)
            assert json.dumps(secret)[1:-1] not in text


async def test_delete_refused_while_holding_blocks(api: Api, tmp_path: Path) -> None:
    (sid,) = await api.add_spaces(1)
    pid = await api.package("p")
    o = await api.upload_one(pid, "f", b"held", affinity=sid)
    msg = await api.fail(
        "POST", "/v1/userSpace/delete", "OperationFailed", 409, json={"userSpaceID": sid}
    )
    assert "block" in msg
    # Nor may its storage move away from under the blocks; a rename is fine.
    msg = await api.fail(
        "POST",
        "/v1/userSpace/update",
        "OperationFailed",
        409,
        json={
            "userSpaceID": sid,
            "storage": {"type": "Local", "path": str(tmp_path / "elsewhere")},
        },
    )
    assert "block" in msg
    await api.post("/v1/userSpace/update", {"userSpaceID": sid, "name": "still-here"})
    assert await api.download(o["objectID"]) == b"held"
    got = (await api.get("/v1/userSpace/get", userSpaceID=sid))["userSpace"]
    assert got["storage"] == {"type": "Local", "path": str(api.spaces[sid])}

    # Once the object is gone and collected, the space can go.
    await api.post("/v1/object/delete", {"objectIDs": [o["objectID"]]})
    await api.gc()
    await api.post("/v1/userSpace/delete", {"userSpaceID": sid})
    await api.fail("GET", "/v1/userSpace/get", "DataNotFound", 404, params={"userSpaceID": sid})


async def test_create_validation(api: Api, tmp_path: Path) -> None:
    good = {"type": "Local", "path": str(tmp_path / "ok")}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"storage": good}, "name"),
        ({"name": "a"}, "storage"),
        ({"name": "a", "storage": "Local"}, "storage"),
        ({"name": "a", "storage": {"path": "/tmp/x"}}, "storage.type"),
        ({"name": "a", "storage": {"type": "Floppy", "path": "/x"}}, "storage.type"),
        ({"name": "a", "storage": {"type": "Local"}}, "storage.path"),
        ({"name": "a", "storage": {"type": "Local", "path": "relative/dir"}}, "storage.path"),
        ({"name": "a", "storage": {"type": "S3", "endpoint": "http://h"}}, "storage.bucket"),
        (
            {
                "name": "a",
                "storage": {"type": "S3", "endpoint": "http://h", "bucket": "b"},
                "credential": {"type": "AK", "accessKeyId": "k"},
            },
            "credential.secretAccessKey",
        ),
        (
            {
                "name": "a",
                "storage": {"type": "S3", "endpoint": "http://h", "bucket": "b"},
                "credential": {"type": "AzureKey", "accountKey": "k"},
            },
            "credential.type",
        ),
        ({"name": "a", "storage": good, "rootPath": "x/../y"}, "rootPath"),
        # Found by review: recorded, and then refused at every open.
        ({"name": "a", "storage": good, "rootPath": "x\\..\\y"}, "rootPath"),
        ({"name": "a/b", "storage": good}, "name"),
        ({"name": "", "storage": good}, "name"),
    ]
    for body, word in cases:
        msg = await api.fail("POST", "/v1/userSpace/create", "BadArgument", 400, json=body)
        assert word in msg, (body, msg)
        if "storage" in body and word != "name":  # a test of the same config is refused alike
            msg = await api.fail("POST", "/v1/userSpace/test", "BadArgument", 400, json=body)
            assert word in msg, (body, msg)
    assert len((await api.get("/v1/userSpace/list"))["userSpaces"]) == 1
    assert not (tmp_path / "ok").exists()


async def test_concurrent_creates_of_overlapping_directories_record_one(
    api: Api, bob: Other
) -> None:
    """Two users create Local spaces on a directory and its child at the
    same moment. Each create passed the overlap check before the other was
    recorded, so both were (left open by an earlier review); now the check
    is made again in the recording transaction, under a lock every such
    transaction takes, and exactly one of them is recorded."""
    for n in range(4):
        outer = api.tmp_path / f"race{n}"
        answers = await asyncio.gather(
            api.request(
                "POST",
                "/v1/userSpace/create",
                json={"name": f"outer{n}", "storage": {"type": "Local", "path": str(outer)}},
            ),
            bob.api.request(
                "POST",
                "/v1/userSpace/create",
                json={"name": f"inner{n}", "storage": {"type": "Local", "path": f"{outer}/in"}},
            ),
        )
        assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]
        [refused] = [r for r in answers if r.status_code == 400]
        assert "spaces never share directories" in expect_error(refused, "BadArgument", 400)
    mine = {s["name"] for s in (await api.get("/v1/userSpace/list"))["userSpaces"]}
    bobs = {s["name"] for s in (await bob.api.get("/v1/userSpace/list"))["userSpaces"]}
    for n in range(4):
        assert (f"outer{n}" in mine) != (f"inner{n}" in bobs)
