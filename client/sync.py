"""SummarizerClient: the service's routes as methods that return the protocol's models (blocking)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx

from client import wire
from feedback.protocol import FeedbackReceipt
from serving.protocol import Summary, SummaryBatch


class SummarizerClient:
    """A running summarizer at ``url``; one connection pool, closed by ``close()`` or the ``with`` block.

    ``timeout_s`` bounds each answer (a long batch on a CPU takes seconds), ``connect_timeout_s`` how long
    an unreachable service may keep a call waiting. A request whose connection was refused or dropped before
    an answer (the service's worker died) is sent again ``retries`` times; a timed-out one never is. Failures
    raise ``ServiceUnreachable``/``ServiceError``.
    ``api_key`` (else the SUMMARIZER_API_KEY environment variable) is sent as ``Authorization: Bearer``
    when the service requires keys; a missing or wrong one is ``ServiceError(code="unauthorized")``, a key
    past its rate limit ``ServiceError(code="rate_limited", retry_after_s=...)``.
    """

    def __init__(self, url: str = wire.DEFAULT_URL, *, timeout_s: float = 120.0,
                 connect_timeout_s: float = 2.0, api_key: str | None = None, retries: int = wire.RETRIES) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, e.g. {wire.RETRIES}; got {retries}")
        self.url = wire.service_url(url)
        self._retries = retries
        self._timeout = wire.timeouts(timeout_s, connect_timeout_s)
        self._http = httpx.Client(base_url=self.url, timeout=self._timeout,
                                  headers=wire.auth_headers(api_key))

    def summarize(self, dialogue: str, generation: wire.Generation = None) -> Summary:
        """One dialogue's summary; ``generation`` overrides the model's defaults for this request."""
        response = self._send("POST", "/summarize", wire.summarize_body(dialogue, generation))
        return wire.parse(response, self.url, Summary)

    def summarize_batch(self, dialogues: Sequence[str], generation: wire.Generation = None) -> SummaryBatch:
        """Summaries of several dialogues (at most the service's SUMMARIZER_MAX_LIST_ITEMS), in their order."""
        response = self._send("POST", "/summarize_batch", wire.batch_body(dialogues, generation))
        return wire.parse(response, self.url, SummaryBatch)

    def feedback(self, request_id: str, rating: str, corrected_summary: str | None = None,
                 comment: str | None = None) -> FeedbackReceipt:
        """Rate the answer named by ``request_id`` (a Summary's): ``rating`` "good" or "bad", optionally the
        summary it should have been and a comment. A second feedback for the same request_id replaces the first
        (so a retry stores it once); an unknown request_id is ``ServiceError(code="unknown_request")``."""
        response = self._send("POST", "/feedback", wire.feedback_body(request_id, rating, corrected_summary, comment))
        return wire.parse(response, self.url, FeedbackReceipt)

    def model(self) -> dict:
        """The served model, its generation defaults, the routing and each backend's status."""
        return wire.parse_json(self._send("GET", "/model"), self.url)

    def ready(self) -> bool:
        """True when GET /readyz answers 200; False on anything else, including no answer. Never raises."""
        try:
            return self._http.get("/readyz", timeout=wire.probe_timeout(self._timeout)).status_code == 200
        except Exception:  # noqa: BLE001 - a readiness probe answers a question, it does not fail
            return False

    def metrics_text(self) -> str:
        """BentoML's Prometheus metrics page (text exposition format)."""
        return self._send("GET", "/metrics").text

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SummarizerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, method: str, route: str, body: dict | None = None) -> httpx.Response:
        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(method, route, json=body)
                break
            except httpx.TransportError as exc:
                if attempt == self._retries or not wire.retryable(exc):
                    raise wire.unreachable(self.url, exc, self._timeout) from exc
            time.sleep(wire.RETRY_DELAY_S)
        return wire.checked(response, self.url)
