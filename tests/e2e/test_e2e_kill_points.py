"""SIGKILL of ``jcs serve`` at exact points of its work, then a restart on
the same data dir. The point is chosen with a ``sitecustomize`` module put
on the server's ``PYTHONPATH``: it wraps one function of the running server
so that the process sends itself SIGKILL there, the way an operator's
``kill -9`` or an OOM kill would land at that moment, only every time."""

from __future__ import annotations

import contextlib
import os
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from e2e_support import JcsServer, admin_now, api_client, fetch, make_package, upload

KILLER = """
import os, signal

def _die():
    os.kill(os.getpid(), signal.SIGKILL)
"""


DATA = bytes(range(256)) * 100  # 25 KiB: sealed in a block, not inline


def killed_at(tmp_path: Path, patch: str) -> dict[str, str]:
    """The environment for a server that runs ``patch`` (Python, with
    ``_die()`` at hand) at start-up, before it serves."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILLER + textwrap.dedent(patch))
    path = [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path)}


def test_a_first_start_killed_after_making_the_admin_keeps_its_root_key(
    tmp_path: Path,
) -> None:
    """Killed once the database holds the admin and its key, before
    ``root.key`` is written. The next start used to serve with no
    ``root.key`` at all, and never wrote one: the key was lost."""
    server = JcsServer(
        data_dir=tmp_path / "data",
        log_dir=tmp_path,
        env=killed_at(
            tmp_path,
            """
            from jointcloud.core.accounts import AccountService
            _ensure = AccountService.ensure_user

            async def ensure_user(self, *args, **kwargs):
                user, key = await _ensure(self, *args, **kwargs)
                if key is not None:
                    _die()  # committed; root.key not named yet
                return user, key

            AccountService.ensure_user = ensure_user
            """,
        ),
    )
    with pytest.raises(pytest.fail.Exception, match="exited with -9"):
        server.start()
    assert server.proc is not None and server.proc.returncode == -9
    assert not (server.data_dir / "root.key").exists()

    server.env = {}
    server.start()
    try:
        key_file = server.data_dir / "root.key"
        assert key_file.exists(), "the restarted server has no root.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        r = httpx.get(
            server.endpoint + "/v1/bucket/listAll",
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text  # the admin's key, the one in the database
        assert [p.name for p in server.data_dir.iterdir() if p.name.startswith(".root.key")] == []
    finally:
        server.stop()


def test_a_first_start_killed_while_writing_the_master_key_starts_again(
    tmp_path: Path,
) -> None:
    """Killed once the master key's file exists but before its 32 bytes
    are in it. Every later start used to refuse the new data dir ("not a
    master key (32 bytes): restore the data dir's own master.key")."""
    server = JcsServer(
        data_dir=tmp_path / "data",
        log_dir=tmp_path,
        env=killed_at(
            tmp_path,
            """
            import jointcloud.keys.master as master
            _write = master.write_private

            def write_private(path, data):
                if "master.key" in path.name:
                    # the file made, as write_private makes it, and not written
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                    _die()
                return _write(path, data)

            master.write_private = write_private
            """,
        ),
    )
    with pytest.raises(pytest.fail.Exception, match="exited with -9"):
        server.start()

    server.env = {}
    server.start()
    try:
        key = server.data_dir / "master.key"
        assert key.stat().st_size == 32 and key.stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in server.data_dir.iterdir() if "master.key" in p.name) == [
            "master.key"
        ]
        with api_client(server) as api:
            package_id = make_package(api, "sealed", "p")
            assert upload(api, package_id, ("a.bin", DATA)).status_code == 200
        server.stop()
        server.start()  # the key it made is the one it finds, and reads with
        with api_client(server) as api:
            assert fetch(api, package_id, "a.bin") == DATA
    finally:
        server.stop()


def test_a_health_probe_killed_before_its_delete_leaves_nothing_after_gc(
    tmp_path: Path,
) -> None:
    """Killed between the probe's write and its delete: the probe object
    stayed in the space for ever (GC swept only temporary files there, and
    fsck lists only blocks)."""
    server = JcsServer(
        data_dir=tmp_path / "data",
        log_dir=tmp_path,
        env={
            "JCS_HEALTH_INTERVAL_SECONDS": "1",
            **killed_at(
                tmp_path,
                """
                from jointcloud.spaces.local import LocalSpace
                _delete = LocalSpace.delete

                async def delete(self, key):
                    if key.startswith(".jcs-probe/"):
                        _die()  # the probe object written and read back
                    return await _delete(self, key)

                LocalSpace.delete = delete
                """,
            ),
        },
    )
    with contextlib.suppress(pytest.fail.Exception):  # killed before or after it was ready
        server.start()
    assert server.proc is not None
    server.proc.wait(30)  # the first probe kills it
    assert server.proc.returncode == -9
    probes = server.data_dir / "spaces" / "local" / "jcs" / ".jcs-probe"
    left = [p for p in probes.iterdir() if not p.name.startswith(".jcs-tmp-")]
    assert len(left) == 1, left
    young = admin_now(server, "gc", "--once")  # delay 0, but a probe may still read it
    assert young.returncode == 0, young.stdout + young.stderr
    assert left[0].exists()
    long_ago = time.time() - 3600
    os.utime(left[0], (long_ago, long_ago))  # as it is once GC's delay has passed

    gc = admin_now(server, "gc", "--once")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert list(probes.iterdir()) == []
