"""The ``jcs`` command line, run as a subprocess against a real server."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import httpx
from e2e_support import (
    Cli,
    JcsServer,
    fetch,
    free_port,
    make_package,
    object_at,
    sha256,
    upload,
)

from support.trees import read_tree


def parse_ls(text: str) -> tuple[set[str], dict[str, int]]:
    """``jcs ls`` lines: 19-char time, 2 spaces, 14-char size or PRE, 2 spaces, path."""
    prefixes: set[str] = set()
    objects: dict[str, int] = {}
    for line in text.splitlines():
        field, path = line[21:35].strip(), line[37:]
        if field == "PRE":
            prefixes.add(path)
        else:
            objects[path] = int(field)
    return prefixes, objects


def dir_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- user spaces -------------------------------------------------------------


def test_spaces_add_ls_test_rm(
    cli: Cli, api: httpx.Client, server: JcsServer, tmp_path: Path
) -> None:
    disk = tmp_path / "disk2"
    disk.mkdir()
    out = cli("space", "add", "disk2", "--type", "Local", "--path", str(disk))
    assert "added user space disk2" in out
    assert "user space disk2 is OK" in cli("space", "test", "disk2")

    secret = "s3cr3t-Never-Printed-42"
    other_secret = "another-Secret-Value-77"
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        cli(
            "space", "add", "cloud", "--type", "S3", "--endpoint", dead, "--bucket", "bk",
            "--region", "us-east-1", "--access-key-id", "AKIDEXAMPLE0001",
            "--secret-access-key", secret,
        )  # fmt: skip
        cli(
            "space", "add", "cloud2",
            "--storage", json.dumps({"type": "S3", "endpoint": dead, "bucket": "b2"}),
            "--credential", json.dumps(
                {"type": "AK", "accessKeyId": "AKIDEXAMPLE0002", "secretAccessKey": other_secret}
            ),
        )  # fmt: skip
        listed = cli("space", "ls")
        rows = {line.split("│")[2].strip(): line for line in listed.splitlines() if "│" in line}
        assert "Local" in rows["disk2"] and "Normal" in rows["disk2"]
        assert " ms" in rows["disk2"]  # latency measured by the test above
        assert "S3" in rows["cloud"] and "S3" in rows["cloud2"]
        assert rows["cloud"].rstrip(" │").endswith("-")  # never tested
        assert secret not in listed and other_secret not in listed
        raw = api.get("/v1/userSpace/list").text
        assert secret not in raw and other_secret not in raw

        err = cli.fails("space", "test", "cloud")
        assert err.startswith("error: OperationFailed: user space test failed at step"), err
        assert secret not in err
        log = server.output()  # the server logged the failure: never the secret
        assert secret not in log and other_secret not in log
        err = cli.fails("space", "add", "bad", "--type", "S3", "--bucket", "x")
        assert err.startswith("error: BadArgument: storage.endpoint"), err

        # Data placed on disk2 (affinity) pins it: the server refuses to remove it.
        make_package(api, "sp", "p")
        blob = tmp_path / "blob.bin"
        blob.write_bytes(os.urandom(200_000))
        cli("put", str(blob), "sp/p/", "--affinity", "disk2")
        assert dir_usage(disk) >= 200_000
        err = cli.fails("space", "rm", "disk2")
        assert err.startswith("error: OperationFailed: user space") and "holds 1 block" in err, err

        cli("space", "rm", "cloud")
        ids = {s["name"]: s["userSpaceID"] for s in _spaces(api)}
        cli("space", "rm", str(ids["cloud2"]))  # by ID
        assert {s["name"] for s in _spaces(api)} & {"cloud", "cloud2"} == set()
        assert cli.fails("space", "rm", "cloud").startswith("error: DataNotFound:")
    finally:
        # Unreachable spaces must not linger in the shared server's placement.
        for space in _spaces(api):
            if space["name"] in ("cloud", "cloud2"):
                api.post("/v1/userSpace/delete", json={"userSpaceID": space["userSpaceID"]})


def _spaces(api: httpx.Client) -> list[dict[str, Any]]:
    spaces: list[dict[str, Any]] = api.get("/v1/userSpace/list").json()["data"]["userSpaces"]
    return spaces


# -- buckets and packages ----------------------------------------------------


def test_buckets_and_packages(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    assert "created bucket cat1" in cli("bucket", "create", "cat1", "--redundancy", "rep:2")
    cli("bucket", "create", "cat2")
    listed = cli("bucket", "ls")
    row = next(line for line in listed.splitlines() if " cat1 " in line)
    assert "rep(2)" in row
    assert "cat2" in listed
    assert cli.fails("bucket", "create", "cat1").startswith("error: DataExists: bucket 'cat1'")

    cli("package", "create", "cat1/one", "--redundancy", '{"type":"ec","k":2,"n":3}')
    cli("package", "create", "cat1/two")
    listed = cli("package", "ls", "cat1")
    assert "one" in listed and "two" in listed and "ec(2,3)" in listed

    f = tmp_path / "x.txt"
    f.write_bytes(b"package clone content")
    cli("put", "--redundancy", "none", str(f), "cat1/two/x.txt")
    assert "cloned cat1/two to cat2/copy" in cli("package", "clone", "cat1/two", "cat2/copy")
    copy = api.get(
        "/v1/package/getByFullName", params={"bucketName": "cat2", "packageName": "copy"}
    ).json()["data"]["package"]
    assert fetch(api, copy["packageID"], "x.txt") == b"package clone content"

    err = cli.fails("bucket", "rm", "cat1")
    assert err.startswith("error: OperationFailed: bucket") and "'one'" in err, err
    assert "deleted package cat1/one" in cli("package", "rm", "cat1/one")
    assert "deleted bucket cat1" in cli("bucket", "rm", "-r", "cat1")  # with cat1/two
    assert "cat1" not in {
        b["name"] for b in api.get("/v1/bucket/listAll").json()["data"]["buckets"]
    }
    assert cli.fails("package", "ls", "cat1") == "error: DataNotFound: bucket 'cat1' not found\n"


# -- trees -----------------------------------------------------------------


def make_tree(root: Path) -> dict[str, bytes]:
    rng = random.Random(7)
    files: dict[str, bytes] = {
        "top.txt": b"hello\n",
        "empty": b"",
        "docs/readme.md": b"# read me\n" * 50,
        "docs/deep/er/still/file.bin": rng.randbytes(70_000),
        "日本語/ファイル.txt": "こんにちは".encode(),
        "émoji 🎉/naïve café.txt": b"unicode",
        "with space/empty too": b"",
        "odd/100% #1 ?&=+.txt": b"percent and friends",
    }
    for i in range(130):
        files[f"many/f{i:03}.dat"] = rng.randbytes(rng.randint(1, 3000))
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def test_tree_put_ls_get(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    make_package(api, "trees", "p")

    out = cli("put", str(src), "trees/p/backup", "--batch-files", "40", "-j", "3")
    assert f"uploaded {len(files)} objects" in out

    level = cli("ls", "trees/p/backup")
    prefixes, objects = parse_ls(level)
    assert prefixes == {
        "backup/docs/",
        "backup/many/",
        "backup/odd/",
        "backup/with space/",
        "backup/émoji 🎉/",
        "backup/日本語/",
    }
    assert objects == {"backup/empty": 0, "backup/top.txt": 6}

    everything = cli("ls", "-r", "trees/p/backup/")
    prefixes, objects = parse_ls(everything)
    assert prefixes == set()
    assert objects == {f"backup/{rel}": len(data) for rel, data in files.items()}
    # Paging through continuationToken changes nothing, with or without -r.
    assert cli("ls", "-r", "--page-size", "7", "trees/p/backup/") == everything
    assert cli("ls", "--page-size", "2", "trees/p/backup") == level

    out = cli("get", "-r", "trees/p/backup", str(tmp_path / "back"))
    assert f"downloaded {len(files)} objects" in out
    assert read_tree(tmp_path / "back") == files

    # A trailing "/" means the same as -r; a sub-tree lands at its relative paths.
    cli("get", "trees/p/backup/docs/", str(tmp_path / "docs"))
    assert read_tree(tmp_path / "docs") == {
        k.removeprefix("docs/"): v for k, v in files.items() if k.startswith("docs/")
    }
    # One unicode object into an existing directory keeps its name.
    (tmp_path / "one").mkdir()
    cli("get", "trees/p/backup/日本語/ファイル.txt", str(tmp_path / "one"))
    assert (tmp_path / "one" / "ファイル.txt").read_bytes() == files["日本語/ファイル.txt"]
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".jcs-part")]
    assert leftovers == []


# -- big files with redundancy ----------------------------------------------


def test_big_file_rep_and_ec_across_spaces(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    for i in range(3):
        d = tmp_path / f"space{i}"
        d.mkdir()
        r = api.post(
            "/v1/userSpace/create",
            json={"name": f"red{i}", "storage": {"type": "Local", "path": str(d)}},
        )
        assert r.status_code == 200, r.text
    # Every local space of the server (other tests may have added some).
    dirs = [Path(s["storage"]["path"]) for s in _spaces(api) if s["storage"]["type"] == "Local"]
    assert len(dirs) >= 4
    big = tmp_path / "big.bin"
    size = 20 * 1024 * 1024 + 12345
    with big.open("wb") as fh:
        fh.write(os.urandom(size))
    want = sha256(big)
    pids = {
        "p": make_package(api, "red", "p"),
        "ec": make_package(api, "red", "ec", {"type": "ec", "k": 2, "n": 3}),
    }

    cases = [
        # (destination, extra put args, policy type, spaces written, min bytes stored)
        ("red/p/rep.bin", ["--redundancy", '{"type":"rep","repCount":2}'], "rep", 2, 2 * size),
        ("red/p/ec.bin", ["--redundancy", '{"type":"ec","k":2,"n":3}'], "ec", 3, 1.5 * size),
        # Through the 3-step multipart endpoints, with the package's ec(2,3).
        (
            "red/ec/parts.bin",
            ["--multipart-threshold", "8MiB", "--part-size", "6MiB"],
            "ec",
            3,
            1.5 * size,
        ),
    ]
    for dest, args, kind, width, stored in cases:
        before = [dir_usage(d) for d in dirs]
        cli("put", str(big), dest, *args)
        grown = [dir_usage(d) - b for d, b in zip(dirs, before, strict=True)]
        written = sum(1 for g in grown if g > 0)
        if "parts" in dest:
            # Each part is placed on its own: a latency probe between two
            # parts may pick another 3 of the spaces for the next one.
            assert written >= width, (dest, grown)
        else:
            assert written == width, (dest, grown)
        assert sum(grown) >= stored, (dest, grown)

        _, package, path = dest.split("/", 2)
        obj = object_at(api, pids[package], path)
        policy = obj["redundancy"]
        assert obj["size"] == str(size) and isinstance(policy, dict) and policy["type"] == kind
        prefix = "Comp" if "parts" in dest else "Full"
        assert str(obj["fileHash"]).startswith(prefix)
        if prefix == "Full":
            assert obj["fileHash"] == "Full" + want.upper()

        local = tmp_path / f"back-{path}"
        cli("get", dest, str(local))
        assert sha256(local) == want


# -- mv, cp, rm --------------------------------------------------------------


def test_mv_cp_rm(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel, text in {
        "one.txt": "1",
        "two.txt": "2",
        "dir/x.txt": "x",
        "dir/sub/y.txt": "y",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    pids = {"a": make_package(api, "mv", "a"), "b": make_package(api, "mv", "b")}
    cli("put", str(src), "mv/a")

    def content(remote: str) -> str:
        _, package, path = remote.split("/", 2)
        return fetch(api, pids[package], path).decode()

    def paths(remote: str) -> set[str]:
        _, package = remote.split("/")
        r = api.get("/v1/object/getPackageObjects", params={"packageID": pids[package]})
        return {o["path"] for o in r.json()["data"]["objects"]}

    assert "moved 1 object" in cli("mv", "mv/a/one.txt", "mv/a/uno.txt")
    assert paths("mv/a") == {"uno.txt", "two.txt", "dir/x.txt", "dir/sub/y.txt"}
    assert content("mv/a/uno.txt") == "1"

    err = cli.fails("mv", "mv/a/uno.txt", "mv/a/two.txt")
    assert err.startswith("error: OperationFailed: path 'two.txt' is already taken"), err
    cli("mv", "-f", "mv/a/uno.txt", "mv/a/two.txt")
    assert content("mv/a/two.txt") == "1"

    assert "copied 1 object" in cli("cp", "mv/a/two.txt", "mv/b/")
    assert content("mv/b/two.txt") == "1" and content("mv/a/two.txt") == "1"
    err = cli.fails("cp", "mv/a/dir/x.txt", "mv/b/two.txt")
    assert err.startswith("error: OperationFailed: mv/b/two.txt already exists"), err

    cli("cp", "-r", "mv/a/dir", "mv/b/copied")
    assert paths("mv/b") == {"two.txt", "copied/x.txt", "copied/sub/y.txt"}
    cli("mv", "-r", "mv/a/dir", "mv/b/moved/")
    assert paths("mv/a") == {"two.txt"}
    assert paths("mv/b") == {
        "two.txt",
        "copied/x.txt",
        "copied/sub/y.txt",
        "moved/x.txt",
        "moved/sub/y.txt",
    }
    # Copies share nothing mutable: the copy outlives its source.
    cli("rm", "mv/b/moved/x.txt")
    assert content("mv/b/copied/x.txt") == "x"

    assert "deleted mv/b/two.txt" in cli("rm", "mv/b/two.txt")
    assert "deleted 2 objects" in cli("rm", "-r", "mv/b/copied")
    assert paths("mv/b") == {"moved/sub/y.txt"}
    err = cli.fails("rm", "mv/b/two.txt")
    assert err.startswith("error: DataNotFound: no object at path 'two.txt'"), err
    assert cli.fails("rm", "mv/b/moved/").startswith("error: BadArgument:")


def test_force_never_deletes_what_it_cannot_replace(cli: Cli, api: httpx.Client) -> None:
    """Found by review: ``-f`` deleted each taken target, then retried. ``cp
    -f`` of an object onto itself deleted it and failed; ``mv -r -f x/ ./``
    deleted ``x/a``, the target of ``x/x/a`` and a source itself, so its
    bytes were neither moved nor kept."""
    pid = make_package(api, "force", "p")
    for path in ("a", "x/a", "x/x/a"):
        assert upload(api, pid, (path, path.encode())).status_code == 200

    err = cli.fails("cp", "-f", "force/p/a", "force/p/a")
    assert err.startswith("error: OperationFailed: a is the source itself"), err
    assert fetch(api, pid, "a") == b"a"

    assert "moved 2 objects" in cli("mv", "-r", "-f", "force/p/x/", "force/p/")
    assert {p: fetch(api, pid, p) for p in ("a", "x/a")} == {"a": b"x/a", "x/a": b"x/x/a"}
    listed = api.get("/v1/object/getPackageObjects", params={"packageID": pid})
    assert sorted(o["path"] for o in listed.json()["data"]["objects"]) == ["a", "x/a"]

    assert "copied 1 object" in cli("cp", "-f", "force/p/x/a", "force/p/a")
    assert fetch(api, pid, "a") == b"x/x/a"


# -- errors ------------------------------------------------------------------


def test_errors_exit_non_zero_with_the_server_message(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("x")
    expected = "error: DataNotFound: bucket 'no-such-bucket' not found\n"
    assert cli.fails("ls", "no-such-bucket/p") == expected
    assert cli.fails("put", str(f), "no-such-bucket/p/f.txt") == expected

    err = cli.fails("bucket", "create", "badpolicy", "--redundancy", '{"type":"ec","k":3,"n":2}')
    assert err.startswith("error: BadArgument: redundancy must satisfy"), err

    r = cli.run("bucket", "ls", env={"JCS_API_KEY": "jcs_wrong"})
    assert r.returncode == 1 and r.stderr.startswith("error: Unauthorized: "), r.stderr

    r = cli.run("bucket", "ls", env={"JCS_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert r.returncode == 1 and r.stderr.startswith("error: ConnectionFailed: "), r.stderr
    assert "Traceback" not in r.stderr

    assert cli.fails("put", str(tmp_path / "missing"), "b/p").startswith("error: BadArgument:")


def test_names_that_are_not_utf8_are_refused_in_one_line(cli: Cli, tmp_path: Path) -> None:
    """Found by review (2026-12-07): a file name or an argument of bytes that
    are not UTF-8 ended every command that sent it in a traceback (httpx's
    UnicodeEncodeError), and `put` of a tree did so after some files had
    gone up. Explicit object paths still take such a file."""
    cli("bucket", "create", "utf8")
    cli("package", "create", "utf8/p")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    odd = os.fsdecode(b"b\xff.txt")  # the bytes 'b', 0xff, '.txt'
    (tree / odd).write_text("b")

    err = cli.fails("put", str(tree), "utf8/p/tree/")
    assert err.startswith("error: BadArgument: ") and "b\\xff.txt" in err, err
    assert "not UTF-8" in err and "Traceback" not in err
    assert cli("ls", "-r", "utf8/p").strip() == ""  # refused before anything went up

    assert "uploaded 1 object" in cli("put", str(tree / odd), "utf8/p/named.txt")
    for args in (("ls", "utf8/p/" + odd), ("rm", "utf8/p/" + odd), ("bucket", "create", odd)):
        shown = args[-1].replace(odd, "b\\xff.txt")
        assert cli.fails(*args) == f"error: BadArgument: not UTF-8 text: '{shown}'\n"
