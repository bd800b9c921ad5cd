"""Transfer tasks end to end (docs/sync.md): a real ``jcs serve`` process,
driven by the ``jcs`` command line and raw HTTP; local user spaces over temp
directories and an S3 user space on a real S3 server (moto) on loopback.

The tests here run their own servers, not the session's: the user spaces they
add become placement targets for blocks, and the S3 one goes away with this
module. Timing-sensitive tests slow the server down with JCS_SYNC_PARALLEL."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from e2e_support import Cli, JcsServer, api_client, free_port, sha256

from support.s3server import S3Server, s3_server_fixture
from support.trees import read_tree, s3_read_tree, write_tree

s3 = s3_server_fixture(scope="module", bucket="jcs-e2e-sync")

TMP_PREFIX = ".jcs-tmp-"
CREATED = re.compile(r"created sync task (\d+)")
T = TypeVar("T")


@dataclass
class TaskServer(JcsServer):
    """A ``JcsServer`` whose output of every start can be searched at once."""

    def all_output(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)


def new_server(base: Path, **env: str) -> TaskServer:
    base.mkdir(parents=True, exist_ok=True)
    server = TaskServer(data_dir=base / "data", log_dir=base, env=env)
    server.start()
    return server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskServer]:
    """This module's server, default settings (8 files at a time per task)."""
    server = new_server(tmp_path_factory.mktemp("jcs-sync-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jcs(srv: TaskServer, tmp_path: Path) -> Cli:
    return Cli(srv.endpoint, srv.key, tmp_path)


@pytest.fixture
def http(srv: TaskServer) -> Iterator[httpx.Client]:
    with api_client(srv) as client:
        yield client


# -- helpers -------------------------------------------------------------------


def stamps(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every complete file (a copy may be writing
    meanwhile): a rewrite (temp + rename) changes both."""
    out = {}
    for p in root.rglob("*"):
        if p.name.startswith(TMP_PREFIX):
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[p.relative_to(root).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return out


def temp_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(f"{TMP_PREFIX}*"))


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def get_task(api: httpx.Client, task_id: int) -> dict[str, Any]:
    r = api.get("/v1/spaceSync/getTask", params={"taskID": task_id})
    assert r.status_code == 200, r.text
    task: dict[str, Any] = r.json()["data"]["task"]
    return task


def created_id(stdout: str) -> int:
    found = CREATED.search(stdout)
    assert found, stdout
    return int(found.group(1))


def add_local(cli: Cli, name: str, path: Path) -> None:
    """A local space through the command line."""
    path.mkdir(parents=True, exist_ok=True)
    out = cli("space", "add", name, "--type", "Local", "--path", str(path))
    assert f"added user space {name}" in out, out


def add_s3(cli: Cli, name: str, s3: S3Server) -> None:
    """An S3 space through the command line; the secret goes in through the
    environment, as a careful user would pass it."""
    r = cli.run(
        "space", "add", name, "--type", "S3", "--endpoint", s3.endpoint, "--bucket", s3.bucket,
        "--region", s3.region, "--path-style", "--access-key-id", s3.access_key,
        "--root-path", f"blocks-{name}",
        env={"JCS_SECRET_ACCESS_KEY": s3.secret_key},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def space(api: httpx.Client, name: str, storage: dict[str, Any], **extra: Any) -> int:
    """Setup through raw HTTP (each ``jcs`` run costs over a second of start-up)."""
    if storage["type"] == "Local":
        Path(storage["path"]).mkdir(parents=True, exist_ok=True)
    r = api.post("/v1/userSpace/create", json={"name": name, "storage": storage, **extra})
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["userSpace"]["userSpaceID"])


def local_space(api: httpx.Client, name: str, path: Path) -> int:
    return space(api, name, {"type": "Local", "path": str(path)})


def s3_space(api: httpx.Client, name: str, s3: S3Server) -> int:
    return space(api, name, s3.storage(), credential=s3.credential(), rootPath=f"blocks-{name}")


def create_task(api: httpx.Client, src: tuple[int, str], dest: tuple[int, str]) -> int:
    body = {
        "srcUserSpaceID": src[0],
        "srcPath": src[1],
        "dests": [{"userSpaceID": dest[0], "path": dest[1]}],
        "mode": "full",
        "trigger": {"type": "once"},
    }
    r = api.post("/v1/spaceSync/createTask", json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["task"]["taskID"])


def rnd(n: int) -> bytes:
    return os.urandom(n)


def many_small_files(root: Path, count: int, size: int, dirs: int = 20) -> None:
    for i in range(count):
        d = root / f"d{i % dirs:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(rnd(size))


ROUND_TRIP = {
    "readme.txt": b"hello, joint cloud\n",
    "empty.dat": b"",
    "a/b/c/deep.bin": rnd(100_000),
    "a/b/also-empty": b"",
    "日本語/ファイル名.txt": "こんにちは".encode(),
    "Ünïcödé dir/naïve café.md": "crème brûlée".encode(),
    "Ünïcödé dir/emoji 🎉 party.bin": rnd(3_000),
    "odd names/#hash ?query %20 &amp +plus =eq ;semi,comma 'quote'.txt": b"odd",
    ".hidden/.dotfile": b"dot",
    "big/nine-mib.bin": rnd(9 * 1024 * 1024 + 7),  # several 4 MiB chunks, S3 multipart
}


# -- 1 import / export round trip ------------------------------------------------


def test_import_then_export_round_trip_local_and_s3(
    jcs: Cli, http: httpx.Client, s3: S3Server, tmp_path: Path
) -> None:
    write_tree(tmp_path / "src-disk" / "photos", ROUND_TRIP)
    add_local(jcs, "rt-src", tmp_path / "src-disk")
    add_local(jcs, "rt-dst", tmp_path / "dst-disk")
    add_s3(jcs, "rt-s3", s3)
    jcs("bucket", "create", "rtb")

    r = jcs.run("package", "import", "rt-src:photos", "rtb/pkg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "importing into rtb/pkg" in r.stdout
    n = len(ROUND_TRIP)
    assert f"succeeded: {n}/{n} files" in r.stdout, r.stdout
    assert re.search(rf"import task \d+: {n}/{n} files", r.stderr), r.stderr  # the progress bar

    # The package holds one object per file, at its relative path and size.
    pkg = http.get("/v1/package/getByFullName", params={"bucketName": "rtb", "packageName": "pkg"})
    assert pkg.status_code == 200, pkg.text
    package_id = pkg.json()["data"]["package"]["packageID"]
    listed = http.get(
        "/v1/object/listByPath", params={"packageID": package_id, "path": "", "isPrefix": True}
    ).json()["data"]["objects"]
    assert {o["path"]: int(o["size"]) for o in listed} == {
        rel: len(data) for rel, data in ROUND_TRIP.items()
    }

    r = jcs.run("package", "export", "rtb/pkg", "rt-dst:out/here")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"succeeded: {n}/{n} files" in r.stdout, r.stdout
    out = tmp_path / "dst-disk" / "out" / "here"
    assert read_tree(out) == ROUND_TRIP
    assert temp_files(tmp_path / "dst-disk") == []
    assert read_tree(tmp_path / "src-disk" / "photos") == ROUND_TRIP  # source untouched

    r = jcs.run("package", "export", "rtb/pkg", "rt-s3:exported/pkg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"succeeded: {n}/{n} files" in r.stdout, r.stdout
    assert s3_read_tree(s3, "exported/pkg") == ROUND_TRIP


# -- 2 full then diff ------------------------------------------------------------


def test_sync_full_then_diff_rewrites_only_changed_files(
    jcs: Cli, http: httpx.Client, tmp_path: Path
) -> None:
    src = tmp_path / "disk-a" / "data"
    dst = tmp_path / "disk-b" / "copy"
    original = {f"dir{i % 4}/sub{i % 3}/file{i:02d}.bin": rnd(4096 + i) for i in range(27)}
    original |= {"same-size.bin": rnd(5000), "grown.txt": b"v1\n", "gone.txt": b"bye"}
    write_tree(src, original)
    local_space(http, "diff-a", src.parent)
    local_space(http, "diff-b", dst.parent)

    full = jcs("sync", "create", "diff-a:data", "diff-b:copy", "--wait")
    full_id = created_id(full)
    assert f"task {full_id} succeeded: 30/30 files" in full, full
    assert read_tree(dst) == original
    before = stamps(dst)

    # Change two files (one at the same size), add two, delete one at the source.
    changed = {"same-size.bin": rnd(5000), "grown.txt": b"v1\nv2\n"}
    added = {"new/one.txt": b"new", "dir0/sub0/new-two.bin": rnd(7000)}
    write_tree(src, changed | added)
    (src / "gone.txt").unlink()
    now_src = read_tree(src)

    diff = jcs("sync", "create", "diff-a:data", "diff-b:copy", "--mode", "diff", "--wait")
    diff_id = created_id(diff)
    assert diff_id != full_id
    task = get_task(http, diff_id)
    p = task["progress"]
    assert task["state"] == "succeeded", task
    assert (p["filesDone"], p["filesSkipped"], p["filesFailed"]) == (4, 27, 0), p
    assert p["filesTotal"] == len(now_src) == 31, p
    copied_bytes = sum(len(d) for d in (changed | added).values())
    assert p["bytesDone"] == p["bytesTotal"] == copied_bytes, p

    # Destination: the new source, plus what the source deleted (never deleted there).
    assert read_tree(dst) == now_src | {"gone.txt": b"bye"}
    after = stamps(dst)
    unchanged = set(original) - set(changed)
    rewritten = {rel for rel in unchanged if after[rel] != before[rel]}
    assert rewritten == set(), f"unchanged files rewritten by the diff run: {sorted(rewritten)}"
    assert all(after[rel] != before[rel] for rel in changed)

    shown = jcs("sync", "show", str(diff_id))
    assert "succeeded" in shown and "4/31 files" in shown and "27 unchanged" in shown, shown
    listed = jcs("sync", "ls")
    rows = {
        int(cells[1].strip()): cells
        for line in listed.splitlines()
        if (cells := line.split("│"))[1:2] and cells[1].strip().isdigit()
    }
    assert full_id in rows and diff_id in rows, listed
    assert "sync" in rows[diff_id][2] and "succeeded" in rows[diff_id][3], listed

    # A diff run over an unchanged tree copies nothing at all.
    again = jcs("sync", "create", "diff-a:data", "diff-b:copy", "--mode", "diff", "--wait")
    p = get_task(http, created_id(again))["progress"]
    assert (p["filesDone"], p["filesSkipped"], p["bytesDone"]) == (0, 31, 0), p
    assert stamps(dst) == after


# -- 3 cancel ----------------------------------------------------------------------


def test_cancel_mid_run_stops_and_leaves_nothing_partial(tmp_path: Path) -> None:
    server = new_server(tmp_path / "server", JCS_SYNC_PARALLEL="1")
    try:
        cli = Cli(server.endpoint, server.key, tmp_path)
        src = tmp_path / "src-disk" / "many"
        dst = tmp_path / "dst-disk" / "copy"
        # Far more than is copied before the cancel, even on a fast machine
        # while the `jcs sync cancel` process starts (8,000 were all copied once).
        many_small_files(src, 50000, 512)
        with api_client(server) as api:
            local_space(api, "c-src", src.parent)
            local_space(api, "c-dst", dst.parent)
            task_id = created_id(cli("sync", "create", "c-src:many", "c-dst:copy"))
            wait_until(
                lambda: get_task(api, task_id)["progress"]["filesDone"] >= 50,
                30,
                "the sync to get going",
            )
            assert get_task(api, task_id)["state"] == "running"

            assert f"cancelled task {task_id}" in cli("sync", "cancel", str(task_id))
            cancelled_at = time.monotonic()
            wait_until(lambda: get_task(api, task_id)["state"] == "cancelled", 5, "cancelled")

            def ended() -> dict[str, Any] | None:
                task = get_task(api, task_id)
                return task if task["lastFinishTime"] else None

            # The run ends: its last counters saved, its lease given up (no
            # save can come after this).
            first = wait_until(ended, 5, "the run to end")

            # The copy stops: the destination stops growing within 5 s of the cancel.
            counts: list[int] = []

            def settled() -> bool:
                counts.append(len(list(dst.rglob("*.bin"))))
                return len(counts) > 10 and counts[-1] == counts[-11]  # still for 1 s

            wait_until(settled, 5, "the destination to stop growing")
            assert time.monotonic() - cancelled_at < 5.5
            last = get_task(api, task_id)
            assert last["state"] == "cancelled", last
            assert last["progress"] == first["progress"], (first, last)
            done = last["progress"]["filesDone"]
            assert 50 <= done < 50000, last

        assert temp_files(dst.parent) == []
        copied = read_tree(dst)
        assert done <= len(copied) <= done + 1, (done, len(copied))  # +1: its record was cut
        source = read_tree(src)
        partial = [rel for rel, data in copied.items() if source.get(rel) != data]
        assert partial == [], f"partial or wrong files in the destination: {partial}"
        assert "cancelled" in cli("sync", "show", str(task_id))
    finally:
        server.stop()


def test_watching_a_failed_run_exits_1(jcs: Cli, http: httpx.Client, tmp_path: Path) -> None:
    """Found by review: ``sync show --watch`` exited 0 after following a run
    that failed, where ``sync create --wait`` and ``package import`` exit 1."""
    disk = tmp_path / "w-disk"
    write_tree(disk / "src", {"x/y.txt": b"y"})
    write_tree(disk / "dst", {"x": b"a file where the copy needs a directory"})
    space_id = local_space(http, "w-disk", disk)
    task_id = create_task(http, (space_id, "src"), (space_id, "dst"))
    r = jcs.run("sync", "show", str(task_id), "--watch")
    assert r.returncode == 1, r.stdout + r.stderr
    last = r.stderr.splitlines()[-1]  # after the progress bar's last frame
    assert last.startswith(f"error: OperationFailed: task {task_id} failed: x/y.txt"), r.stderr
    assert "failed" in r.stdout  # the table is still shown
    r = jcs.run("sync", "show", str(task_id))  # only showing it: no failure of its own
    assert r.returncode == 0, r.stdout + r.stderr


# -- 4 SIGKILL and resume ----------------------------------------------------------


def test_sigkill_mid_sync_resumes_without_recopying(tmp_path: Path) -> None:
    parallel = 2
    # Several seconds even on a fast disk (fsync per file): progress is saved
    # once a second, and the first save already counts about a second's
    # files (some thousands since the metadata writes got cheaper).
    total = 10_000
    server = new_server(tmp_path / "server", JCS_SYNC_PARALLEL=str(parallel))
    try:
        cli = Cli(server.endpoint, server.key, tmp_path)
        src = tmp_path / "src-disk" / "tree"
        dst = tmp_path / "dst-disk" / "copy"
        many_small_files(src, total, 8 * 1024)
        with api_client(server) as api:
            local_space(api, "k-src", src.parent)
            local_space(api, "k-dst", dst.parent)
            task_id = created_id(cli("sync", "create", "k-src:tree", "k-dst:copy"))
            at_kill = wait_until(
                lambda: (t := get_task(api, task_id))["progress"]["filesDone"] >= 1 and t,
                30,
                "the first progress save",
            )
            before = stamps(dst)
            server.kill()
        assert at_kill["state"] == "running", at_kill
        assert len(before) < total, "the sync finished before the kill: make it bigger"

        server.start()  # same data dir: the dead PID's lease is taken over at once
        seen: list[int] = []

        def finished(api: httpx.Client) -> dict[str, Any] | None:
            task = get_task(api, task_id)
            seen.append(task["progress"]["filesDone"])
            return task if task["state"] in ("succeeded", "failed", "cancelled") else None

        with api_client(server) as api:
            final = wait_until(lambda: finished(api), 40, "the resumed sync to finish", every=0.2)
        # Progress picks up where it was, never back to zero.
        assert min(seen) >= at_kill["progress"]["filesDone"], (at_kill["progress"], seen[:5])
        p = final["progress"]
        assert final["state"] == "succeeded", final
        assert p["filesDone"] == p["filesTotal"] == total and p["filesFailed"] == 0, p
        assert final["runs"] == 1, final  # the run was resumed, not started over

        # Temp files a SIGKILL leaves behind: test_sigkill_mid_file_leaves_no_temp_file.
        copied = {rel: data for rel, data in read_tree(dst).items() if TMP_PREFIX not in rel}
        assert copied == read_tree(src)
        after = stamps(dst)
        rewritten = sorted(rel for rel, st in before.items() if after.get(rel) != st)
        assert len(rewritten) <= parallel, (
            f"{len(rewritten)} of the {len(before)} files complete before the kill were "
            f"copied again: {rewritten[:10]}"
        )
    finally:
        server.stop()


def test_sigkill_mid_file_leaves_no_temp_file(tmp_path: Path) -> None:
    """A SIGKILL in the middle of a big file: after the restart the task
    finishes and the destination holds exactly the source, nothing else."""
    server = new_server(tmp_path / "server")
    try:
        src = tmp_path / "src-disk" / "big"
        dst = tmp_path / "dst-disk" / "copy"
        src.mkdir(parents=True)
        with (src / "big.bin").open("wb") as fh:  # 128 MiB: long enough to catch in flight
            block = rnd(8 << 20)
            for i in range(16):
                fh.write(i.to_bytes(8, "big") + block[8:])
        (src / "small.txt").write_bytes(b"small")
        want = {rel: sha256(src / rel) for rel in ("big.bin", "small.txt")}

        def in_flight() -> list[Path]:
            found = []
            for p in dst.rglob(f"{TMP_PREFIX}*"):
                with contextlib.suppress(FileNotFoundError):
                    if p.stat().st_size >= 8 << 20:
                        found.append(p)
            return found

        with api_client(server) as api:
            task_id = create_task(
                api,
                (local_space(api, "m-src", src.parent), "big"),
                (local_space(api, "m-dst", dst.parent), "copy"),
            )
            partial = wait_until(in_flight, 30, "big.bin to be half written", every=0.005)
            server.kill()
        assert not (dst / "big.bin").exists(), "big.bin was complete before the kill"
        assert all(p.exists() for p in partial)  # what the killed writer left

        server.start()
        with api_client(server) as api:
            final = wait_until(
                lambda: (t := get_task(api, task_id))["state"] != "running" and t,
                30,
                "the resumed sync to finish",
                every=0.2,
            )
        assert final["state"] == "succeeded", final
        assert {p.name: sha256(p) for p in dst.iterdir()} == want, (
            f"the destination after the resumed run: {sorted(p.name for p in dst.iterdir())}"
        )
    finally:
        server.stop()


# -- 5 secrets ---------------------------------------------------------------------


def test_sync_to_s3_never_reveals_the_secret(
    srv: TaskServer, jcs: Cli, http: httpx.Client, s3: S3Server, tmp_path: Path
) -> None:
    disk = tmp_path / "sec-disk"
    files = {f"docs/{i}/page-{i}.txt": rnd(2000 + i) for i in range(12)} | {"x/y.bin": rnd(6 << 20)}
    write_tree(disk / "work", files)
    write_tree(disk / "one", {"f.txt": b"x"})
    src = local_space(http, "sec-src", disk)

    # A sync to an S3 endpoint that is down fails after its retries (~8 s,
    # meanwhile the rest runs), and says so without the secret.
    dead_s3 = S3Server(port=free_port(), bucket=s3.bucket)  # never started
    failing_id = create_task(http, (src, "one"), (s3_space(http, "sec-dead", dead_s3), "mirror"))

    add_s3(jcs, "sec-s3", s3)  # the CLI reads the secret from JCS_SECRET_ACCESS_KEY
    out = jcs("sync", "create", "sec-src:work", "sec-s3:mirror/work", "--wait")
    task_id = created_id(out)
    assert f"succeeded: {len(files)}/{len(files)} files" in out, out
    assert s3_read_tree(s3, "mirror/work") == files

    failed = wait_until(
        lambda: (t := get_task(http, failing_id))["state"] not in ("pending", "running") and t,
        30,
        "the sync to the dead endpoint to give up",
        every=0.2,
    )
    assert failed["state"] == "failed" and failed["progress"]["filesFailed"] == 1, failed
    assert "f.txt" in failed["lastError"], failed
    r = jcs.run("sync", "show", str(failing_id))
    assert r.returncode == 0 and "failed" in r.stdout, r.stdout + r.stderr

    secret = s3.secret_key
    seen = {
        "server log": srv.all_output(),
        "jcs sync show": jcs("sync", "show", str(task_id)) + r.stdout + r.stderr,
        "jcs sync ls": jcs("sync", "ls"),
        "jcs space ls": jcs("space", "ls"),
        "listTasks": http.get("/v1/spaceSync/listTasks").text,
        "userSpace/list": http.get("/v1/userSpace/list").text,
    }
    leaked = [where for where, text in seen.items() if secret in text]
    assert leaked == [], f"the S3 secret key shows in: {leaked}"
