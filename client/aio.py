"""AsyncSummarizerClient: the same methods as SummarizerClient, as coroutines over one shared connection pool.

Many concurrent calls (``asyncio.gather``) share up to ``max_connections`` connections; the service's
adaptive batching then puts their dialogues into the same batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from client import wire
from feedback.protocol import FeedbackReceipt
from serving.protocol import Summary, SummaryBatch


class AsyncSummarizerClient:
    """A running summarizer at ``url``, for asyncio; close with ``await close()`` or ``async with``.

    ``api_key``: as SummarizerClient's (else the SUMMARIZER_API_KEY environment variable).
    """

    def __init__(self, url: str = wire.DEFAULT_URL, *, timeout_s: float = 120.0, connect_timeout_s: float = 2.0,
                 max_connections: int = 256, api_key: str | None = None, retries: int = wire.RETRIES) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, e.g. 256; got {max_connections}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, e.g. {wire.RETRIES}; got {retries}")
        self.url = wire.service_url(url)
        self._retries = retries
        self._timeout = wire.timeouts(timeout_s, connect_timeout_s)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self._timeout,
                                       headers=wire.auth_headers(api_key), limits=limits)

    async def summarize(self, dialogue: str, generation: wire.Generation = None) -> Summary:
        """One dialogue's summary; ``generation`` overrides the model's defaults for this request."""
        response = await self._send("POST", "/summarize", wire.summarize_body(dialogue, generation))
        return wire.parse(response, self.url, Summary)

    async def summarize_batch(self, dialogues: Sequence[str], generation: wire.Generation = None) -> SummaryBatch:
        """Summaries of several dialogues (at most the service's SUMMARIZER_MAX_LIST_ITEMS), in their order."""
        response = await self._send("POST", "/summarize_batch", wire.batch_body(dialogues, generation))
        return wire.parse(response, self.url, SummaryBatch)

    async def feedback(self, request_id: str, rating: str, corrected_summary: str | None = None,
                       comment: str | None = None) -> FeedbackReceipt:
        """Rate the answer named by ``request_id`` (a Summary's): ``rating`` "good" or "bad", optionally the
        summary it should have been and a comment. A second feedback for the same request_id replaces the first
        (so a retry stores it once); an unknown request_id is ``ServiceError(code="unknown_request")``."""
        response = await self._send("POST", "/feedback",
                                    wire.feedback_body(request_id, rating, corrected_summary, comment))
        return wire.parse(response, self.url, FeedbackReceipt)

    async def model(self) -> dict:
        """The served model, its generation defaults, the routing and each backend's status."""
        return wire.parse_json(await self._send("GET", "/model"), self.url)

    async def ready(self) -> bool:
        """True when GET /readyz answers 200; False on anything else, including no answer. Never raises."""
        try:
            response = await self._http.get("/readyz", timeout=wire.probe_timeout(self._timeout))
            return response.status_code == 200
        except Exception:  # noqa: BLE001 - a readiness probe answers a question, it does not fail
            return False

    async def metrics_text(self) -> str:
        """BentoML's Prometheus metrics page (text exposition format)."""
        return (await self._send("GET", "/metrics")).text

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSummarizerClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _send(self, method: str, route: str, body: dict | None = None) -> httpx.Response:
        for attempt in range(self._retries + 1):
            try:
                response = await self._http.request(method, route, json=body)
                break
            except httpx.TransportError as exc:
                if attempt == self._retries or not wire.retryable(exc):
                    raise wire.unreachable(self.url, exc, self._timeout) from exc
            await asyncio.sleep(wire.RETRY_DELAY_S)
        return wire.checked(response, self.url)
