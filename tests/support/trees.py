"""Directory trees for the transfer tests, functional and end to end: write
``{relative path: bytes}`` under a directory or an S3 prefix, and read every
file back the same way, so trees compare with ``==``."""

from __future__ import annotations

from pathlib import Path

from support.s3server import S3Server


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by relative path, hidden and temporary
    ones included (nothing skipped); ``{}`` when ``root`` does not exist."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def s3_put_tree(server: S3Server, prefix: str, files: dict[str, bytes]) -> None:
    client = server.client()
    for rel, content in files.items():
        client.put_object(Bucket=server.bucket, Key=f"{prefix}/{rel}", Body=content)


def s3_read_tree(server: S3Server, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix/`` in the server's bucket, by the rest of its key."""
    client = server.client()
    out: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=server.bucket, Prefix=prefix + "/"
    ):
        for o in page.get("Contents", []):
            body = client.get_object(Bucket=server.bucket, Key=o["Key"])["Body"].read()
            out[o["Key"][len(prefix) + 1 :]] = body
    return out
