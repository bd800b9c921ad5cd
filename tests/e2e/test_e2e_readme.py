"""The README's "Use it" example works word for word on a fresh data dir.

The code block is taken from README.md as it stands and run by bash, line by
line (``set -e``: the first failing line stops it and is named), in a
directory holding the server's data dir as ``./jcs-data``, a ``./holiday``
directory and ``.venv`` (the virtualenv running the tests). The only change
to the text is the endpoint: the test server listens on a free port, not on
7890. The server runs with its defaults: no extra local roots, no private
endpoints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import JcsServer, clean_env

README = Path(__file__).resolve().parents[2] / "README.md"
DEFAULT_ENDPOINT = "http://127.0.0.1:7890"


def readme_block(section: str) -> str:
    """The first fenced code block after the heading ``## <section>``."""
    text = README.read_text(encoding="utf-8")
    heading = re.search(rf"^## {re.escape(section)}\s*$", text, re.MULTILINE)
    assert heading, f"README.md has no '## {section}' section"
    block = re.compile(r"^```[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
    found = block.search(text, heading.end())
    assert found, f"README.md's '## {section}' has no code block"
    return found.group(1)


def test_readme_block_is_found() -> None:
    block = readme_block("Use it")
    assert block.count(DEFAULT_ENDPOINT) == 1, "the example names the default endpoint once"
    assert "jcs get photos/2024/holiday/a.jpg ./a.jpg" in block


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.symlink(Path(sys.executable).parent.parent, cwd / ".venv")  # .venv/bin/jcs
    holiday = cwd / "holiday"
    (holiday / "beach").mkdir(parents=True)
    (holiday / "a.jpg").write_bytes(os.urandom(3 * 1024 * 1024 + 12345))  # several segments
    (holiday / "notes.txt").write_text("sun, sea\n")
    (holiday / "beach" / "b.jpg").write_bytes(os.urandom(70_000))
    return cwd


def test_use_it_runs_as_written(workdir: Path, tmp_path: Path) -> None:
    server = JcsServer(data_dir=workdir / "jcs-data", log_dir=tmp_path)
    server.env = {"JCS_LOCAL_ROOTS": "", "JCS_ENDPOINT_ALLOW": ""}  # the defaults
    env = {k: v for k, v in clean_env().items() if not k.startswith("JCS_")}
    server.start()
    try:
        script = "\n".join(
            [
                "set -euo pipefail",
                # Name the line that failed, as the README has it.
                "trap 'echo \"README line failed: $BASH_COMMAND\" >&2' ERR",
                readme_block("Use it").replace(DEFAULT_ENDPOINT, server.endpoint),
                # They build on "Use it", in the same shell.
                readme_block("Move data between your clouds"),
                readme_block("Keys, grants and S3 credentials"),
            ]
        )
        run = subprocess.run(
            ["bash", "-c", script],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=300,
            check=False,
        )
    finally:
        server.stop()
    assert run.returncode == 0, (
        f"README 'Use it' failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr}\n"
        f"server:\n{server.output()}"
    )
    out = run.stdout
    assert "created bucket photos" in out
    assert "created package photos/2024" in out
    assert "uploaded 3 objects" in out
    assert "holiday/" in out  # jcs ls photos/2024
    assert (workdir / "a.jpg").read_bytes() == (workdir / "holiday" / "a.jpg").read_bytes()
    for i in range(2, 8):
        assert f"added user space local{i} " in out
    # Keys, grants and S3 credentials: the restricted key listed the holiday
    # files, then was revoked; a grant and S3 credentials were printed.
    assert "a.jpg" in out and "notes.txt" in out
    assert f"--endpoint-url http://127.0.0.1:{server.s3_port}" in out or (
        f"127.0.0.1:{server.s3_port}" in out
    )
    assert "secret_access_key" in out or "aws_secret_access_key" in out
