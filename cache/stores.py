"""Where cached answers live: in this process (the default), or in Redis, shared by every process that
names the same URL. Both hold opaque bytes under string keys and answer in batches (one round trip to
Redis for a whole request); time limits, failures and back-off are the caller's (step.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from cachetools import TTLCache


class Store(Protocol):
    kind: str  # "memory" or "redis": the summarizer.cache.store attribute of the cache metrics

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set_many(self, entries: dict[str, bytes]) -> None: ...

    async def close(self) -> None: ...


class _EntriesAndBytes(TTLCache):
    """cachetools' TTL + LRU cache bounded by the bytes of its values (``maxsize`` with ``getsizeof=len``)
    and, in addition, by a number of entries: whichever bound is reached first evicts the least recently
    used entries."""

    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float, timer: Callable[[], float]) -> None:
        super().__init__(maxsize=max_bytes, ttl=ttl_s, timer=timer, getsizeof=len)
        self.max_entries = max_entries

    def __setitem__(self, key, value) -> None:
        if key not in self:
            self.expire()
            while len(self) >= self.max_entries:
                self.popitem()
        super().__setitem__(key, value)


class MemoryStore:
    """This process's cache (one per API worker: a repeat that another worker receives is a miss there).
    Bounded by entries and by the bytes of the stored values (Python's own overhead, about 0.3 KB an entry,
    comes on top); an entry older than ``ttl_s`` is never answered. Used from the event loop only."""

    kind = "memory"

    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.entries = _EntriesAndBytes(max_entries, max_bytes, ttl_s, timer)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.entries.get(key) for key in keys]

    async def set_many(self, entries: dict[str, bytes]) -> None:
        for key, value in entries.items():
            if len(value) <= self.entries.maxsize:  # cachetools refuses a value larger than the whole cache
                self.entries[key] = value

    async def close(self) -> None:
        self.entries.clear()

    @property
    def size_bytes(self) -> int:
        return int(self.entries.currsize)

    def __len__(self) -> int:
        return len(self.entries)


class RedisStore:
    """A Redis (or Valkey) server, through redis-py's asyncio client: MGET for a request's lookups, one
    pipelined SET ... EX per new answer, so every entry expires after ``ttl_s``. Short socket timeouts and no
    retries of redis-py's own: a Redis that is slow or gone costs a request at most ``timeout_s`` once, then
    the step backs off (step.py). Connections are made on first use, in the worker's event loop."""

    kind = "redis"

    def __init__(self, url: str, ttl_s: float, timeout_s: float) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.ttl_s = max(1, int(round(ttl_s)))
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                           retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                           health_check_interval=0)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await self.client.mget(list(keys)))

    async def set_many(self, entries: dict[str, bytes]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key, value in entries.items():
                pipe.set(key, value, ex=self.ttl_s)
            await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()
