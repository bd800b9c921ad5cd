"""Keys, grants and S3 credentials from the command line against a real
``jcs serve``: a second user made with ``jcs admin user add`` sees nothing of
the first; a project key restricted offline is refused by the server naming
the caveat, and revoking it leaves its parent working; a grant names its
satellite; ``jcs s3 credentials`` registers credentials the auth service
knows.

The module runs its own server with an operator token (``JCS_AUTH_TOKEN``)
so that ``GET /v1/access/{id}`` can be asked. Independent CLI runs go in
parallel: each ``jcs`` start costs more than half a second.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from e2e_support import JCS, JcsServer, clean_env, make_package

AUTH_TOKEN = "e2e-operator-token-0123456789"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JcsServer]:
    base = tmp_path_factory.mktemp("jcs-keys")
    srv = JcsServer(data_dir=base / "data", log_dir=base, env={"JCS_AUTH_TOKEN": AUTH_TOKEN})
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api(server: JcsServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.endpoint, headers={"Authorization": f"Bearer {server.key}"}, timeout=60
    ) as client:
        yield client


def jcs(
    server: JcsServer, *args: str, key: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``jcs ARGS`` against ``server`` with ``key`` (default: the root key)."""
    env = clean_env()
    env.update({"JCS_ENDPOINT": server.endpoint, "JCS_API_KEY": key or server.key})
    return subprocess.run(
        [str(JCS), *args],
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def failed(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, f"{r.args} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr


def run_all(
    server: JcsServer, *calls: tuple[tuple[str, ...], str | None]
) -> list[subprocess.CompletedProcess[str]]:
    """Independent ``jcs`` calls at once, each ``((args...), key)``."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(jcs, server, *args, key=key) for args, key in calls]
        return [f.result() for f in futures]


def upload(api: httpx.Client, package_id: int, path: str, content: bytes) -> None:
    r = api.post(
        "/v1/object/upload",
        files={"info": (None, f'{{"packageID": {package_id}}}'), "files": (path, content)},
    )
    assert r.status_code == 200, r.text


def bucket_id(api: httpx.Client, name: str) -> int:
    r = api.get("/v1/bucket/getByName", params={"name": name})
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["bucket"]["bucketID"])


def test_second_user_sees_nothing_of_the_first(server: JcsServer, api: httpx.Client) -> None:
    pkg = make_package(api, "alice-private", "docs")
    upload(api, pkg, "secret.txt", b"alice only")
    alice_bucket = bucket_id(api, "alice-private")
    made = api.post("/v1/apiKey/create", json={"bucketID": alice_bucket, "name": "alice-key"})
    assert made.status_code == 200, made.text
    alice_project_key = made.json()["data"]["apiKey"]["key"]

    add = subprocess.run(
        [str(JCS), "admin", "user", "add", "bob", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert add.returncode == 0, add.stderr
    bob = add.stdout.strip()
    assert bob.startswith("jcs_") and "shown once" in add.stderr

    # over HTTP: nothing of alice's exists for bob
    with httpx.Client(
        base_url=server.endpoint, headers={"Authorization": f"Bearer {bob}"}, timeout=30
    ) as h:
        assert h.get("/v1/bucket/listAll").json()["data"]["buckets"] == []
        probes: list[tuple[str, dict[str, str | int]]] = [
            ("/v1/bucket/getByName", {"name": "alice-private"}),
            ("/v1/bucket/get", {"bucketID": alice_bucket}),
            ("/v1/package/listBucketPackages", {"bucketID": alice_bucket}),
            ("/v1/apiKey/list", {"bucketID": alice_bucket}),
            ("/v1/project/info", {"bucketID": alice_bucket}),
            ("/v1/object/listByPath", {"packageID": pkg, "path": "", "isPrefix": "true"}),
            ("/v1/object/downloadByPath", {"packageID": pkg, "path": "secret.txt"}),
        ]
        for path, params in probes:
            r = h.get(path, params=params)
            assert r.status_code in (403, 404), (path, r.status_code, r.text)
            assert b"alice only" not in r.content
        r = h.post("/v1/apiKey/create", json={"bucketID": alice_bucket, "name": "steal"})
        assert r.status_code in (403, 404), r.text
        r = h.post("/v1/apiKey/revoke", json={"key": alice_project_key})
        assert r.status_code in (401, 403, 404), r.text
        names = {s["name"] for s in h.get("/v1/userSpace/list").json()["data"]["userSpaces"]}
        assert names == {"local"}  # bob's own space, not alice's

    # and through the CLI
    buckets, listing, keys, user_keys = run_all(
        server,
        (("bucket", "ls"), bob),
        (("ls", "alice-private/docs"), bob),
        (("key", "ls", "alice-private"), bob),
        (("userkey", "ls"), bob),
    )
    assert "alice-private" not in ok(buckets)
    assert "DataNotFound" in failed(listing)
    assert "DataNotFound" in failed(keys)
    rows = ok(user_keys)
    assert "first key" in rows and bob[:8] in rows and server.key[:8] not in rows
    # alice's project key still works (bob's revoke attempt changed nothing)
    r = httpx.get(
        server.endpoint + "/v1/project/info",
        headers={"Authorization": f"Bearer {alice_project_key}"},
    )
    assert r.status_code == 200 and r.json()["data"]["name"] == "alice-private"


def test_restricted_key_is_refused_naming_the_caveat_and_revocable(
    server: JcsServer, api: httpx.Client, tmp_path: Path
) -> None:
    pkg = make_package(api, "keyed", "open")
    make_package(api, "keyed", "closed")
    upload(api, pkg, "photos/a.txt", b"a")

    parent = ok(jcs(server, "key", "create", "keyed", "--name", "parent")).strip()
    restricted = ok(
        jcs(
            server,
            "key",
            "restrict",
            parent,
            "--packages",
            "open",
            "--prefix",
            "photos/",
            "--allow",
            "read,list",
            "--not-after",
            "+1h",
        )
    ).strip()
    assert restricted != parent

    local = tmp_path / "f.txt"
    local.write_text("x")
    inspect, listed, put, other = run_all(
        server,
        (("key", "inspect", restricted), None),
        (("ls", "keyed/open/photos/"), restricted),
        (("put", str(local), "keyed/open/photos/f.txt"), restricted),
        (("ls", "keyed/closed"), restricted),
    )
    words = ok(inspect)
    assert "API key" in words
    assert "allow read, list; only open/photos/; not after" in words
    assert re.search(r"expires:\s+\d{4}-\d\d-\d\dT", words)
    assert parent not in words and restricted not in words
    assert "a.txt" in ok(listed)
    refusal = failed(put)
    assert "Forbidden" in refusal and "caveat" in refusal and "write" in refusal
    refusal = failed(other)
    assert "caveat" in refusal and "'closed'" in refusal

    revoked = ok(jcs(server, "key", "revoke", restricted))
    assert "keeps working" in revoked and "parent" in revoked
    after, parent_still = run_all(
        server,
        (("ls", "keyed/open/photos/"), restricted),
        (("ls", "keyed/open/photos/"), parent),
    )
    assert "revoked" in failed(after)
    assert "a.txt" in ok(parent_still)


def test_grant_names_its_satellite(server: JcsServer, api: httpx.Client) -> None:
    make_package(api, "granted", "p")
    made = api.post("/v1/apiKey/create", json={"bucketID": bucket_id(api, "granted"), "name": "g"})
    key = made.json()["data"]["apiKey"]["key"]
    r = jcs(server, "grant", "create", "--key", key, "--passphrase-stdin", stdin=PASSPHRASE)
    grant = ok(r).strip()
    assert PASSPHRASE not in r.stdout + r.stderr

    inspect, narrowed = run_all(
        server,
        (("key", "inspect", grant), None),
        (("key", "restrict", grant, "--allow", "read"), None),
    )
    words = ok(inspect)
    assert "access grant" in words
    assert re.search(rf"satellite:\s+{re.escape(server.endpoint)}\n", words)
    assert "root key:    yes" in words and "expires:     never" in words

    words = ok(jcs(server, "key", "inspect", ok(narrowed).strip()))
    assert "access grant" in words and "allow read" in words and server.endpoint in words


def test_s3_credentials_are_known_to_the_auth_service(server: JcsServer, api: httpx.Client) -> None:
    make_package(api, "s3creds", "media")
    r = jcs(
        server,
        "s3",
        "credentials",
        "s3creds",
        "--packages",
        "media",
        "--allow",
        "read,list",
        "--not-after",
        "+1d",
        "--passphrase-stdin",
        stdin=PASSPHRASE + "\n",
    )
    text = ok(r)
    access_key_id = re.search(r"^access key id:\s+(\S+)$", text, re.MULTILINE)
    secret = re.search(r"^secret key:\s+(\S+)$", text, re.MULTILINE)
    endpoint = re.search(r"^endpoint:\s+(\S+)$", text, re.MULTILINE)
    assert access_key_id and secret and endpoint, text
    assert len(access_key_id.group(1)) == 28 and len(secret.group(1)) == 53
    assert endpoint.group(1) == f"http://127.0.0.1:{server.s3_port}"  # its S3 listener
    assert f"aws configure set aws_access_key_id {access_key_id.group(1)}" in text
    assert f"endpoint_url {endpoint.group(1)}" in text
    assert (
        "[jcs]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {access_key_id.group(1)}\n"
        f"secret_access_key = {secret.group(1)}\n"
        f"endpoint = {endpoint.group(1)}"
    ) in text
    assert PASSPHRASE not in text + r.stderr

    found = httpx.get(
        f"{server.endpoint}/v1/access/{access_key_id.group(1)}",
        headers={"Authorization": f"Bearer {AUTH_TOKEN}"},
    )
    assert found.status_code == 200, found.text
    assert found.json()["secret_key"] == secret.group(1)
    assert found.json()["public"] is False
    unauthorised = httpx.get(f"{server.endpoint}/v1/access/{access_key_id.group(1)}")
    assert unauthorised.status_code == 401

    # the credentials hang on a project key of their own, named in the output
    keys = api.get("/v1/apiKey/list", params={"bucketID": bucket_id(api, "s3creds")})
    assert [k["name"].startswith("s3 credentials ") for k in keys.json()["data"]["apiKeys"]] == [
        True
    ]

    # another passphrase for the same project is refused, and leaves no key behind
    wrong = jcs(server, "s3", "credentials", "s3creds", "--passphrase-stdin", stdin="other\n")
    assert "wrong passphrase for project s3creds" in failed(wrong)
    keys = api.get("/v1/apiKey/list", params={"bucketID": bucket_id(api, "s3creds")})
    assert len(keys.json()["data"]["apiKeys"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("key", "restrict", "not-a-key"), "neither an API key nor an access grant"),
        (("key", "inspect", "jcs_abc"), "that is an account key"),
        (("key", "restrict", "{key}", "--prefix", "a/"), "--prefix needs --packages"),
        (("key", "restrict", "{key}", "--allow", "read,fly"), "unknown permission 'fly'"),
        (("key", "restrict", "{key}", "--allow", ","), "empty permission set"),
        (("key", "restrict", "{key}", "--not-after", "soon"), "--not-after 'soon' is not a time"),
        (
            ("key", "restrict", "{key}", "--not-before", "+2h", "--not-after", "+1h"),
            "--not-after is before --not-before",
        ),
        (("grant", "create", "--key", "{key}"), "pass --passphrase-stdin"),
        (("s3", "credentials", "nowhere"), "a passphrase is required"),
    ],
)
def test_bad_input_is_named_before_any_request(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by the command line itself (in process: nothing reaches a
    server, and a ``jcs`` start costs more than half a second)."""
    from jointcloud.cli.main import app
    from jointcloud.keys.caveats import new_api_key, new_secret

    key = new_api_key(new_secret()).serialize()  # any well-formed key
    with pytest.raises(SystemExit) as exited:
        app([a.replace("{key}", key) for a in args], prog_name="jcs")
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: BadArgument: ") and message in stderr, stderr


def test_times_are_iso_8601_or_from_now(capsys: pytest.CaptureFixture[str]) -> None:
    """``--not-before``/``--not-after``: ISO 8601 with a zone, or from now;
    ``inspect`` shows them as the caveat carries them (in process: offline)."""
    from jointcloud.cli.main import app
    from jointcloud.keys.caveats import new_api_key, new_secret

    key = new_api_key(new_secret()).serialize()
    args = ["key", "restrict", key, "--not-before", "2030-01-01T00:00:00Z"]
    with pytest.raises(SystemExit) as exited:
        app([*args, "--not-after", "2030-01-01T08:00:00+08:00"], prog_name="jcs")
    assert exited.value.code == 0
    with pytest.raises(SystemExit):
        app(["key", "inspect", capsys.readouterr().out.strip()], prog_name="jcs")
    words = capsys.readouterr().out
    assert "not before 2030-01-01T00:00:00+00:00; not after 2030-01-01T00:00:00+00:00" in words
    assert re.search(r"valid from:\s+2030-01-01T00:00:00\+00:00", words)

    with pytest.raises(SystemExit):
        app(["key", "restrict", key, "--not-after", "+7d"], prog_name="jcs")
    with pytest.raises(SystemExit):
        app(["key", "inspect", capsys.readouterr().out.strip()], prog_name="jcs")
    expires = re.search(r"expires:\s+(\S+)", capsys.readouterr().out)
    assert expires is not None
    left = datetime.fromisoformat(expires.group(1)) - datetime.now(UTC)
    assert timedelta(days=6, hours=23) < left <= timedelta(days=7)


def test_the_owner_sets_the_passphrase_a_restricted_key_fixed_first(
    server: JcsServer, api: httpx.Client
) -> None:
    make_package(api, "squatted", "p")
    made = api.post("/v1/apiKey/create", json={"bucketID": bucket_id(api, "squatted"), "name": "o"})
    key = made.json()["data"]["apiKey"]["key"]
    narrow = ok(jcs(server, "key", "restrict", key, "--allow", "read,write")).strip()
    # the holder of the restricted key makes the project's first grant
    squat = ok(
        jcs(server, "grant", "create", "--key", narrow, "--passphrase-stdin", stdin="mine\n")
    )
    assert httpx.post(
        f"{server.endpoint}/v1/access", json={"access_grant": squat.strip()}
    ).is_success
    owners = ok(
        jcs(server, "grant", "create", "--key", key, "--passphrase-stdin", stdin=PASSPHRASE)
    )
    refused = httpx.post(f"{server.endpoint}/v1/access", json={"access_grant": owners.strip()})
    assert refused.status_code == 403 and "wrong passphrase" in refused.text

    denied = jcs(server, "grant", "passphrase", "--key", narrow, "--passphrase-stdin", stdin="x\n")
    assert "only an unrestricted key of the project may set its passphrase" in failed(denied)
    r = jcs(server, "grant", "passphrase", "--key", key, "--passphrase-stdin", stdin=PASSPHRASE)
    assert ok(r).strip() == "the passphrase of project squatted is set"
    assert PASSPHRASE not in r.stdout + r.stderr
    taken = httpx.post(f"{server.endpoint}/v1/access", json={"access_grant": owners.strip()})
    assert taken.status_code == 200, taken.text
