"""A closed-loop HTTP load generator: ``concurrency`` clients, each sending its next request as soon as the
previous one answered, until ``len(payloads)`` requests are done. Loopback targets only."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlparse

from bench.common import latency_stats

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"benchmarks and load tests target this machine only (127.0.0.1); got {url!r}")


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)  # successful requests, in completion order
    statuses: Counter = field(default_factory=Counter)  # HTTP status (or 'timeout' / 'error') -> count
    errors: list[str] = field(default_factory=list)  # first few error descriptions
    output_tokens: int = 0
    input_tokens: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def throughput_rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict:
        return {"concurrency": self.concurrency, "requests": self.requests, "ok": self.ok,
                "wall_s": round(self.wall_s, 4), "throughput_rps": round(self.throughput_rps, 4),
                "latency": latency_stats(self.latencies_s), "statuses": dict(self.statuses),
                "errors": self.errors[:5], "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


async def _closed_loop(url: str, payloads: list[dict], concurrency: int, timeout_s: float) -> LoadResult:
    import aiohttp

    check_loopback(url)
    result = LoadResult(concurrency=concurrency, requests=len(payloads), wall_s=0.0)
    cursor = iter(range(len(payloads)))
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)

    async def client(session: aiohttp.ClientSession) -> None:
        for i in cursor:
            started = time.perf_counter()
            try:
                async with session.post(url, json=payloads[i]) as resp:
                    body = await resp.read()
                    elapsed = time.perf_counter() - started
                    result.statuses[resp.status] += 1
                    if resp.status == 200:
                        result.latencies_s.append(elapsed)
                        _count_tokens(result, body)
                    elif len(result.errors) < 5:
                        result.errors.append(f"{resp.status}: {body[:200].decode(errors='replace')}")
            except asyncio.TimeoutError:
                result.statuses["timeout"] += 1
            except aiohttp.ClientError as exc:
                result.statuses["error"] += 1
                if len(result.errors) < 5:
                    result.errors.append(f"{type(exc).__name__}: {exc}")

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(min(concurrency, len(payloads)))))
        result.wall_s = time.perf_counter() - started
    return result


def _count_tokens(result: LoadResult, body: bytes) -> None:
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return
    if isinstance(data, dict):
        result.input_tokens += int(data.get("input_tokens") or 0)
        result.output_tokens += int(data.get("output_tokens") or 0)


def run_load(url: str, payloads: list[dict], concurrency: int, timeout_s: float = 600.0) -> LoadResult:
    """Send ``payloads`` (JSON bodies, POST) to ``url`` with ``concurrency`` closed-loop clients."""
    return asyncio.run(_closed_loop(url, payloads, concurrency, timeout_s))
