"""One request to a service a facade caller names (a satellite, an auth
service), its answer read up to ``MAX_ANSWER`` bytes within
``ANSWER_SECONDS``.

The answers are small (a project's info, a credential: some hundred bytes).
Read whole, a 400 MiB answer took the server to 1.4-1.9 GB (found by review,
2026-12-06): the body is streamed and refused past the cap, naming the
service and the cap. The body is asked for, and read, as sent
(``identity``): a compressed one could grow past any cap in one piece.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from jointcloud.api.gateway.envelope import GatewayError

MAX_ANSWER = 1024 * 1024
ANSWER_SECONDS = 60.0  # the whole exchange: a trickled answer ends too
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ``None`` when it is not."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _too_large(service: str) -> GatewayError:
    return GatewayError(
        f"{service}: the answer is larger than {MAX_ANSWER} bytes (1 MiB), "
        "the most the facade reads from it"
    )


async def fetch(method: str, url: str, service: str, **kwargs: Any) -> Answer:
    """``method url`` with httpx's ``kwargs``; ``service`` (say "satellite
    https://...") names it in every error."""
    headers = {**kwargs.pop("headers", {}), "Accept-Encoding": "identity"}
    bound = asyncio.timeout(ANSWER_SECONDS)
    try:
        async with (
            bound,
            httpx.AsyncClient(timeout=TIMEOUT) as http,
            http.stream(method, url, headers=headers, **kwargs) as response,
        ):
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_ANSWER:
                raise _too_large(service)
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise _too_large(service)
            return Answer(response.status_code, bytes(body))
    except TimeoutError:
        if not bound.expired():
            raise
        raise GatewayError(f"{service}: no whole answer within {ANSWER_SECONDS:.0f} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is not an HTTPError
        raise GatewayError(f"{service}: {type(exc).__name__}: {exc}") from None
