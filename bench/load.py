"""A closed-loop load generator: ``concurrency`` clients, each sending its next dialogue as soon as the
previous one was answered, until every dialogue was sent. Loopback targets only.

The summarizer is called through the project's client (``client.AsyncSummarizerClient``); the FastAPI
baseline, another API, through one plain httpx call (``baseline_calls``). Both raise the client's errors,
so a failed request is counted the same way for either.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

from bench.stats import latency_stats
from client import AsyncSummarizerClient, ServiceError, ServiceUnreachable

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_ERRORS_KEPT = 5

# one dialogue -> (input tokens, output tokens) of its summary; raises ServiceError / ServiceUnreachable
Summarize = Callable[[str], Awaitable[tuple[int, int]]]


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"benchmarks and load tests target this machine only, e.g. http://127.0.0.1:3000; "
                         f"got {url!r}")


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # successful requests, in completion order
    statuses: Counter = field(default_factory=Counter)  # HTTP status (or 'timeout' / 'error') -> count
    errors: list[str] = field(default_factory=list)  # the first few failures, in words
    output_tokens: int = 0
    input_tokens: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def throughput_rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def failed(self, kind: int | str, description: str) -> None:
        self.statuses[kind] += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(description)

    def to_json(self) -> dict:
        return {"concurrency": self.concurrency, "requests": self.requests, "ok": self.ok,
                "wall_s": round(self.wall_s, 4), "throughput_rps": round(self.throughput_rps, 4),
                "latency": latency_stats(self.latencies_s), "statuses": dict(self.statuses),
                "errors": self.errors[:MAX_ERRORS_KEPT], "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens}


@asynccontextmanager
async def summarizer_calls(url: str, connections: int, timeout_s: float) -> AsyncIterator[Summarize]:
    """POST /summarize of the summarizer service, through the project's client."""
    async with AsyncSummarizerClient(url, timeout_s=timeout_s, max_connections=connections) as summarizer:
        async def summarize(dialogue: str) -> tuple[int, int]:
            answer = await summarizer.summarize(dialogue)
            return answer.input_tokens, answer.output_tokens

        yield summarize


@asynccontextmanager
async def baseline_calls(url: str, connections: int, timeout_s: float) -> AsyncIterator[Summarize]:
    """POST /summarize of the FastAPI baseline ({"dialogue"} -> {"summary"}; no token counts)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(timeout_s, pool=None),
                                 limits=limits) as http:
        async def summarize(dialogue: str) -> tuple[int, int]:
            try:
                response = await http.post("/summarize", json={"dialogue": dialogue})
            except httpx.TransportError as exc:
                raise ServiceUnreachable(url, f"{type(exc).__name__}: {exc}") from exc
            if response.status_code != 200:
                raise ServiceError(url, "/summarize", response.status_code, response.text[:200])
            return 0, 0

        yield summarize


async def closed_loop(summarize: Summarize, dialogues: Sequence[str], concurrency: int) -> LoadResult:
    result = LoadResult(concurrency=concurrency, requests=len(dialogues))
    cursor = iter(dialogues)

    async def one_client() -> None:
        for dialogue in cursor:  # one shared iterator: each dialogue is sent once, by whichever client is free
            started = time.perf_counter()
            try:
                input_tokens, output_tokens = await summarize(dialogue)
            except ServiceError as exc:
                result.failed(exc.status, f"{exc.status}: {exc.message[:200]}")
            except ServiceUnreachable as exc:
                timed_out = isinstance(exc.__cause__, httpx.TimeoutException)
                result.failed("timeout" if timed_out else "error", exc.cause)
            else:
                result.latencies_s.append(time.perf_counter() - started)
                result.input_tokens += input_tokens
                result.output_tokens += output_tokens

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(min(concurrency, len(dialogues)))))
    result.wall_s = time.perf_counter() - started
    return result


def run_load(url: str, dialogues: Sequence[str], concurrency: int, *, baseline: bool = False,
             timeout_s: float = 600.0) -> LoadResult:
    """Send ``dialogues`` to the summarizer at ``url`` (or, with ``baseline``, the FastAPI baseline) with
    ``concurrency`` closed-loop clients."""
    check_loopback(url)
    calls = baseline_calls if baseline else summarizer_calls

    async def load() -> LoadResult:
        async with calls(url, concurrency, timeout_s) as summarize:
            return await closed_loop(summarize, dialogues, concurrency)

    return asyncio.run(load())
