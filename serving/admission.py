"""Admission control: past capacity, answer 503 with Retry-After at once instead of queueing into a timeout.

BentoML's own ``max_concurrency`` answers 429 without a hint; operators and load balancers expect 503 +
``Retry-After`` for "overloaded, try again". The limit counts requests inside the summarize routes only;
health, readiness and metrics always pass.
"""

from __future__ import annotations

from collections.abc import Iterable

from serving.errors import ErrorCode, send_error


class AdmissionControl:
    def __init__(self, app, max_pending: int, paths: Iterable[str], retry_after_s: int = 1) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.app = app
        self.max_pending = max_pending
        self.paths = frozenset(paths)
        self.retry_after_s = retry_after_s
        self.pending = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            return await self.app(scope, receive, send)
        if self.pending >= self.max_pending:
            await send_error(send, 503, ErrorCode.OVERLOADED,
                             f"service overloaded: {self.pending} requests in progress (limit {self.max_pending}, "
                             f"SUMMARIZER_MAX_PENDING); retry after {self.retry_after_s}s",
                             headers={"Retry-After": str(self.retry_after_s)})
            return
        self.pending += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1
