"""An ASGI HTTP scope built by hand, for tests that drive an app's
``receive`` themselves (a client that goes away mid-body)."""

from __future__ import annotations

from typing import Any


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 7890),
    }


async def sent_then_gone(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> list[dict[str, Any]]:
    """Drive ``app`` with a request whose client sends ``body`` (short of
    its declared length) and goes away; what the app sent back."""
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": body, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(http_scope(method, path, headers), receive, send)
    return sent
