"""The CLI's upload planning and atomic downloads, against a fake client."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from jointcloud.cli import commands_transfers
from jointcloud.cli.client import FileWindow, JcsClient
from jointcloud.cli.commands_transfers import report
from jointcloud.cli.common import CliError, parse_remote
from jointcloud.cli.transfer import (
    Cancelled,
    LocalFile,
    UploadOptions,
    download_to,
    local_target,
    make_batches,
    plan_put,
    run_all,
    uses_multipart,
)


def test_plan_put_file(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abc")
    assert [x.object_path for x in plan_put(f, parse_remote("b/p"))] == ["a.txt"]
    assert [x.object_path for x in plan_put(f, parse_remote("b/p/dir/"))] == ["dir/a.txt"]
    assert [x.object_path for x in plan_put(f, parse_remote("b/p/new.txt"))] == ["new.txt"]
    assert plan_put(f, parse_remote("b/p"))[0].size == 3


def test_plan_put_tree(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for rel in ("z.txt", "a/b/c.txt", "ü/é.txt", "a/empty"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * len(rel))
    (root / "emptydir").mkdir()
    (root / "link").symlink_to(root / "a")  # a symlinked directory is not followed
    planned = plan_put(root, parse_remote("b/p/pre"))
    assert [f.object_path for f in planned] == [
        "pre/z.txt",
        "pre/a/empty",
        "pre/a/b/c.txt",
        "pre/ü/é.txt",
    ]
    assert {f.object_path: f.size for f in planned}["pre/a/b/c.txt"] == len("a/b/c.txt")
    assert plan_put(root, parse_remote("b/p"))[0].object_path == "z.txt"


def test_plan_put_missing(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="no such file"):
        plan_put(tmp_path / "nope", parse_remote("b/p"))


def _files(*sizes: int) -> list[LocalFile]:
    return [LocalFile(Path(f"f{i}"), f"f{i}", s) for i, s in enumerate(sizes)]


def test_make_batches() -> None:
    opts = UploadOptions(batch_files=3, batch_bytes=100)
    batches = make_batches(_files(10, 10, 10, 10, 150, 60, 50, 0), opts)
    assert [[f.object_path for f in b.files] for b in batches] == [
        ["f0", "f1", "f2"],  # the file-count limit
        ["f4"],  # at least batch_bytes: a request of its own
        ["f3", "f5"],
        ["f6", "f7"],  # 70 + 50 would pass batch_bytes
    ]
    assert [b.size for b in batches] == [30, 150, 70, 50]


def test_multipart_only_without_overrides() -> None:
    big = make_batches(_files(300), UploadOptions(batch_bytes=100))[0]
    assert uses_multipart(big, UploadOptions(multipart_threshold=200))
    assert not uses_multipart(big, UploadOptions(multipart_threshold=300))
    assert not uses_multipart(
        big, UploadOptions(multipart_threshold=200, redundancy={"type": "none"})
    )
    assert not uses_multipart(big, UploadOptions(multipart_threshold=200, affinity=1))


def test_file_window_reads_a_slice_and_reports_it(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_bytes(bytes(range(256)) * 4)
    seen: list[int] = []
    w = FileWindow(f, seen.append, offset=100, length=300)
    assert w.seek(0, 2) == 300 and w.tell() == 300  # what httpx does to learn the length
    w.seek(0)
    got = b""
    while chunk := w.read(128):
        got += chunk
    assert got == (bytes(range(256)) * 4)[100:400]
    assert seen == [128, 128, 44]
    w.close()


def test_file_window_notices_a_shrinking_file(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_bytes(b"x" * 100)
    w = FileWindow(f, lambda n: None)
    f.write_bytes(b"x" * 10)
    assert w.read(64) == b"x" * 10
    with pytest.raises(OSError, match="shorter"):
        w.read(64)
    w.close()


class FakeClient:
    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after

    def download(self, object_id: int, write: Callable[[bytes], None], **_: Any) -> int:
        total = 0
        for i, chunk in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                raise CliError("ConnectionFailed", "connection dropped")
            write(chunk)
            total += len(chunk)
        return total


def _obj(data: bytes, path: str = "x.bin") -> dict[str, Any]:
    return {
        "objectID": 1,
        "path": path,
        "size": str(len(data)),
        "fileHash": "Full" + hashlib.sha256(data).hexdigest().upper(),
    }


def _get(client: FakeClient, obj: dict[str, Any], target: Path) -> int:
    return download_to(cast(JcsClient, client), obj, target, lambda n: None, threading.Event())


def test_download_renames_into_place(tmp_path: Path) -> None:
    data = b"abc" * 1000
    target = tmp_path / "sub" / "x.bin"
    assert _get(FakeClient([data[:1000], data[1000:]]), _obj(data), target) == len(data)
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]


def test_interrupted_download_leaves_nothing(tmp_path: Path) -> None:
    data = b"abc" * 1000
    target = tmp_path / "x.bin"
    with pytest.raises(CliError, match="dropped"):
        _get(FakeClient([data[:1000], data[1000:]], fail_after=1), _obj(data), target)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"previous")
    with pytest.raises(CliError):
        _get(FakeClient([b"new", b"er"], fail_after=1), _obj(b"newer"), target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_download_checks_size_and_hash(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    with pytest.raises(CliError, match="expected 5"):
        _get(FakeClient([b"abcd"]), _obj(b"abcde"), target)
    bad_hash = _obj(b"abcde") | {"fileHash": "Full" + "0" * 64}
    with pytest.raises(CliError, match="SHA-256"):
        _get(FakeClient([b"abcde"]), bad_hash, target)
    assert list(tmp_path.iterdir()) == []
    composite = _obj(b"abcde") | {"fileHash": "Comp" + "0" * 64}  # not checkable: accepted
    assert _get(FakeClient([b"abcde"]), composite, target) == 5


def test_local_target_stays_inside(tmp_path: Path) -> None:
    assert local_target(tmp_path, "a/b.txt") == tmp_path / "a" / "b.txt"
    # controls (an S3 key may hold them) are no file name to leave on a disk
    for bad in ("", "../x", "a/../../x", "/etc/passwd", "a//b", "esc\x1b[2J", "a\nb/c"):
        with pytest.raises(CliError):
            local_target(tmp_path, bad)


def test_run_all_keeps_task_order() -> None:
    def value(i: int) -> Callable[[threading.Event], int]:
        return lambda cancel: i

    assert run_all(3, [value(i) for i in range(10)], threading.Event()) == list(range(10))
    assert run_all(1, [value(i) for i in range(3)], threading.Event()) == [0, 1, 2]


def test_run_all_reports_the_root_cause_and_cancels_the_rest() -> None:
    def waits(cancel: threading.Event) -> int:
        if cancel.wait(5):
            raise Cancelled
        return 0

    def boom(cancel: threading.Event) -> int:
        raise CliError("OperationFailed", "boom")

    cancel = threading.Event()
    with pytest.raises(CliError, match="boom"):
        run_all(2, [waits, boom, waits, waits], cancel)
    assert cancel.is_set()


class _Spaces:
    """A client that knows only its user's spaces."""

    def __init__(self, *names: str) -> None:
        self.spaces = [{"name": n, "userSpaceID": i + 1} for i, n in enumerate(names)]

    def list_spaces(self) -> list[dict[str, Any]]:
        return self.spaces


def test_a_space_name_may_hold_a_colon() -> None:
    """``a:b:x`` took space ``a``, path ``b:x``, when the user's space is
    named ``a:b`` (found by review); a name that could be read two ways is
    refused, naming both, and the id form settles it."""
    from jointcloud.cli.commands_transfers import space_path

    client = cast(JcsClient, _Spaces("la", "la:old"))
    with pytest.raises(CliError, match="could name more than one space"):
        space_path(client, "la:old:x")
    assert space_path(client, "2:x") == (2, "x")
    assert space_path(client, "la:old") == (1, "old")  # no second ":": space la, path old
    only = cast(JcsClient, _Spaces("la:old"))
    assert space_path(only, "la:old:x") == (1, "x")
    assert space_path(only, "la:old:") == (1, "")
    with pytest.raises(CliError, match="no user space named or numbered 'nope'"):
        space_path(only, "nope:x")


class _Package:
    """One package's paths -> object ids, moved and deleted as the server does."""

    def __init__(self, objects: dict[str, int]) -> None:
        self.objects = dict(objects)

    def object_at(self, package_id: int, path: str) -> dict[str, Any] | None:
        oid = self.objects.get(path)
        return None if oid is None else {"objectID": oid, "path": path}

    def move(self, movings: list[dict[str, Any]]) -> dict[str, Any]:
        failures = []
        for m in movings:
            where = {oid: p for p, oid in self.objects.items()}
            if m["objectID"] not in where:
                failures.append({"objectID": m["objectID"], "reason": "object not found"})
            elif m["path"] in self.objects:
                failures.append({"objectID": m["objectID"], "reason": "path is already taken"})
            else:
                del self.objects[where[m["objectID"]]]
                self.objects[m["path"]] = m["objectID"]
        return {"failures": failures}

    def delete_objects(self, object_ids: list[int]) -> None:
        self.objects = {p: o for p, o in self.objects.items() if o not in object_ids}


def test_force_keeps_the_target_when_its_replacement_fails() -> None:
    """Found by review: ``mv -f``/``cp -f`` deleted the target, then retried;
    a retry that failed (the source gone meanwhile) had lost the target. It
    is set aside instead, and comes back."""
    from jointcloud.cli.commands_objects import _replace

    pkg = _Package({"t": 7, "u": 8})
    client = cast(JcsClient, pkg)
    seen: list[dict[str, int]] = []

    def source_gone(indexes: list[int]) -> list[str | None]:
        seen.append(dict(pkg.objects))  # the targets are free while it runs
        return ["object 5 not found" for _ in indexes]

    whys = _replace(client, 1, [(5, "t"), (6, "u")], {5, 6}, source_gone)
    assert whys == ["object 5 not found", "object 5 not found"]
    assert pkg.objects == {"t": 7, "u": 8}
    assert "t" not in seen[0] and "u" not in seen[0]

    def interrupted(indexes: list[int]) -> list[str | None]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _replace(client, 1, [(5, "t")], {5}, interrupted)
    assert pkg.objects == {"t": 7, "u": 8}

    def replaced(indexes: list[int]) -> list[str | None]:
        for i in indexes:
            pkg.objects[["t", "u"][i]] = 50 + i
        return [None for _ in indexes]

    assert _replace(client, 1, [(5, "t"), (6, "u")], {5, 6}, replaced) == [None, None]
    assert pkg.objects == {"t": 50, "u": 51}  # the old objects deleted once replaced
    # Never onto itself, never over another source of the same command.
    assert _replace(client, 1, [(50, "t"), (9, "u")], {50, 9, 51}, source_gone) == [
        "t is the source itself",
        "object 5 not found",
    ]
    assert pkg.objects == {"t": 50, "u": 51}


class _Uploader:
    """Reads every body as httpx's multipart encoder does, keeping what it read."""

    def __init__(self) -> None:
        self.read: dict[str, bytes] = {}

    def _drain(self, body: FileWindow) -> bytes:
        body.seek(0)
        got = b""
        while chunk := body.read(4096):
            got += chunk
        return got

    def upload(self, package_id: int, files: list[tuple[str, FileWindow]], **_: Any) -> list[Any]:
        for path, body in files:
            self.read[path] = self._drain(body)
        return [{"path": path} for path, _ in files]

    def new_multipart(self, package_id: int, path: str) -> dict[str, Any]:
        return {"objectID": 1}

    def upload_part(self, object_id: int, index: int, body: FileWindow) -> None:
        self.read[f"part{index}"] = self._drain(body)

    def complete_multipart(self, object_id: int, indexes: list[int]) -> dict[str, Any]:
        return {"objectID": object_id}


@pytest.mark.parametrize("multipart", [False, True])
def test_a_file_that_grows_while_it_is_read_is_not_stored(tmp_path: Path, multipart: bool) -> None:
    """Found by review: a log appended to during ``jcs put`` was stored as its
    first (planned) bytes, exit 0, nothing said; and a file that shrank in a
    multipart upload ended in a traceback. Both fail in one line now."""
    from jointcloud.cli.transfer import Batch, upload_batch

    log = tmp_path / "app.log"
    log.write_bytes(b"x" * 10_000)
    (planned,) = plan_put(log, parse_remote("b/p/app.log"))
    opts = UploadOptions(multipart_threshold=1000 if multipart else 1 << 20, part_size=4000)
    client = _Uploader()

    def send() -> None:
        upload_batch(
            cast(JcsClient, client), 1, Batch([planned], planned.size), opts, lambda n: None,
            threading.Event(),
        )  # fmt: skip

    send()  # unchanged: read whole
    with log.open("ab") as fh:
        fh.write(b"appended")
    with pytest.raises(CliError, match="changed size while it was being uploaded") as info:
        send()
    assert info.value.code == "OperationFailed"
    log.write_bytes(b"x" * 100)
    with pytest.raises(CliError, match="became shorter"):
        send()


@pytest.mark.parametrize(
    ("state", "fails"), [("succeeded", False), ("failed", True), ("cancelled", True)]
)
def test_a_followed_run_that_did_not_finish_exits_1(state: str, fails: bool) -> None:
    """``--wait``, ``--watch``, import and export end as the run they followed:
    a script's ``jcs package import ... && rm -r source`` must not go on after
    a cancelled copy (it exited 0 until 2026-12-07)."""
    task = {"taskID": 7, "state": state, "lastError": "boom" if state == "failed" else None}
    if fails:
        with pytest.raises(CliError) as e:
            report(task)
        assert e.value.code == "OperationFailed" and "task 7" in e.value.message
    else:
        report(task)


class _Polled:
    """A client whose ``getTask`` answers the given tasks in turn."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.asked = 0

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        assert path == "/v1/spaceSync/getTask" and params == {"taskID": 7}
        self.asked += 1
        return {"task": self.answers.pop(0)}


def _task(state: str, done: int, finished: str | None) -> dict[str, Any]:
    return {
        "taskID": 7,
        "type": "sync",
        "state": state,
        "runs": 1,
        "progress": {"filesDone": done, "filesTotal": 100},
        "lastRunTime": "2026-12-07T10:00:00+00:00",
        "lastFinishTime": finished,
        "nextRunTime": None,
    }


def test_following_a_cancelled_run_waits_for_its_last_counters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--watch`` and ``--wait`` stopped at the cancelled state, while the
    run still copied and its counters were a second old; they stop when
    the run says it has (its finish time, at or after its start)."""
    monkeypatch.setattr(commands_transfers, "POLL", 0.0)
    last = _task("cancelled", 60, "2026-12-07T10:00:03+00:00")
    client = _Polled([_task("cancelled", 40, None), last])
    seen = commands_transfers.follow(
        cast(JcsClient, client), _task("running", 20, None), quiet=True
    )
    assert seen == last and client.asked == 2
    # A finish time from an earlier run is not this run's end.
    earlier = _task("cancelled", 40, "2026-12-07T09:00:00+00:00")
    client = _Polled([last])
    assert commands_transfers.follow(cast(JcsClient, client), earlier, quiet=True) == last
    # A task cancelled before it ever ran has nothing to stop.
    never = {**_task("cancelled", 0, "2026-12-07T10:00:00+00:00"), "lastRunTime": None}
    assert commands_transfers.follow(cast(JcsClient, _Polled([])), never, quiet=True) == never
