"""ASGI middleware of the public service: per-request metrics for the summarize routes.

It sits outside admission control and BentoML's request validation, so it also counts the requests our
handler never sees: 4xx rejected by pydantic (``error.type="validation"``) and 503 "overloaded". Added
only when OTLP export is configured; health, readiness and metrics routes pass untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from observability import requests as request_telemetry
from observability.providers import active


class RequestTelemetry:
    def __init__(self, app, paths: Iterable[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in self.paths or not active():
            return await self.app(scope, receive, send)
        begun = request_telemetry.begin_request(scope["path"])
        state = begun[0] if begun else None

        async def send_status(message):
            if state is not None and message["type"] == "http.response.start":
                state.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except asyncio.CancelledError:
            if state is not None:
                state.cancelled = True
            raise
        except Exception:
            if state is not None and not state.status:
                state.status = 500
            raise
        finally:
            request_telemetry.end_request(begun)
