"""Limits before work: a request body is bounded in bytes and in time before anything parses it.

- ``Content-Length`` over the route's limit: 413 at once, without reading a byte of the body;
- a body without a length (chunked) or one longer than it said: counted as it arrives, 413 as soon as it passes
  the limit;
- a body that has not arrived whole within ``timeout_s``: 408 ``body_timeout``.

413 and 408 carry ``Connection: close``: uvicorn then closes the connection after the answer, so the rest of a
refused body is never read and a slow client holds nothing once refused. The body read here is handed on
whole to the app (which then never waits on the network for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from serving.errors import ErrorCode, send_error

CLOSE = {"Connection": "close"}


class BodyLimits:
    def __init__(self, app, max_bytes: int, timeout_s: float, max_bytes_by_path: Mapping[str, int] | None = None,
                 ) -> None:
        """``max_bytes`` for every path, unless ``max_bytes_by_path`` names the path's own limit."""
        if max_bytes < 1 or timeout_s <= 0:
            raise ValueError(f"max_bytes must be at least 1 and timeout_s above 0, got {max_bytes}, {timeout_s}")
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.by_path = dict(max_bytes_by_path or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.by_path.get(scope.get("path"), self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._too_large(send, limit, f"Content-Length says {declared} bytes")
            return
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away before its body was complete: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        await self._too_large(send, limit, f"more than {limit} bytes arrived")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await send_error(send, 408, ErrorCode.BODY_TIMEOUT,
                             f"the request body did not arrive whole within {self.timeout_s:g} s "
                             f"({size} bytes came; SUMMARIZER_BODY_TIMEOUT_S)", headers=CLOSE)
            return
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    @staticmethod
    async def _too_large(send, limit: int, what: str) -> None:
        await send_error(send, 413, ErrorCode.BODY_TOO_LARGE,
                         f"request body too large: {what}; the limit for this route is {limit} bytes "
                         "(SUMMARIZER_MAX_BODY_BYTES)", headers=CLOSE)


def replaying(body: bytes, receive):
    """A ``receive`` that gives ``body`` whole as one message, then what the client sends next (its disconnect):
    how a middleware that read the body hands it on."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _content_length(scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # uvicorn refuses a malformed Content-Length before the app sees it
    return None
