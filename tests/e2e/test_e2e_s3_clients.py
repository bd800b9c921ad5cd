"""The S3 endpoint of a real ``jcs serve`` driven by the real clients people
use: the AWS CLI (``aws s3`` and ``aws s3api``, presigned URLs), rclone
(copy, sync, check, lsf, server-side copy), s3cmd (SigV4 and SigV2),
restic (backup, check, restore, prune), the AWS SDK for JavaScript v3 and
the AWS SDK for C++ (pyarrow's S3FileSystem),
with credentials made by ``jcs s3 credentials``. An S3 bucket is a package
of the credentials' project (DESIGN §2): what one API writes the other
reads. A restricted grant is refused outside its caveats."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_support import JcsServer, api_client
from s3_clients import (
    TIMEOUT,
    Aws,
    Rclone,
    Restic,
    S3cmd,
    S3Creds,
    boto3_client,
    client_env,
    make_credentials,
    requests_between,
    s3_requests,
    tool,
)

PROJECT = "s3clients"
PASSPHRASE = "s3 clients e2e passphrase"
JS_SDK = Path(__file__).with_name("js") / "s3_sdk.mjs"
MiB = 1 << 20


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("s3-clients")


@pytest.fixture(scope="module")
def s3_server(work: Path) -> Iterator[JcsServer]:
    """A server of this module's own: the request counters of its S3
    listener count only what these tests sent."""
    server = JcsServer(
        data_dir=work / "data",
        log_dir=work,
        env={"JCS_AUTH_TOKEN": "s3-clients-operator-token-0123456789"},
    )
    try:
        server.start()
        with api_client(server) as api:
            r = api.post("/v1/bucket/create", json={"name": PROJECT})
            assert r.status_code == 200, r.text
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def creds(s3_server: JcsServer, work: Path) -> S3Creds:
    made = make_credentials(s3_server, PROJECT, PASSPHRASE, cwd=work)
    # the endpoint printed is the S3 listener of this server
    assert made.endpoint == f"http://127.0.0.1:{s3_server.s3_port}"
    return made


@pytest.fixture(scope="module")
def aws(creds: S3Creds, work: Path) -> Aws:
    return Aws(work / "home-aws", creds)


def package_id(server: JcsServer, package: str) -> int:
    with api_client(server) as api:
        r = api.get(
            "/v1/package/getByFullName", params={"bucketName": PROJECT, "packageName": package}
        )
        assert r.status_code == 200, r.text
        return int(r.json()["data"]["package"]["packageID"])


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_aws_s3_commands(aws: Aws, work: Path) -> None:
    local = work / "aws-s3"
    big = os.urandom(9 * MiB)  # over the CLI's 8 MiB threshold: a multipart upload
    src = tree(local / "src", {"a.txt": b"alpha\n", "d/b.txt": b"bravo\n", "big.bin": big})

    assert "make_bucket: awsb" in aws.ok("s3", "mb", "s3://awsb")
    aws.ok("s3", "cp", str(src / "big.bin"), "s3://awsb/one/big.bin")
    aws.ok("s3", "sync", str(src), "s3://awsb/synced")

    listing = aws.ok("s3", "ls", "--recursive", "s3://awsb")
    keys = [line.split()[-1] for line in listing.splitlines()]
    assert keys == ["one/big.bin", "synced/a.txt", "synced/big.bin", "synced/d/b.txt"]
    assert re.search(rf"\s{len(big)} one/big.bin$", listing, re.MULTILINE)
    top = aws.ok("s3", "ls", "s3://awsb/")
    assert "PRE one/" in top and "PRE synced/" in top

    # a second sync sends nothing: sizes and times match
    assert aws.ok("s3", "sync", str(src), "s3://awsb/synced").strip() == ""

    down = local / "down"
    aws.ok("s3", "cp", "s3://awsb/one/big.bin", str(down / "big.bin"))
    assert (down / "big.bin").read_bytes() == big
    aws.ok("s3", "sync", "s3://awsb/synced", str(down / "synced"))
    assert (down / "synced" / "d" / "b.txt").read_bytes() == b"bravo\n"
    assert (down / "synced" / "big.bin").read_bytes() == big

    # rb refuses a bucket with objects in it, rm empties it, then rb works
    assert "BucketNotEmpty" in aws.fails("s3", "rb", "s3://awsb")
    assert "delete: s3://awsb/one/big.bin" in aws.ok("s3", "rm", "s3://awsb/one/big.bin")
    assert aws.ok("s3", "rm", "--recursive", "s3://awsb").count("delete: ") == 3
    assert "remove_bucket: awsb" in aws.ok("s3", "rb", "s3://awsb")
    assert "NoSuchBucket" in aws.fails("s3", "ls", "s3://awsb")


def test_aws_s3api_objects_multipart_and_presign(aws: Aws, work: Path) -> None:
    local = work / "aws-s3api"
    local.mkdir()
    aws.ok("s3api", "create-bucket", "--bucket", "apib")
    body = local / "body.txt"
    hello = b"hello s3api\n"
    body.write_bytes(hello)
    put = json.loads(
        aws.ok(
            "s3api",
            "put-object",
            "--bucket",
            "apib",
            "--key",
            "hello.txt",
            "--body",
            str(body),
            "--content-type",
            "text/plain",
            "--metadata",
            "colour=blue,Owner=Ann",
        )
    )
    assert put["ETag"] == f'"{md5(hello)}"'

    head = json.loads(aws.ok("s3api", "head-object", "--bucket", "apib", "--key", "hello.txt"))
    assert head["ContentLength"] == 12 and head["ContentType"] == "text/plain"
    assert head["ETag"] == put["ETag"]
    assert head["Metadata"] == {"colour": "blue", "owner": "Ann"}

    out = local / "got.bin"
    got = json.loads(
        aws.ok(
            "s3api",
            "get-object",
            "--bucket",
            "apib",
            "--key",
            "hello.txt",
            "--range",
            "bytes=6-",
            str(out),
        )
    )
    assert out.read_bytes() == b"s3api\n"
    assert got["ContentRange"] == "bytes 6-11/12" and got["ContentLength"] == 6

    # multipart: two parts (the first of the 5 MiB minimum), then complete
    parts = [os.urandom(5 * MiB), os.urandom(MiB + 17)]
    created = json.loads(
        aws.ok("s3api", "create-multipart-upload", "--bucket", "apib", "--key", "mp/big.bin")
    )
    upload_id = created["UploadId"]
    assert created["Key"] == "mp/big.bin" and created["Bucket"] == "apib"
    etags = []
    for n, data in enumerate(parts, start=1):
        f = local / f"part{n}"
        f.write_bytes(data)
        made = json.loads(
            aws.ok(
                "s3api",
                "upload-part",
                "--bucket",
                "apib",
                "--key",
                "mp/big.bin",
                "--upload-id",
                upload_id,
                "--part-number",
                str(n),
                "--body",
                str(f),
            )
        )
        assert made["ETag"] == f'"{md5(data)}"'
        etags.append(made["ETag"])
    # not visible before it is complete
    missing = aws.fails("s3api", "head-object", "--bucket", "apib", "--key", "mp/big.bin")
    assert "(404)" in missing and "Not Found" in missing, missing
    layout = {"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, start=1)]}
    done = json.loads(
        aws.ok(
            "s3api",
            "complete-multipart-upload",
            "--bucket",
            "apib",
            "--key",
            "mp/big.bin",
            "--upload-id",
            upload_id,
            "--multipart-upload",
            json.dumps(layout),
        )
    )
    composite = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)).hexdigest()
    assert done["ETag"] == f'"{composite}-2"' and done["Key"] == "mp/big.bin"
    got = json.loads(
        aws.ok("s3api", "get-object", "--bucket", "apib", "--key", "mp/big.bin", str(out))
    )
    assert out.read_bytes() == b"".join(parts)
    assert got["ContentLength"] == sum(map(len, parts)) and got["ETag"] == done["ETag"]

    listed = json.loads(
        aws.ok("s3api", "list-objects-v2", "--bucket", "apib", "--delimiter", "/", "--no-paginate")
    )
    assert [(o["Key"], o["Size"]) for o in listed["Contents"]] == [("hello.txt", 12)]
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["mp/"]
    assert listed["KeyCount"] == 2 and listed["IsTruncated"] is False

    # a presigned URL works without any credential, and only as signed
    url = aws.ok("s3", "presign", "s3://apib/hello.txt", "--expires-in", "300").strip()
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, r.text
    assert r.content == hello
    r = httpx.get(url.replace("hello.txt", "other.txt"), timeout=30)
    assert r.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in r.text, r.text


def test_rclone_copy_sync_check_lsf_and_server_side_copy(
    s3_server: JcsServer, creds: S3Creds, work: Path
) -> None:
    rclone = Rclone(work / "home-rclone", creds)
    local = work / "rclone"
    src = tree(
        local / "src",
        {"a.txt": b"alpha\n", "d/b.txt": b"bravo\n", "d/e/c.bin": os.urandom(300_000)},
    )
    rclone.ok("mkdir", "jcs:rcl")
    rclone.ok("copy", str(src), "jcs:rcl/copied")
    assert sorted(rclone.ok("lsf", "-R", "--files-only", "jcs:rcl").split()) == [
        "copied/a.txt",
        "copied/d/b.txt",
        "copied/d/e/c.bin",
    ]
    assert rclone.ok("lsf", "jcs:rcl/copied").split() == ["a.txt", "d/"]
    check = rclone.run("check", str(src), "jcs:rcl/copied")
    assert check.returncode == 0, check.stderr
    assert "0 differences found" in check.stderr

    # sync makes the remote equal to the source: a new file up, a gone one deleted
    (src / "a.txt").unlink()
    (src / "new.txt").write_bytes(b"new\n")
    rclone.ok("sync", str(src), "jcs:rcl/copied")
    assert sorted(rclone.ok("lsf", "-R", "--files-only", "jcs:rcl/copied").split()) == [
        "d/b.txt",
        "d/e/c.bin",
        "new.txt",
    ]
    assert rclone.run("check", str(src), "jcs:rcl/copied").returncode == 0
    # a changed remote object is a difference
    rclone.ok("copyto", str(src / "d" / "b.txt"), "jcs:rcl/copied/new.txt")
    changed = rclone.run("check", str(src), "jcs:rcl/copied")
    assert changed.returncode != 0 and "1 differences found" in changed.stderr

    # server-side copy: one CopyObject, the bytes never come down to rclone
    before = s3_requests(s3_server)
    out = rclone.ok("copyto", "-v", "jcs:rcl/copied/d/e/c.bin", "jcs:rcl/copy/c.bin")
    counted = requests_between(before, s3_requests(s3_server))
    assert counted.get(("CopyObject", 200)) == 1, (counted, out)
    assert not any(op == "GetObject" for op, _ in counted), counted
    check = rclone.run("check", str(src / "d" / "e"), "jcs:rcl/copy")
    assert check.returncode == 0 and "1 matching files" in check.stderr, check.stderr
    assert "rcl/" in rclone.ok("lsf", "jcs:").split()

    rclone.ok("purge", "jcs:rcl")
    assert "rcl/" not in rclone.ok("lsf", "jcs:").split()


def test_rclone_uploads_as_presigned_requests(creds: S3Creds, work: Path) -> None:
    """rclone before 1.59 (Ubuntu 22.04 and Debian 11 ship 1.53) uploads
    every file under its cutoff as a presigned PUT, sending Content-Length
    twice; ``--s3-use-presigned-request`` does the same today. The listener
    refused each with 400 BadRequest."""
    rclone = Rclone(work / "home-rclone-presigned", creds)
    src = tree(work / "rclone-presigned", {"a.txt": b"alpha\n", "d/b.bin": os.urandom(70_000)})
    rclone.ok("mkdir", "jcs:rclpre")
    rclone.ok("copy", "--s3-use-presigned-request", str(src), "jcs:rclpre")
    check = rclone.run("check", "--download", str(src), "jcs:rclpre")
    assert check.returncode == 0 and "2 matching files" in check.stderr, check.stderr
    rclone.ok("purge", "jcs:rclpre")


@pytest.mark.parametrize("signature_v2", [False, True], ids=["sigv4", "sigv2"])
def test_s3cmd(s3_server: JcsServer, creds: S3Creds, work: Path, signature_v2: bool) -> None:
    name = "v2" if signature_v2 else "v4"
    s3cmd = S3cmd(work / f"home-s3cmd-{name}", creds, signature_v2=signature_v2)
    bucket = f"s3cmd-{name}"
    local = work / f"s3cmd-{name}"
    src = tree(local / "src", {"a.txt": b"alpha\n", "d/b.txt": b"bravo\n"})
    payload = os.urandom(11 * MiB)  # three parts of a multipart upload (5 MiB chunks)
    (local / "blob.bin").write_bytes(payload)

    assert f"Bucket 's3://{bucket}/' created" in s3cmd.ok("mb", f"s3://{bucket}")
    assert f"s3://{bucket}" in s3cmd.ok("ls")
    before = s3_requests(s3_server)
    s3cmd.ok(
        "put",
        "--multipart-chunk-size-mb=5",
        str(local / "blob.bin"),
        f"s3://{bucket}/blobs/blob.bin",
    )
    counted = requests_between(before, s3_requests(s3_server))
    assert counted.get(("UploadPart", 200)) == 3, counted
    assert counted.get(("CompleteMultipartUpload", 200)) == 1, counted
    s3cmd.ok("get", f"s3://{bucket}/blobs/blob.bin", str(local / "back.bin"))
    assert (local / "back.bin").read_bytes() == payload
    s3cmd.ok("sync", f"{src}/", f"s3://{bucket}/tree/")
    listing = s3cmd.ok("ls", "-r", f"s3://{bucket}")
    assert [line.split()[-1] for line in listing.splitlines()] == [
        f"s3://{bucket}/blobs/blob.bin",
        f"s3://{bucket}/tree/a.txt",
        f"s3://{bucket}/tree/d/b.txt",
    ]
    assert re.search(rf"\s{len(payload)}\s+s3://{bucket}/blobs/blob.bin", listing)
    top = s3cmd.ok("ls", f"s3://{bucket}")
    assert "DIR" in top and f"s3://{bucket}/tree/" in top
    # nothing changed: sync uploads nothing
    assert "upload:" not in s3cmd.ok("sync", f"{src}/", f"s3://{bucket}/tree/")
    s3cmd.ok("sync", f"s3://{bucket}/tree/", f"{local / 'down'}/")
    assert (local / "down" / "d" / "b.txt").read_bytes() == b"bravo\n"
    s3cmd.ok("del", f"s3://{bucket}/blobs/blob.bin")
    assert "blob.bin" not in s3cmd.ok("ls", "-r", f"s3://{bucket}")
    s3cmd.ok("del", "--recursive", "--force", f"s3://{bucket}/tree/")
    s3cmd.ok("rb", f"s3://{bucket}")
    assert f"s3://{bucket}" not in s3cmd.ok("ls")


def test_s3_and_v1_api_see_the_same_objects(
    s3_server: JcsServer, creds: S3Creds, aws: Aws, work: Path
) -> None:
    local = work / "interop"
    local.mkdir()
    data = os.urandom(123_457)
    (local / "up.bin").write_bytes(data)
    boto3_client(creds).create_bucket(Bucket="both")
    aws.ok("s3", "cp", str(local / "up.bin"), "s3://both/from-s3/up.bin")

    pkg = package_id(s3_server, "both")  # the S3 bucket is a package of the project
    with api_client(s3_server) as api:
        r = api.get("/v1/object/listByPath", params={"packageID": pkg, "path": "from-s3/up.bin"})
        assert r.status_code == 200, r.text
        [obj] = r.json()["data"]["objects"]
        assert int(obj["size"]) == len(data)
        r = api.get("/v1/object/download", params={"objectID": obj["objectID"]})
        assert r.status_code == 200 and r.content == data

        v1_data = os.urandom(70_001)
        r = api.post(
            "/v1/object/upload",
            files={
                "info": (None, json.dumps({"packageID": pkg})),
                "files": ("from-v1/x.bin", v1_data, "application/octet-stream"),
            },
        )
        assert r.status_code == 200, r.text

    aws.ok("s3", "cp", "s3://both/from-v1/x.bin", str(local / "x.bin"))
    assert (local / "x.bin").read_bytes() == v1_data


def test_restricted_grant_is_refused_outside_its_caveats(
    s3_server: JcsServer, creds: S3Creds, work: Path
) -> None:
    full = boto3_client(creds)
    for bucket in ("photos", "private"):
        full.create_bucket(Bucket=bucket)
    full.put_object(Bucket="photos", Key="2024/pic.jpg", Body=b"a picture")
    full.put_object(Bucket="private", Key="secret.jpg", Body=b"a secret")
    (work / "pic.jpg").write_bytes(b"another picture")

    narrow = make_credentials(
        s3_server,
        PROJECT,
        PASSPHRASE,
        "--packages",
        "photos",
        "--allow",
        "read,list",
        cwd=work,
    )
    ro = Aws(work / "home-aws-readonly", narrow)
    # inside the caveats: list and read photos
    assert "2024/pic.jpg" in ro.ok("s3", "ls", "--recursive", "s3://photos")
    assert ro.ok("s3", "cp", "s3://photos/2024/pic.jpg", "-") == "a picture"
    # outside: write, delete, another bucket, a new bucket
    for args in (
        ("s3", "cp", str(work / "pic.jpg"), "s3://photos/new.jpg"),
        ("s3api", "delete-object", "--bucket", "photos", "--key", "2024/pic.jpg"),
        ("s3api", "get-object", "--bucket", "private", "--key", "secret.jpg", str(work / "x")),
        ("s3", "mb", "s3://other"),
    ):
        message = ro.fails(*args)
        assert "AccessDenied" in message, (args, message)
    # nothing changed
    keys = [o["Key"] for o in full.list_objects_v2(Bucket="photos")["Contents"]]
    assert keys == ["2024/pic.jpg"]
    assert "other" not in [b["Name"] for b in full.list_buckets()["Buckets"]]

    # A key that writes a prefix only: rclone sends CreateBucket before it
    # uploads, which that key may not do for a new bucket; the bucket that
    # exists answers as made (found by review: rclone failed there).
    inbox = make_credentials(
        s3_server, PROJECT, PASSPHRASE, "--packages", "photos", "--prefix", "inbox/", cwd=work
    )
    rclone = Rclone(work / "home-rclone-inbox", inbox)
    rclone.ok("copy", str(work / "pic.jpg"), "jcs:photos/inbox/")
    assert full.get_object(Bucket="photos", Key="inbox/pic.jpg")["Body"].read() == (
        b"another picture"
    )
    for outside in ("jcs:photos/elsewhere/", "jcs:newbucket/inbox/"):
        refused = rclone.run("copy", str(work / "pic.jpg"), outside)
        assert refused.returncode != 0 and "status code: 403" in refused.stderr, refused.stderr
    assert [o["Key"] for o in full.list_objects_v2(Bucket="photos")["Contents"]] == [
        "2024/pic.jpg",
        "inbox/pic.jpg",
    ]
    assert "newbucket" not in [b["Name"] for b in full.list_buckets()["Buckets"]]


def test_aws_copy_tagging_cors_and_batch_delete(s3_server: JcsServer, aws: Aws, work: Path) -> None:
    local = work / "aws-more"
    local.mkdir()
    (local / "src.txt").write_bytes(b"copy me\n")
    aws.ok("s3", "mb", "s3://more")
    aws.ok("s3", "cp", str(local / "src.txt"), "s3://more/src.txt", "--metadata", "k=v")

    # aws s3 cp bucket to bucket: a server-side CopyObject keeping the metadata
    before = s3_requests(s3_server)
    aws.ok("s3", "cp", "s3://more/src.txt", "s3://more/copies/dst.txt")
    counted = requests_between(before, s3_requests(s3_server))
    assert counted.get(("CopyObject", 200)) == 1 and ("GetObject", 200) not in counted, counted
    head = json.loads(aws.ok("s3api", "head-object", "--bucket", "more", "--key", "copies/dst.txt"))
    assert head["ContentLength"] == 8 and head["Metadata"] == {"k": "v"}

    # object tagging
    tags = {"TagSet": [{"Key": "team", "Value": "blue"}, {"Key": "year", "Value": "2024"}]}
    aws.ok(
        "s3api",
        "put-object-tagging",
        "--bucket",
        "more",
        "--key",
        "src.txt",
        "--tagging",
        json.dumps(tags),
    )
    got = json.loads(aws.ok("s3api", "get-object-tagging", "--bucket", "more", "--key", "src.txt"))
    assert sorted(got["TagSet"], key=lambda t: t["Key"]) == tags["TagSet"]

    # bucket CORS: stored and answered on a preflight
    cors = {
        "CORSRules": [
            {
                "AllowedOrigins": ["https://app.example"],
                "AllowedMethods": ["GET", "PUT"],
                "AllowedHeaders": ["*"],
                "MaxAgeSeconds": 600,
            }
        ]
    }
    aws.ok("s3api", "put-bucket-cors", "--bucket", "more", "--cors-configuration", json.dumps(cors))
    got = json.loads(aws.ok("s3api", "get-bucket-cors", "--bucket", "more"))
    rule = got["CORSRules"][0]
    assert rule["AllowedOrigins"] == ["https://app.example"]
    assert sorted(rule["AllowedMethods"]) == ["GET", "PUT"]
    r = httpx.options(
        f"http://127.0.0.1:{s3_server.s3_port}/more/src.txt",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "https://app.example"

    # DeleteObjects: one request, per-key results
    deleted = json.loads(
        aws.ok(
            "s3api",
            "delete-objects",
            "--bucket",
            "more",
            "--delete",
            json.dumps({"Objects": [{"Key": "src.txt"}, {"Key": "copies/dst.txt"}]}),
        )
    )
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["copies/dst.txt", "src.txt"]
    assert aws.ok("s3", "ls", "--recursive", "s3://more").strip() == ""
    aws.ok("s3", "rb", "s3://more")


def test_s3cmd_copy_move_and_batch_delete(s3_server: JcsServer, creds: S3Creds, work: Path) -> None:
    s3cmd = S3cmd(work / "home-s3cmd-more", creds, signature_v2=False)
    local = work / "s3cmd-more"
    src = tree(local, {"a.txt": b"alpha\n", "b.txt": b"bravo\n"})
    s3cmd.ok("mb", "s3://s3cmd-more")
    # A public ACL is refused once, with the message: s3cmd retries a 5xx,
    # and the 501 answered until 2026-12-07 had it send the body six times
    # over 45 s, then print "Too many failures" instead.
    before = s3_requests(s3_server)
    refused = s3cmd.fails("put", "--acl-public", str(src / "a.txt"), "s3://s3cmd-more/pub.txt")
    assert "AccessControlListNotSupported" in refused and "link sharing" in refused, refused
    assert requests_between(before, s3_requests(s3_server)) == {("PutObject", 400): 1}, refused
    s3cmd.ok("put", str(src / "a.txt"), str(src / "b.txt"), "s3://s3cmd-more/")
    # cp reads the source's ACL and puts it on the copy: it read none while
    # the xsi prefix was declared on the root (until 2026-12-07)
    s3cmd.ok("cp", "s3://s3cmd-more/a.txt", "s3://s3cmd-more/c.txt")
    info = s3cmd.ok("info", "s3://s3cmd-more/c.txt")
    assert re.search(r"ACL:\s+jcs-user-\d+: FULL_CONTROL", info), info
    s3cmd.ok("mv", "s3://s3cmd-more/b.txt", "s3://s3cmd-more/d.txt")
    listing = s3cmd.ok("ls", "s3://s3cmd-more")
    assert [line.split()[-1] for line in listing.splitlines()] == [
        "s3://s3cmd-more/a.txt",
        "s3://s3cmd-more/c.txt",
        "s3://s3cmd-more/d.txt",
    ]
    s3cmd.ok("get", "s3://s3cmd-more/d.txt", str(local / "d.txt"))
    assert (local / "d.txt").read_bytes() == b"bravo\n"
    # a recursive delete is one multi-object delete
    out = s3cmd.ok("del", "--recursive", "--force", "s3://s3cmd-more/")
    assert out.count("delete: ") == 3, out
    s3cmd.ok("rb", "s3://s3cmd-more")


def test_restic_backup_check_restore_and_prune(
    s3_server: JcsServer, creds: S3Creds, work: Path
) -> None:
    """restic's whole cycle on its own S3 SDK (minio-go): ``init`` makes the
    bucket, ``check --read-data`` reads every pack back and verifies its
    hashes, a restore equals the source, ``forget --prune`` rewrites and
    deletes packs."""
    restic = Restic(work / "home-restic", creds, "restic-repo/host1", "restic e2e password")
    files = {f"small/{i:02d}.txt": os.urandom(97 * i + 1) for i in range(40)}
    files["big.bin"] = os.urandom(12 * MiB)  # several of restic's packs
    src = tree(work / "restic-src", files)

    before = s3_requests(s3_server)
    restic.ok("init")
    restic.ok("backup", "--host", "e2e", str(src))
    restic.ok("check", "--read-data")
    (src / "small" / "00.txt").write_bytes(b"changed\n")
    (src / "big.bin").unlink()
    restic.ok("backup", "--host", "e2e", str(src))
    snapshots = json.loads(restic.ok("snapshots", "--json"))
    assert len(snapshots) == 2

    # the first snapshot, restored, is the source as it was
    target = work / "restic-restore"
    restic.ok("restore", snapshots[0]["short_id"], "--target", str(target))
    restored = target / str(src).lstrip("/")
    for rel, data in files.items():
        assert (restored / rel).read_bytes() == data, rel

    # forgetting it frees big.bin's packs: prune deletes them (and may
    # repack the rest), and the repository still checks out against every
    # byte it keeps
    listed = boto3_client(creds).list_objects_v2(Bucket="restic-repo", Prefix="host1/data/")
    packs_before = {o["Key"] for o in listed.get("Contents", [])}
    restic.ok("forget", "--keep-last", "1", "--prune")
    listed = boto3_client(creds).list_objects_v2(Bucket="restic-repo", Prefix="host1/data/")
    packs_after = {o["Key"] for o in listed.get("Contents", [])}
    assert packs_after and len(packs_after) < len(packs_before)
    restic.ok("check", "--read-data")
    assert [s["short_id"] for s in json.loads(restic.ok("snapshots", "--json"))] == [
        snapshots[1]["short_id"]
    ]
    # no request restic sent was answered with a server error
    counted = requests_between(before, s3_requests(s3_server))
    assert not [k for k in counted if k[1] >= 500], counted
    assert counted.get(("PutObject", 200)) and counted.get(("DeleteObject", 204)), counted


def test_aws_sdk_for_javascript(s3_server: JcsServer, creds: S3Creds, work: Path) -> None:
    """The AWS SDK for JavaScript v3 (``tests/e2e/js``), its default
    checksums and streaming uploads on; what it wrote is read back through
    the v1 API."""
    local = work / "js-sdk"
    local.mkdir()
    data = os.urandom(12 * MiB + 12_345)  # three parts of 5 MiB and a tail
    (local / "up.bin").write_bytes(data)
    r = subprocess.run(
        [
            tool("node"),
            str(JS_SDK),
            creds.endpoint,
            creds.access_key_id,
            creds.secret_key,
            "js-sdk",
            str(local / "up.bin"),
            str(local / "down.bin"),
        ],
        cwd=local,
        env=client_env(local / "home"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert r.returncode == 0, f"node exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])

    hello = b"hello from the js sdk"
    crc32 = base64.b64encode(zlib.crc32(hello).to_bytes(4, "big")).decode()
    assert out["put"] == {"etag": f'"{md5(hello)}"', "crc32": crc32}
    assert out["get"] == {
        "body": hello.decode(),
        "metadata": {"colour": "blue"},
        "contentType": "text/plain",
        "crc32": crc32,
    }
    assert out["upload"]["etag"].endswith('-3"')
    assert out["head"] == {"etag": out["upload"]["etag"], "length": len(data)}
    assert (local / "down.bin").read_bytes() == data
    assert out["range"] == {
        "hex": data[100:200].hex(),
        "contentRange": f"bytes 100-199/{len(data)}",
    }
    assert out["tags"] == [{"Key": "team", "Value": "blue"}]
    assert out["list"] == {"keys": ["copy.txt", "hello.txt"], "prefixes": ["dir/"]}
    assert out["presigned"] == {"status": 200, "body": hello.decode()}
    assert out["missing"] == ["NoSuchKey", 404]
    assert out["ifNoneMatch"] == ["PreconditionFailed", 412]
    assert out["deleted"] == ["copy.txt"]

    pkg = package_id(s3_server, "js-sdk")
    with api_client(s3_server) as api:
        r = api.get("/v1/object/listByPath", params={"packageID": pkg, "path": "dir/big.bin"})
        assert r.status_code == 200, r.text
        [obj] = r.json()["data"]["objects"]
        r = api.get("/v1/object/download", params={"objectID": obj["objectID"]})
        assert r.status_code == 200 and r.content == data


def test_aws_sdk_for_cpp_through_pyarrow(s3_server: JcsServer, creds: S3Creds) -> None:
    """pyarrow's S3FileSystem, the AWS SDK for C++ underneath, as a data
    tool uses it: Parquet written and read back, a dataset of several
    files listed and scanned, a streamed upload of several parts read at an
    offset, a server-side copy, deletes."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs = pafs.S3FileSystem(
        access_key=creds.access_key_id,
        secret_key=creds.secret_key,
        endpoint_override=creds.endpoint,
        scheme="http",
        region="us-east-1",
        allow_bucket_creation=True,
    )
    fs.create_dir("arrow")
    rows = 100_000
    table = pa.table({"n": list(range(rows)), "text": [f"row {i}" for i in range(rows)]})
    pq.write_table(table, "arrow/one.parquet", filesystem=fs)
    assert pq.read_table("arrow/one.parquet", filesystem=fs).equals(table)

    ds.write_dataset(
        table, "arrow/ds", format="parquet", filesystem=fs,
        max_rows_per_file=25_000, max_rows_per_group=25_000,
    )  # fmt: skip
    files = fs.get_file_info(pafs.FileSelector("arrow/ds", recursive=True))
    assert sorted(f.base_name for f in files) == [f"part-{i}.parquet" for i in range(4)]
    scanned = ds.dataset("arrow/ds", filesystem=fs, format="parquet").to_table()
    assert sorted(scanned.column("n").to_pylist()) == list(range(rows))

    data = os.urandom(12 * MiB)  # the SDK's output stream uploads it in parts
    with fs.open_output_stream("arrow/big.bin") as out:
        for i in range(0, len(data), MiB):
            out.write(data[i : i + MiB])
    assert fs.get_file_info("arrow/big.bin").size == len(data)
    with fs.open_input_file("arrow/big.bin") as f:
        f.seek(5 * MiB + 7)
        assert f.read(1000) == data[5 * MiB + 7 : 5 * MiB + 1007]
    etag = boto3_client(creds).head_object(Bucket="arrow", Key="big.bin")["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}-\d+"', etag), etag  # a multipart upload

    fs.copy_file("arrow/one.parquet", "arrow/copy.parquet")
    assert pq.read_table("arrow/copy.parquet", filesystem=fs).equals(table)
    fs.delete_dir_contents("arrow/ds")
    fs.delete_file("arrow/copy.parquet")
    left = fs.get_file_info(pafs.FileSelector("arrow", recursive=True))
    assert sorted(f.path for f in left if f.type == pafs.FileType.File) == [
        "arrow/big.bin",
        "arrow/one.parquet",
    ]
